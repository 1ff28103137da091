"""All ops, and the Variable operators and methods that call them. The registry is `REGISTRY`."""
from ..engine import Variable
from .registry import KINDS, REGISTRY, Domain, OpSpec, register
from .elementwise import (abs, add, clip, cos, div, elu, erf, exp, expm1, gelu, leaky_relu, log, log1p, maximum,
                          minimum, mul, neg, power, reciprocal, relu, sigmoid, sin, softplus, sqrt, square, sub, tan,
                          tanh, where)
from .shape import (astype, broadcast_to, concatenate, expand_dims, flip, pad, reshape, split, squeeze, stack, sum_to,
                    transpose, unsqueeze)
from .reductions import logsumexp, max, mean, min, norm, prod, std, sum, var
from .linalg import einsum, linear, matmul
from .indexing import getitem, scatter_add, take
from . import nn as _nn_ops  # noqa: F401  (registers the nn ops)
from .nn import *  # noqa: F401,F403

pow = power


def _reflected(fn):
    def method(self, other):
        return fn(other, self)
    return method


def _power_operator(self, y, *rest):
    """x ** y. A Python exponent of 2 records `square`, as NumPy's own ** computes x ** 2 with np.square
    (same values and dtypes; 2.0 only for float data, as a float exponent promotes integers): the same
    gradients, without pow's NaN domain check (only a fractional power of a negative base is NaN, never a
    square) or its exponent bookkeeping."""
    if (type(y) is int or type(y) is float and self._data.dtype.kind == "f") and y == 2 and not rest:
        return square(self)
    return power(self, y, *rest)


def _reshape_method(self, *shape):
    return reshape(self, shape=shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)


def _transpose_method(self, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = axes[0]
    return transpose(self, axes=tuple(axes) if axes else None)


def _reduction_method(fn):
    def method(self, axis=None, keepdims=False, **params):
        if axis is None and not keepdims and not params:
            return fn(self)                   # the defaults: no params to record or unpack
        return fn(self, axis=axis, keepdims=keepdims, **params)
    method.__name__ = fn.__name__
    return method


_OPERATORS = {
    "__add__": add, "__radd__": _reflected(add), "__sub__": sub, "__rsub__": _reflected(sub),
    "__mul__": mul, "__rmul__": _reflected(mul), "__truediv__": div, "__rtruediv__": _reflected(div),
    "__pow__": _power_operator, "__rpow__": _reflected(power), "__matmul__": matmul, "__rmatmul__": _reflected(matmul),
    "__neg__": neg, "__abs__": abs, "__pos__": lambda self: self,
    "__getitem__": take,
}
_METHODS = {name: fn for name, fn in [
    ("exp", exp), ("log", log), ("log1p", log1p), ("expm1", expm1), ("sqrt", sqrt), ("abs", abs), ("sin", sin),
    ("cos", cos), ("tan", tan), ("tanh", tanh), ("sigmoid", sigmoid), ("relu", relu), ("square", square),
    ("reciprocal", reciprocal), ("clip", clip), ("matmul", matmul), ("flip", flip), ("squeeze", squeeze),
    ("unsqueeze", unsqueeze), ("broadcast_to", broadcast_to), ("astype", astype), ("pow", power),
]}
for _name in ("sum", "mean", "var", "std", "max", "min", "prod", "logsumexp", "norm"):
    _METHODS[_name] = _reduction_method(globals()[_name])
_METHODS["reshape"] = _reshape_method
_METHODS["transpose"] = _METHODS["permute"] = _transpose_method
_METHODS["T"] = property(lambda self: transpose(self))

for _name, _fn in {**_OPERATORS, **_METHODS}.items():
    setattr(Variable, _name, _fn)
