"""JAX (optional), eager (``jit=False``: op-by-op dispatch under value_and_grad) or compiled (``jit=True``).

float64 workloads need x64 mode, enabled at import; float32 inputs stay float32.
"""
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.workloads import NotApplicable, apply_chain, chain_functions

jax.config.update("jax_enable_x64", True)

NAME = "JAX"
LONGEST_JIT_CHAIN = 100  # compile time grows with the chain; longer chains are not a fair per-op measure


def version():
    return jax.__version__


def mlp_loss(weights, config, x, target):
    hidden = x
    for layer in range(config.layer_count):
        z = hidden @ weights[2 * layer] + weights[2 * layer + 1]
        is_output = layer == config.layer_count - 1
        if is_output and config.loss == "cross_entropy":
            log_probs = jax.nn.log_softmax(z, axis=1)
            return -jnp.take_along_axis(log_probs, target[:, None], axis=1).mean()
        hidden = jax.nn.relu(z) if config.hidden_activation == "relu" and not is_output else jax.nn.sigmoid(z)
    return ((hidden - target) ** 2).sum() / (2 * config.batch_size)


def make_mlp_step(config, params, batch, jit):
    weights = [jnp.asarray(param) for param in params]
    x = jnp.asarray(batch.x)
    target = jnp.asarray(batch.labels if config.loss == "cross_entropy" else batch.one_hot)
    loss_value_and_grads = jax.value_and_grad(mlp_loss)

    def sgd_update(weights, x, target):
        _, grads = loss_value_and_grads(weights, config, x, target)
        return [weight - config.learning_rate * grad for weight, grad in zip(weights, grads)]

    if jit:
        loss_value_and_grads = jax.jit(loss_value_and_grads, static_argnums=1)
        sgd_update = jax.jit(sgd_update)

    def loss_and_grads():
        loss, grads = loss_value_and_grads(weights, config, x, target)
        return float(loss), [np.asarray(grad) for grad in grads]

    def step():
        weights[:] = jax.block_until_ready(sgd_update(weights, x, target))

    return step, loss_and_grads


def make_chain(ops, length, x0, jit):
    if jit and length > LONGEST_JIT_CHAIN:
        raise NotApplicable(f"jit only for chains up to {LONGEST_JIT_CHAIN} ops: compile time grows with length")
    functions = chain_functions(ops, jnp)
    x = jnp.asarray(x0)

    def chain_sum(value):
        return apply_chain(functions, length, value).sum()

    chain_value_and_grad = jax.value_and_grad(chain_sum)
    if jit:
        chain_value_and_grad = jax.jit(chain_value_and_grad)

    def forward_backward():
        total, grad = chain_value_and_grad(x)
        return float(total), np.asarray(grad)

    return forward_backward
