"""NumPy backprop by hand: the reference every other implementation is checked against. No graph.

``preallocated=True`` is the buffer-reusing variant (784-40-10 sigmoid/MSE net only): the allocation-free floor.
"""
import numpy as np

from benchmarks.workloads import NotApplicable, chain_functions

NAME = "NumPy by hand"


def version():
    return np.__version__


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def mlp_loss_and_grads(config, params, batch):
    """Loss and [dW1, db1, ...] for ``params`` = [W1, b1, ...]: forward keeping activations, then backprop."""
    activations = [batch.x]
    for layer in range(config.layer_count):
        weight, bias = params[2 * layer], params[2 * layer + 1]
        z = activations[-1] @ weight + bias
        is_output = layer == config.layer_count - 1
        if is_output and config.loss == "cross_entropy":
            activations.append(z)  # logits
        elif config.hidden_activation == "relu" and not is_output:
            activations.append(np.maximum(z, 0))
        else:
            activations.append(sigmoid(z))

    n = config.batch_size
    output = activations[-1]
    if config.loss == "mse":
        error = output - batch.one_hot
        loss = float((error * error).sum()) / (2 * n)
        delta = error / n * output * (1 - output)
    else:
        shifted = output - output.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -float(log_probs[np.arange(n), batch.labels].sum()) / n
        delta = (np.exp(log_probs) - batch.one_hot) / n

    grads = [None] * len(params)
    for layer in reversed(range(config.layer_count)):
        layer_input = activations[layer]
        grads[2 * layer] = layer_input.T @ delta
        grads[2 * layer + 1] = delta.sum(axis=0)
        if layer > 0:
            delta = delta @ params[2 * layer].T
            if config.hidden_activation == "relu":
                delta *= layer_input > 0
            else:
                delta *= layer_input * (1 - layer_input)
    return loss, grads


def make_mlp_step(config, params, batch, preallocated=False):
    if preallocated:
        return make_preallocated_mlp_step(config, params, batch)
    weights = [param.copy() for param in params]

    def loss_and_grads():
        return mlp_loss_and_grads(config, weights, batch)

    def step():
        _, grads = mlp_loss_and_grads(config, weights, batch)
        for weight, grad in zip(weights, grads):
            weight -= config.learning_rate * grad

    return step, loss_and_grads


def sigmoid_in_place(buffer):
    np.negative(buffer, out=buffer)
    np.exp(buffer, out=buffer)
    np.add(buffer, 1, out=buffer)
    np.reciprocal(buffer, out=buffer)


def make_preallocated_mlp_step(config, params, batch):
    """Two-layer sigmoid/MSE net with every temporary in a buffer allocated once."""
    if config.layer_count != 2 or config.hidden_activation != "sigmoid" or config.loss != "mse":
        raise NotApplicable("the preallocated variant is written for the 784-40-10 sigmoid/MSE net only")
    w1, b1, w2, b2 = (param.copy() for param in params)
    g_w1, g_b1, g_w2, g_b2 = (np.empty_like(param) for param in params)
    x, target, n, lr = batch.x, batch.one_hot, config.batch_size, config.learning_rate
    hidden = np.empty((n, w1.shape[1]), dtype=w1.dtype)
    hidden_scratch = np.empty_like(hidden)
    hidden_delta = np.empty_like(hidden)
    output = np.empty((n, w2.shape[1]), dtype=w2.dtype)
    output_scratch = np.empty_like(output)
    output_delta = np.empty_like(output)

    def compute_loss_and_grads():
        np.matmul(x, w1, out=hidden)
        np.add(hidden, b1, out=hidden)
        sigmoid_in_place(hidden)
        np.matmul(hidden, w2, out=output)
        np.add(output, b2, out=output)
        sigmoid_in_place(output)

        np.subtract(output, target, out=output_delta)
        loss = float(np.vdot(output_delta, output_delta)) / (2 * n)
        np.subtract(1, output, out=output_scratch)
        np.multiply(output_scratch, output, out=output_scratch)
        np.multiply(output_delta, output_scratch, out=output_delta)
        np.multiply(output_delta, 1 / n, out=output_delta)
        np.matmul(hidden.T, output_delta, out=g_w2)
        np.sum(output_delta, axis=0, out=g_b2)

        np.matmul(output_delta, w2.T, out=hidden_delta)
        np.subtract(1, hidden, out=hidden_scratch)
        np.multiply(hidden_scratch, hidden, out=hidden_scratch)
        np.multiply(hidden_delta, hidden_scratch, out=hidden_delta)
        np.matmul(x.T, hidden_delta, out=g_w1)
        np.sum(hidden_delta, axis=0, out=g_b1)
        return loss

    def loss_and_grads():
        loss = compute_loss_and_grads()
        return loss, [grad.copy() for grad in (g_w1, g_b1, g_w2, g_b2)]

    def step():
        compute_loss_and_grads()
        for weight, grad in ((w1, g_w1), (b1, g_b1), (w2, g_w2), (b2, g_b2)):
            np.multiply(grad, lr, out=grad)
            np.subtract(weight, grad, out=weight)

    return step, loss_and_grads


def local_derivative(op, op_input, op_output):
    if op.name == "sin":
        return np.cos(op_input)
    if op.name == "cos":
        return -np.sin(op_input)
    if op.name == "tanh":
        return 1 - op_output * op_output
    if op.name == "mul":
        return op.constant
    return None  # "add": derivative 1


def make_chain(ops, length, x0, preallocated=False):
    """forward_backward() -> (sum of the chain's output, its gradient w.r.t. x0), keeping every op's input."""
    if preallocated:
        raise NotApplicable("no preallocated variant of the op chain")
    functions = chain_functions(ops, np)
    op_count = len(ops)

    def forward_backward():
        values = [x0]
        for index in range(length):
            values.append(functions[index % op_count](values[-1]))
        grad = np.ones_like(x0)
        for index in reversed(range(length)):
            derivative = local_derivative(ops[index % op_count], values[index], values[index + 1])
            if derivative is not None:
                grad = grad * derivative
        return float(values[-1].sum()), grad

    return forward_backward
