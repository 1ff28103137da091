"""MyGrad (optional): tensors with .backward(), update by writing into .data."""
import mygrad as mg
from mygrad.nnet.activations import relu, sigmoid
from mygrad.nnet.losses import softmax_crossentropy

from benchmarks.workloads import apply_chain, chain_functions

NAME = "MyGrad"


def version():
    return mg.__version__


def mlp_loss(config, weights, x, target):
    hidden = x
    for layer in range(config.layer_count):
        z = hidden @ weights[2 * layer] + weights[2 * layer + 1]
        is_output = layer == config.layer_count - 1
        if is_output and config.loss == "cross_entropy":
            return softmax_crossentropy(z, target)
        hidden = relu(z) if config.hidden_activation == "relu" and not is_output else sigmoid(z)
    return ((hidden - target) ** 2).sum() / (2 * config.batch_size)


def make_mlp_step(config, params, batch):
    weights = [mg.tensor(param, copy=True) for param in params]
    target = batch.labels if config.loss == "cross_entropy" else batch.one_hot

    def loss_and_grads():
        loss = mlp_loss(config, weights, batch.x, target)
        loss.backward()
        return loss.item(), [weight.grad.copy() for weight in weights]

    def step():
        mlp_loss(config, weights, batch.x, target).backward()
        for weight in weights:
            weight.data -= config.learning_rate * weight.grad

    return step, loss_and_grads


def make_chain(ops, length, x0):
    x = mg.tensor(x0, copy=True)
    functions = chain_functions(ops, mg)

    def forward_backward():
        total = apply_chain(functions, length, x).sum()
        total.backward()
        return total.item(), x.grad.copy()

    return forward_backward
