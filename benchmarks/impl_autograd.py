"""HIPS autograd (optional): functional value_and_grad over a list of weights."""
import autograd
import autograd.numpy as anp
from autograd import value_and_grad
from autograd.scipy.special import logsumexp

from benchmarks.workloads import apply_chain, chain_functions

NAME = "HIPS autograd"


def version():
    return getattr(autograd, "__version__", "installed")


def mlp_loss(weights, config, batch):
    hidden = batch.x
    for layer in range(config.layer_count):
        z = anp.dot(hidden, weights[2 * layer]) + weights[2 * layer + 1]
        is_output = layer == config.layer_count - 1
        if is_output and config.loss == "cross_entropy":
            log_probs = z - logsumexp(z, axis=1, keepdims=True)
            return -anp.sum(log_probs[anp.arange(config.batch_size), batch.labels]) / config.batch_size
        if config.hidden_activation == "relu" and not is_output:
            hidden = anp.maximum(z, 0)
        else:
            hidden = 1 / (1 + anp.exp(-z))
    return anp.sum((hidden - batch.one_hot) ** 2) / (2 * config.batch_size)


def make_mlp_step(config, params, batch):
    loss_value_and_grads = value_and_grad(mlp_loss)
    weights = [param.copy() for param in params]

    def loss_and_grads():
        loss, grads = loss_value_and_grads(weights, config, batch)
        return float(loss), list(grads)

    def step():
        _, grads = loss_value_and_grads(weights, config, batch)
        for index, grad in enumerate(grads):
            weights[index] = weights[index] - config.learning_rate * grad

    return step, loss_and_grads


def make_chain(ops, length, x0):
    functions = chain_functions(ops, anp)

    def chain_sum(x):
        return anp.sum(apply_chain(functions, length, x))

    chain_value_and_grad = value_and_grad(chain_sum)

    def forward_backward():
        total, grad = chain_value_and_grad(x0)
        return float(total), grad

    return forward_backward
