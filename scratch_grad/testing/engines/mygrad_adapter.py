"""MyGrad (`pip install mygrad`): a tape engine on NumPy (Tensor.backward(grad)); first order only
(MyGrad does not differentiate its gradients), no forward mode. in_place_detection is False: MyGrad
does not refuse an in-place change of a saved tensor, it rewrites the graph so that the gradient
stays right (and its memory guard makes the arrays it saved read-only).

MyGrad's own API throughout; an op it lacks is left out. Conventions that differ from the
registry's (torch's) are passed through for the checker to find, not adjusted here."""
import mygrad as mg
import numpy as np
from mygrad.nnet.activations import elu, leaky_relu, logsoftmax, relu, sigmoid, softmax
from mygrad.nnet.layers import conv_nd, max_pool
from mygrad.nnet.losses import softmax_crossentropy

from . import Capabilities, not_provided, numpy_axis

name = "mygrad"
capabilities = Capabilities()


def _reduction(function):
    def reduce(x, axis=None, keepdims=False):
        return function(x, axis=numpy_axis(x, axis), keepdims=keepdims)
    reduce.__name__ = function.__name__
    return reduce


def _norm(x, axis=None, keepdims=False):
    if isinstance(axis, tuple) and len(axis) > 2:   # NumPy's norm convention: at most a matrix norm
        not_provided("norm over more than two axes (mygrad.linalg.norm follows np.linalg.norm)")
    return mg.linalg.norm(x, axis=numpy_axis(x, axis), keepdims=keepdims)


def _cross_entropy(logits, targets, reduction="mean"):
    if reduction != "mean" or logits.ndim != 2:
        not_provided("cross_entropy other than the mean over a (N, C) batch (softmax_crossentropy)")
    return softmax_crossentropy(logits, targets)


def _pair(value):
    return (value, value) if np.ndim(value) == 0 else tuple(value)


def _require_tiling(op, size, kernel, stride, padding):
    """MyGrad's windows must tile the padded input exactly (torch drops the remainder): else not provided."""
    for n, k, s, p in zip(size, _pair(kernel), _pair(stride), _pair(padding)):
        if (n + 2 * p - k) % s:
            not_provided(f"{op} whose strided windows leave a remainder of the input (mygrad requires exact tiling)")


def _conv2d(x, w, b=None, stride=1, padding=0):
    _require_tiling("conv2d", x.shape[2:], w.shape[2:], stride, padding)
    out = conv_nd(x, w, stride=stride, padding=padding)
    return out if b is None else out + b.reshape(-1, 1, 1)     # conv_nd has no bias: added as users do


def _max_pool2d(x, kernel_size, stride=None, padding=0):
    if padding not in (0, (0, 0)):
        not_provided("max_pool2d with padding (mygrad's max_pool has none)")
    pool = _pair(kernel_size)
    stride = pool if stride is None else stride
    _require_tiling("max_pool2d", x.shape[2:], pool, stride, 0)
    return max_pool(x, pool, stride)


ops = {
    "abs": mg.abs, "cos": mg.cos, "exp": mg.exp, "expm1": mg.expm1, "log": mg.log, "log1p": mg.log1p,
    "neg": mg.negative, "reciprocal": mg.reciprocal, "sin": mg.sin, "sqrt": mg.sqrt, "square": mg.square,
    "tan": mg.tan, "tanh": mg.tanh, "relu": relu, "sigmoid": sigmoid,
    "clip": lambda x, min=None, max=None: mg.clip(x, min, max),
    "leaky_relu": lambda x, negative_slope=0.01: leaky_relu(x, negative_slope),
    "elu": lambda x, alpha=1.0: elu(x, alpha),
    "add": mg.add, "sub": mg.subtract, "mul": mg.multiply, "div": mg.divide, "pow": mg.power,
    "maximum": mg.maximum, "minimum": mg.minimum,
    # the condition as an ndarray: mg.where(<a boolean Tensor>, x, y) recurses forever in mygrad 2.5
    # (its Where op calls np.where on the Tensor, which dispatches back to mg.where); see
    # /work/coord/engines-findings.md. An ndarray mask is how MyGrad's own examples call it.
    "where": lambda condition, x, y: mg.where(to_numpy(condition), x, y),
    "sum": _reduction(mg.sum), "mean": _reduction(mg.mean), "max": _reduction(mg.max), "min": _reduction(mg.min),
    "prod": _reduction(mg.prod),
    "var": lambda x, axis=None, keepdims=False, ddof=0: mg.var(x, axis=numpy_axis(x, axis), keepdims=keepdims, ddof=ddof),
    "std": lambda x, axis=None, keepdims=False, ddof=0: mg.std(x, axis=numpy_axis(x, axis), keepdims=keepdims, ddof=ddof),
    "norm": _norm,
    "einsum": lambda *xs, subscripts: mg.einsum(subscripts, *xs),
    "matmul": mg.matmul,
    "broadcast_to": lambda x, shape: mg.broadcast_to(x, shape),
    "concatenate": lambda *xs, axis=0: mg.concatenate(xs, axis=axis),
    "stack": lambda *xs, axis=0: mg.stack(xs, axis=axis),
    "reshape": lambda x, shape: mg.reshape(x, shape),
    "squeeze": lambda x, axis=None: mg.squeeze(x, axis),
    "transpose": lambda x, axes=None: mg.transpose(x, *(axes or ())),
    "unsqueeze": lambda x, axis: mg.expand_dims(x, axis),
    "getitem": lambda x, index: x[index],
    "softmax": lambda x, axis=-1: softmax(x, axis=numpy_axis(x, axis)),
    "log_softmax": lambda x, axis=-1: logsoftmax(x, axis=numpy_axis(x, axis)),
    "cross_entropy": _cross_entropy,
    "conv2d": _conv2d,
    "max_pool2d": _max_pool2d,
}


def tensor(array, requires_grad=False):
    array = np.array(array)
    return mg.tensor(array, constant=not requires_grad or array.dtype.kind != "f")


def to_numpy(value):
    return np.array(value.data if isinstance(value, mg.Tensor) else value)


def vjp(fn, primals, cotangents, create_graph=False):
    if create_graph:
        not_provided("second order (MyGrad does not differentiate its gradients)")
    outputs = fn(*primals)
    live = [(o, c) for o, c in zip(outputs, cotangents) if isinstance(o, mg.Tensor) and not o.constant]
    if len(live) == 1:
        live[0][0].backward(to_numpy(live[0][1]))
    elif live:   # one backward from the scalar L = sum_k <output_k, cotangent_k>
        mg.add_sequence(*[mg.sum(o * c) for o, c in live]).backward()
    return outputs, [p.grad for p in primals]
