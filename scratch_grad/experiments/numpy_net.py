"""The classic MNIST network in plain NumPy: sigmoid layers, quadratic cost, SGD, backprop by hand.

No graph, no Variables: the baseline scratch_grad is timed against (`scratch-grad train --task
mnist --compare-numpy`) and a second, independent implementation of the same trajectory. Started
from the same weights (`from_module`) and fed the same batches it must reach the same accuracy.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import ShapeError
from ..nn.training import EpochStats, History, batches

__all__ = ["NumpySigmoidNet"]


def _sigmoid(z):
    # exp(-|z|) never overflows: 1/(1+e^-z) for z >= 0, e^z/(1+e^z) for z < 0 (as the sigmoid op)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


class NumpySigmoidNet:
    """Fully connected sigmoid layers (the output too) trained on sum ||a - y||^2 / (2n).

    weights[k] has shape (fan_in, fan_out), biases[k] shape (fan_out,)."""

    def __init__(self, weights, biases):
        if len(weights) != len(biases) or not weights:
            raise ShapeError(f"NumpySigmoidNet: {len(weights)} weight matrices but {len(biases)} bias vectors")
        self.weights = [np.array(w, copy=True) for w in weights]
        self.biases = [np.array(b, copy=True) for b in biases]
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            if w.ndim != 2 or b.shape != (w.shape[1],):
                raise ShapeError(f"NumpySigmoidNet: layer {k} has weight {w.shape} and bias {b.shape}")

    @classmethod
    def from_module(cls, mlp):
        """The same starting point as a scratch_grad MLP (torch layout (out, in) -> (in, out))."""
        layers = mlp.linear_layers()
        return cls([layer.weight.data.T for layer in layers], [layer.bias.data for layer in layers])

    def forward(self, x):
        """Activations of every layer, input first."""
        activations = [x]
        for w, b in zip(self.weights, self.biases):
            activations.append(_sigmoid(activations[-1] @ w + b))
        return activations

    def predict(self, x):
        return self.forward(x)[-1]

    def gradients(self, x, y):
        """(loss, [dW...], [db...], output) for the quadratic cost C = sum ||a - y||^2 / (2n)."""
        n = len(x)
        activations = self.forward(x)
        output = activations[-1]
        error = output - y
        loss = float(np.vdot(error, error)) / (2 * n)
        delta = error * (1 / n) * output * (1 - output)          # dC/dz of the output layer
        grad_w = [None] * len(self.weights)
        grad_b = [None] * len(self.weights)
        for k in range(len(self.weights) - 1, -1, -1):
            grad_w[k] = activations[k].T @ delta
            grad_b[k] = delta.sum(axis=0)
            if k > 0:
                a = activations[k]
                delta = (delta @ self.weights[k].T) * a * (1 - a)   # sigmoid' = a (1 - a)
        return loss, grad_w, grad_b, output

    def train_step(self, x, y, lr):
        """One SGD step; returns (loss, output before the step)."""
        loss, grad_w, grad_b, output = self.gradients(x, y)
        for w, b, gw, gb in zip(self.weights, self.biases, grad_w, grad_b):
            gw *= lr
            w -= gw
            gb *= lr
            b -= gb
        return loss, output

    def accuracy(self, x, labels):
        return float(np.mean(self.predict(x).argmax(axis=1) == labels))

    def fit_epoch(self, x, y_onehot, labels, batch_size, lr, rng, epoch=1, x_test=None, y_test=None):
        """One shuffled pass; the batch plan is drawn from rng exactly as scratch_grad.nn.fit draws it."""
        start_time = time.perf_counter()
        loss_sum = 0.0
        hits = 0
        for index in batches(len(x), batch_size, rng):
            loss, output = self.train_step(x[index], y_onehot[index], lr)
            loss_sum += loss * len(index)
            hits += int(np.count_nonzero(output.argmax(axis=1) == labels[index]))
        seconds = time.perf_counter() - start_time
        test_accuracy = self.accuracy(x_test, y_test) if x_test is not None else None
        return EpochStats(epoch, loss_sum / len(x), hits / len(x), test_accuracy, seconds)

    def fit(self, x, y_onehot, labels, epochs, batch_size, lr, rng, x_test=None, y_test=None, on_epoch=None):
        history = History()
        for epoch in range(1, epochs + 1):
            stats = self.fit_epoch(x, y_onehot, labels, batch_size, lr, rng, epoch, x_test, y_test)
            history.append(stats)
            if on_epoch is not None:
                on_epoch(stats)
        return history
