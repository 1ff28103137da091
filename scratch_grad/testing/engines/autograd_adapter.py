"""HIPS autograd (`pip install autograd`): functional, tracing NumPy calls; second order by nesting
and forward mode (make_jvp).

autograd has no neural-network ops; relu, softplus, softmax and log_softmax are written as its own
examples write them (np.maximum(x, 0), np.logaddexp(0, x), x - logsumexp(x)), so they check those
primitives (np.maximum's gradient at a tie is 0.5, so relu'(0) = 0.5 here, where torch's is 0).
"""
import autograd.numpy as anp
import autograd.scipy.special as special
import numpy as np
from autograd import make_vjp
from autograd.builtins import tuple as traced_tuple
from autograd.differential_operators import make_jvp

from . import Capabilities, not_provided, numpy_axis

name = "autograd"
capabilities = Capabilities(second_order=True, forward_mode=True)


def _reduction(function):
    def reduce(x, axis=None, keepdims=False):
        return function(x, axis=numpy_axis(x, axis), keepdims=keepdims)
    reduce.__name__ = function.__name__
    return reduce


def _norm(x, axis=None, keepdims=False):
    # np.linalg.norm: a vector 2-norm over one axis (or all, axis=None); two axes give the Frobenius
    # norm, the same value; three or more axes are not accepted by NumPy
    if isinstance(axis, tuple) and len(axis) > 2:
        not_provided("norm over more than two axes (np.linalg.norm)")
    return anp.linalg.norm(x, axis=numpy_axis(x, axis), keepdims=keepdims)


def _log_softmax(x, axis=-1):
    return x - special.logsumexp(x, axis=numpy_axis(x, axis), keepdims=True)


ops = {
    "abs": anp.abs, "cos": anp.cos, "exp": anp.exp, "expm1": anp.expm1, "log": anp.log, "log1p": anp.log1p,
    "neg": anp.negative, "reciprocal": anp.reciprocal, "sin": anp.sin, "sqrt": anp.sqrt, "square": anp.square,
    "tan": anp.tan, "tanh": anp.tanh, "erf": special.erf, "sigmoid": special.expit,
    "clip": lambda x, min=None, max=None: anp.clip(x, min, max),
    "relu": lambda x: anp.maximum(x, 0.0),
    "softplus": lambda x: anp.logaddexp(0.0, x),
    "add": anp.add, "sub": anp.subtract, "mul": anp.multiply, "div": anp.divide, "pow": anp.power,
    "maximum": anp.maximum, "minimum": anp.minimum, "where": anp.where,
    "sum": _reduction(anp.sum), "mean": _reduction(anp.mean), "max": _reduction(anp.max),
    "min": _reduction(anp.min), "prod": _reduction(anp.prod), "logsumexp": _reduction(special.logsumexp),
    "var": lambda x, axis=None, keepdims=False, ddof=0: anp.var(x, axis=numpy_axis(x, axis), keepdims=keepdims, ddof=ddof),
    "std": lambda x, axis=None, keepdims=False, ddof=0: anp.std(x, axis=numpy_axis(x, axis), keepdims=keepdims, ddof=ddof),
    "norm": _norm,
    "einsum": lambda *xs, subscripts: anp.einsum(subscripts, *xs),
    "matmul": anp.matmul,
    "broadcast_to": lambda x, shape: anp.broadcast_to(x, shape),
    "concatenate": lambda *xs, axis=0: anp.concatenate(xs, axis=axis),
    "stack": lambda *xs, axis=0: anp.stack(xs, axis=axis),
    "flip": lambda x, axis=None: anp.flip(x, axis),
    "pad": lambda x, pad_width, constant_values=0.0: anp.pad(x, pad_width, mode="constant",
                                                             constant_values=constant_values),
    "reshape": lambda x, shape: anp.reshape(x, shape),
    "squeeze": lambda x, axis=None: anp.squeeze(x, axis),
    "transpose": lambda x, axes=None: anp.transpose(x, axes),
    "unsqueeze": lambda x, axis: anp.expand_dims(x, axis),
    "split": lambda x, sections, index, axis=0: anp.split(x, sections, axis)[index],
    "getitem": lambda x, index: x[index],
    "log_softmax": _log_softmax,
    "softmax": lambda x, axis=-1: anp.exp(_log_softmax(x, axis)),
}


def tensor(array, requires_grad=False):
    return np.array(array)          # autograd differentiates plain ndarrays: no flag


def to_numpy(value):
    return np.array(value)


def vjp(fn, primals, cotangents, create_graph=False):
    # autograd traces through tuples only as its own traced tuple type; nesting (second order) needs nothing more
    pullback, outputs = make_vjp(lambda xs: traced_tuple(fn(*xs)))(traced_tuple(primals))
    return outputs, pullback(traced_tuple(cotangents))


def jvp(fn, primals, tangents):
    return make_jvp(lambda xs: traced_tuple(fn(*xs)))(traced_tuple(primals))(traced_tuple(tangents))
