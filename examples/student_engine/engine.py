"""tinytensor: a small NumPy autograd engine, written the way a student writes one after micrograd.

A Tensor holds `data` (an ndarray), `grad` (same shape, zeros until backward) and a `_backward`
closure that pushes the output's gradient into its inputs' `grad`. `backward()` orders the graph
topologically (inputs before outputs) and runs the closures in reverse.

    x = Tensor(np.random.randn(3, 4))
    w = Tensor(np.random.randn(4, 2))
    loss = (x @ w).tanh().mean()
    loss.backward()          # x.grad, w.grad

THE PLANTED BUG (on purpose, for the oracle to find): `mean(axis=...)` divides the gradient by the
number of ALL elements of x instead of the number averaged over. That is right for `mean()` of the
whole tensor, the case a student tests by hand, and wrong for `mean(axis=1)`. Set the environment
variable STUDENT_ENGINE_FIXED=1 before importing (or `engine.FIXED = True`) to use the fixed formula.
"""
import os

import numpy as np

FIXED = os.environ.get("STUDENT_ENGINE_FIXED", "") == "1"


def _unbroadcast(grad, shape):
    """Sum grad over the axes that broadcasting added or stretched, back to `shape`."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for i, size in enumerate(shape):
        if size == 1 and grad.shape[i] != 1:
            grad = grad.sum(axis=i, keepdims=True)
    return grad


def _as_tensor(value):
    return value if isinstance(value, Tensor) else Tensor(value)


class Tensor:
    def __init__(self, data, _children=(), _op=""):
        self.data = np.asarray(data)
        self.grad = np.zeros_like(self.data, dtype=self.data.dtype if self.data.dtype.kind == "f" else float)
        self._backward = lambda: None
        self._prev = _children
        self._op = _op

    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)

    def __repr__(self):
        return f"Tensor({self.data}, op={self._op!r})"

    # ---- arithmetic (broadcasting: each gradient is summed back to its input's shape) ----------
    def __add__(self, other):
        other = _as_tensor(other)
        out = Tensor(self.data + other.data, (self, other), "+")

        def _backward():
            self.grad += _unbroadcast(out.grad, self.shape)
            other.grad += _unbroadcast(out.grad, other.shape)
        out._backward = _backward
        return out

    def __mul__(self, other):
        other = _as_tensor(other)
        out = Tensor(self.data * other.data, (self, other), "*")

        def _backward():
            self.grad += _unbroadcast(out.grad * other.data, self.shape)
            other.grad += _unbroadcast(out.grad * self.data, other.shape)
        out._backward = _backward
        return out

    def __pow__(self, other):
        if isinstance(other, (int, float)):
            out = Tensor(self.data ** other, (self,), f"**{other}")

            def _backward():
                if other != 0:             # x ** 0 is constant; the formula would give 0 * inf at x = 0
                    self.grad += out.grad * other * self.data ** (other - 1)
            out._backward = _backward
            return out
        other = _as_tensor(other)
        out = Tensor(self.data ** other.data, (self, other), "**")

        def _backward():
            # masked where the formula is 0 * inf but the derivative is 0: y == 0 for the base, and
            # x == 0 with y >= 0 for the exponent (log 0), as torch does
            with np.errstate(divide="ignore", invalid="ignore"):
                dx = np.where(other.data == 0, 0.0, other.data * self.data ** (other.data - 1))
                dy = np.where((self.data == 0) & (other.data >= 0), 0.0, out.data * np.log(self.data))
            self.grad += _unbroadcast(out.grad * dx, self.shape)
            other.grad += _unbroadcast(out.grad * dy, other.shape)
        out._backward = _backward
        return out

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-_as_tensor(other))

    def __truediv__(self, other):
        return self * _as_tensor(other) ** -1.0      # -1.0: an integer array to the power -1 is an error

    def __radd__(self, other):
        return self + other

    def __rmul__(self, other):
        return self * other

    def __rsub__(self, other):
        return _as_tensor(other) - self

    def __rtruediv__(self, other):
        return _as_tensor(other) / self

    def __rpow__(self, other):
        return Tensor(np.asarray(other, dtype=float)) ** self

    def __matmul__(self, other):           # 2-D matrices
        other = _as_tensor(other)
        out = Tensor(self.data @ other.data, (self, other), "@")

        def _backward():
            self.grad += out.grad @ other.data.T
            other.grad += self.data.T @ out.grad
        out._backward = _backward
        return out

    # ---- elementwise functions --------------------------------------------------------------
    def exp(self):
        out = Tensor(np.exp(self.data), (self,), "exp")

        def _backward():
            self.grad += out.grad * out.data
        out._backward = _backward
        return out

    def log(self):
        out = Tensor(np.log(self.data), (self,), "log")

        def _backward():
            self.grad += out.grad / self.data
        out._backward = _backward
        return out

    def tanh(self):
        out = Tensor(np.tanh(self.data), (self,), "tanh")

        def _backward():
            # 1 / cosh^2, not 1 - tanh^2: that rounds to 0 beyond |x| ~ 19 (tanh = 1), where it is 1e-17
            with np.errstate(over="ignore"):
                self.grad += out.grad / np.cosh(self.data) ** 2
        out._backward = _backward
        return out

    def sigmoid(self):
        out = Tensor(1 / (1 + np.exp(-self.data)), (self,), "sigmoid")

        def _backward():
            # sigmoid(x) sigmoid(-x), not s (1 - s): 1 - s rounds to 0 for x beyond ~37
            with np.errstate(over="ignore"):
                self.grad += out.grad * out.data / (1 + np.exp(self.data))
        out._backward = _backward
        return out

    def relu(self):
        out = Tensor(np.maximum(self.data, 0), (self,), "relu")

        def _backward():
            self.grad += out.grad * ~(self.data <= 0)   # NaN passes the gradient on, as in torch
        out._backward = _backward
        return out

    # ---- reductions and shapes --------------------------------------------------------------
    def _expanded(self, grad, axis, keepdims):
        """The gradient of a reduction, with the reduced axes put back so it broadcasts to self."""
        if axis is not None and not keepdims:
            grad = np.expand_dims(grad, axis)
        return np.broadcast_to(grad, self.shape)

    def sum(self, axis=None, keepdims=False):
        out = Tensor(self.data.sum(axis=axis, keepdims=keepdims), (self,), "sum")

        def _backward():
            self.grad += self._expanded(out.grad, axis, keepdims)
        out._backward = _backward
        return out

    def mean(self, axis=None, keepdims=False):
        out = Tensor(self.data.mean(axis=axis, keepdims=keepdims), (self,), "mean")

        def _backward():
            if FIXED:
                count = self.data.size // max(out.data.size, 1)   # the number of values each mean averaged
            else:
                count = self.data.size                          # BUG: right only for the mean of everything
            self.grad += self._expanded(out.grad, axis, keepdims) / count
        out._backward = _backward
        return out

    def reshape(self, shape):
        out = Tensor(self.data.reshape(shape), (self,), "reshape")

        def _backward():
            self.grad += out.grad.reshape(self.shape)
        out._backward = _backward
        return out

    def transpose(self, axes=None):
        out = Tensor(np.transpose(self.data, axes), (self,), "transpose")

        def _backward():
            # the inverse permutation of the axes counted from 0: argsort((-1, 0)) would be the identity
            inverse = None if axes is None else np.argsort(np.asarray(axes) % self.ndim)
            self.grad += np.transpose(out.grad, inverse)
        out._backward = _backward
        return out

    @property
    def T(self):
        return self.transpose()

    # ---- backprop ---------------------------------------------------------------------------
    def backward(self, grad=None):
        """Fill .grad of every tensor this one depends on (seed: ones, or `grad`)."""
        order, visited, stack = [], set(), [(self, False)]
        while stack:                       # depth-first, iteratively: deep graphs do not hit the recursion limit
            node, children_done = stack.pop()
            if children_done:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in node._prev if id(child) not in visited)
        self.grad = np.ones_like(self.grad) if grad is None else np.asarray(grad, dtype=self.grad.dtype).copy()
        for node in reversed(order):
            node._backward()
