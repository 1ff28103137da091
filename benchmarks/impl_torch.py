"""torch eager on CPU: autograd graph, manual SGD update under no_grad (no nn.Module, no optim)."""
import torch
import torch.nn.functional as F

from benchmarks.workloads import apply_chain, chain_functions

NAME = "torch eager"


def version():
    return torch.__version__


def mlp_loss(config, weights, x, target):
    hidden = x
    for layer in range(config.layer_count):
        z = hidden @ weights[2 * layer] + weights[2 * layer + 1]
        is_output = layer == config.layer_count - 1
        if is_output and config.loss == "cross_entropy":
            return F.cross_entropy(z, target)
        hidden = torch.relu(z) if config.hidden_activation == "relu" and not is_output else torch.sigmoid(z)
    return ((hidden - target) ** 2).sum() / (2 * config.batch_size)


def make_mlp_step(config, params, batch):
    weights = [torch.tensor(param, requires_grad=True) for param in params]
    x = torch.from_numpy(batch.x)
    target = torch.from_numpy(batch.labels if config.loss == "cross_entropy" else batch.one_hot)

    def loss_and_grads():
        loss = mlp_loss(config, weights, x, target)
        loss.backward()
        grads = [weight.grad.numpy().copy() for weight in weights]
        for weight in weights:
            weight.grad = None
        return loss.item(), grads

    def step():
        mlp_loss(config, weights, x, target).backward()
        with torch.no_grad():
            for weight in weights:
                weight.sub_(weight.grad, alpha=config.learning_rate)
                weight.grad = None

    return step, loss_and_grads


def make_chain(ops, length, x0):
    x = torch.tensor(x0, requires_grad=True)
    functions = chain_functions(ops, torch)

    def forward_backward():
        total = apply_chain(functions, length, x).sum()
        total.backward()
        grad = x.grad.numpy().copy()
        x.grad = None
        return total.item(), grad

    return forward_backward
