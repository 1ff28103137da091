"""scratch_grad, the engine under development, written against its documented API: eager mode, or
(``compiled=True``) the same loss function wrapped in ``sg.compile``, traced at the first call.

If the API changes, this is the one module to adapt.
"""
import scratch_grad as sg

from benchmarks.workloads import NotApplicable, apply_chain, chain_functions

LONGEST_COMPILED_CHAIN = 10_000   # tracing and generating code costs ~15 us per op: longer chains time the compiler

if not hasattr(sg, "Variable"):
    raise ImportError("scratch_grad is importable but has no Variable yet (engine not written?)")

NAME = "scratch_grad"


def version():
    return getattr(sg, "__version__", "dev")


def mlp_loss(config, weights, x, target):
    hidden = x
    for layer in range(config.layer_count):
        z = hidden @ weights[2 * layer] + weights[2 * layer + 1]
        is_output = layer == config.layer_count - 1
        if is_output and config.loss == "cross_entropy":
            return sg.cross_entropy(z, target, reduction="mean")
        hidden = sg.relu(z) if config.hidden_activation == "relu" and not is_output else sg.sigmoid(z)
    return ((hidden - target) ** 2).sum() / (2 * config.batch_size)


def _compile(fn):
    if not hasattr(sg, "compile"):
        raise NotApplicable("this scratch_grad has no sg.compile")
    return sg.compile(fn)


def make_mlp_step(config, params, batch, compiled=False):
    weights = [sg.Variable(param, requires_grad=True) for param in params]
    x = sg.Variable(batch.x)
    target = batch.labels if config.loss == "cross_entropy" else sg.Variable(batch.one_hot)

    def loss_of(x, target):
        return mlp_loss(config, weights, x, target)
    loss_fn = _compile(loss_of) if compiled else loss_of

    def loss_and_grads():
        loss = loss_fn(x, target)
        loss.backward()
        grads = [weight.grad.copy() for weight in weights]
        for weight in weights:
            weight.grad = None
        return loss.item(), grads

    def step():
        loss_fn(x, target).backward()
        for weight in weights:
            weight.sub_(config.learning_rate * weight.grad)
            weight.grad = None

    return step, loss_and_grads


def make_chain(ops, length, x0, compiled=False):
    if compiled and length > LONGEST_COMPILED_CHAIN:
        raise NotApplicable(f"compiled only for chains up to {LONGEST_COMPILED_CHAIN} ops: tracing and code "
                            "generation cost ~15 us per op")
    x = sg.Variable(x0, requires_grad=True)
    functions = chain_functions(ops, sg)

    def chain_sum(value):
        return apply_chain(functions, length, value).sum()
    chain_fn = _compile(chain_sum) if compiled else chain_sum

    def forward_backward():
        total = chain_fn(x)
        total.backward()
        grad = x.grad.copy()
        x.grad = None
        return total.item(), grad

    return forward_backward
