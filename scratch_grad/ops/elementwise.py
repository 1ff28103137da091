"""Elementwise ops: unary functions and broadcasting binary ops.

`_raw(x)` gives the ndarray behind a Variable: masks and signs computed from it are constants in
a create_graph graph, which is right because they are piecewise constant (zero derivative a.e.).
"""
import math

import numpy as np
import scipy.special
from .lazy_torch import mpmath, torch

from .registry import (ABOVE_MINUS_ONE, EXP_FAMILY, FINITE, KINK_AT_ZERO, NONZERO, NOT_DIFFERENTIABLE, POSITIVE, REAL,
                       Domain, OpSpec, register)
from .sampling import Choice, Real, draw_params
from ..engine import Variable


def _raw(x):
    return x._data if isinstance(x, Variable) else x


def _unary(name, forward, vjp, reference, domain=REAL, **flags):
    return register(OpSpec(name, forward, (vjp,), reference, (domain,), "elementwise", **flags))


# ---- unary ---------------------------------------------------------------------------------------
neg = _unary("neg", np.negative, lambda g, out, x: -g, torch.neg, mp=lambda x: -x)
exp = _unary("exp", np.exp, lambda g, out, x: g * out, torch.exp, EXP_FAMILY, mp=lambda x: mpmath.exp(x))
log = _unary("log", np.log, lambda g, out, x: g / x, torch.log, POSITIVE, mp=lambda x: mpmath.log(x))
log1p = _unary("log1p", np.log1p, lambda g, out, x: g / (1 + x), torch.log1p, ABOVE_MINUS_ONE,
               mp=lambda x: mpmath.log1p(x))
expm1 = _unary("expm1", np.expm1, lambda g, out, x: g * (out + 1), torch.expm1, EXP_FAMILY,
                mp=lambda x: mpmath.expm1(x))
sqrt = _unary("sqrt", np.sqrt, lambda g, out, x: g / (2 * out), torch.sqrt, POSITIVE, mp=lambda x: mpmath.sqrt(x))
abs = _unary("abs", np.abs, lambda g, out, x: g * np.sign(_raw(x)), torch.abs, KINK_AT_ZERO,
             smooth=False, kink_rule="abs'(0) = 0 (sign(0) = 0, as torch)", mp=lambda x: abs(x))
sin = _unary("sin", np.sin, lambda g, out, x: g * cos(x), torch.sin, FINITE, mp=lambda x: mpmath.sin(x))
cos = _unary("cos", np.cos, lambda g, out, x: -g * sin(x), torch.cos, FINITE, mp=lambda x: mpmath.cos(x))
# tan: its poles at pi/2 + k*pi are kept out of the sampled interval
tan = _unary("tan", np.tan, lambda g, out, x: g * (1 + out * out), torch.tan,
            Domain(-1.4, 1.4, closed=(-1.4, 1.4), nan=True, description="|x| <= 1.4"),
            mp=lambda x: mpmath.tan(x))
tanh = _unary("tanh", np.tanh, lambda g, out, x: g * (1 - out * out), torch.tanh, EXP_FAMILY,
              mp=lambda x: mpmath.tanh(x))
erf = _unary("erf", scipy.special.erf, lambda g, out, x: g * (2 / math.sqrt(math.pi)) * exp(-x * x), torch.erf,
             mp=lambda x: mpmath.erf(x))
square = _unary("square", np.square, lambda g, out, x: (x + x) * g, torch.square,  # x + x: no scalar 2 to convert
                mp=lambda x: x * x)
reciprocal = _unary("reciprocal", np.reciprocal, lambda g, out, x: -g * out * out, torch.reciprocal, NONZERO,
                    mp=lambda x: 1 / x)


def _sigmoid_forward(x):
    # scipy's expit is the stable logistic in one pass (1/(1+e^-x) for x >= 0, e^x/(1+e^x) for
    # x < 0, so e^-x never overflows) and the fastest form on small arrays, but it is not SIMD
    # vectorized: on 32k elements it is 4x slower than NumPy's exp. Larger float arrays use
    # 1/(1+e^-x), accurate to a few ulps everywhere: e^-x overflows only where x < -88 (float32)
    # or -709 (float64), and 1/(1+inf) = 0 there differs from expit only in the subnormal range,
    # so the overflow warning is silenced. Entering np.errstate costs ~1 us, which puts the
    # crossover between 800 and 1024 elements in float32 and float64 alike (measured, 1 thread)
    if type(x) is not np.ndarray or x.size < 1024 or x.dtype.kind != "f":
        return scipy.special.expit(x)
    with np.errstate(over="ignore"):
        e = np.exp(-x)
    e += 1
    return np.reciprocal(e, out=e)


sigmoid = _unary("sigmoid", _sigmoid_forward, lambda g, out, x: g * out * (1 - out), torch.sigmoid, EXP_FAMILY,
                 mp=lambda x: 1 / (1 + mpmath.exp(-x)))


# the mask is read from the output (out > 0 exactly where x > 0, NaN included), as torch's
# threshold_backward does: relu's input then need not be kept alive for the backward
relu = _unary("relu", lambda x: np.maximum(x, 0), lambda g, out, x: g * (_raw(out) > 0), torch.relu, KINK_AT_ZERO,
              smooth=False, kink_rule="relu'(0) = 0, as torch", mp=lambda x: x if x > 0 else 0 * x)


def _leaky_relu_vjp(g, out, x, negative_slope=0.01):
    return g * np.where(_raw(x) > 0, 1.0, negative_slope).astype(_raw(x).dtype)


leaky_relu = _unary("leaky_relu", lambda x, negative_slope=0.01: np.where(x > 0, x, x * negative_slope),
                    _leaky_relu_vjp, lambda x, negative_slope=0.01: torch.nn.functional.leaky_relu(x, negative_slope),
                    KINK_AT_ZERO, smooth=False, kink_rule="leaky_relu'(0) = negative_slope, as torch",
                    mp=lambda x, negative_slope=0.01: x if x > 0 else x * negative_slope,
                    params={"negative_slope": Real(-0.5, 2.0, edges=(0.01, 0.0, 1.0))})


def _elu_vjp(g, out, x, alpha=1.0):
    # for x < 0, d/dx alpha*(e^x - 1) = out + alpha. At x == 0 torch takes the left derivative alpha
    # for the gradient but a zero second derivative (its double backward masks x < 0 strictly), so
    # there the constant alpha is used, which does not depend on x
    data = _raw(x)
    return where(data > 0, g, where(data < 0, g * (out + alpha), g * alpha))


elu = _unary("elu", lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))), _elu_vjp,
             lambda x, alpha=1.0: torch.nn.functional.elu(x, alpha), KINK_AT_ZERO, smooth=False,
             kink_rule="elu'(0) = alpha (the left derivative) and elu''(0) = 0, as torch",
             mp=lambda x, alpha=1.0: x if x > 0 else alpha * mpmath.expm1(x),
             params={"alpha": Real(-0.5, 2.0, edges=(1.0, 0.0))})

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_C = 0.044715


def _gelu_forward(x, approximate="none"):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x ** 3)))
    if approximate != "none":
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return 0.5 * x * (1 + scipy.special.erf(x / math.sqrt(2)))


def _gelu_vjp(g, out, x, approximate="none"):
    if approximate == "tanh":
        t = tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x * x * x))
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * x * x))
    # exact: d/dx x*Phi(x) = Phi(x) + x*phi(x)
    return g * (0.5 * (1 + erf(x * (1 / math.sqrt(2)))) + x * exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi)))


def _gelu_mp(x, approximate="none"):
    if approximate == "tanh":   # the same float64 constants as the forward: they define the approximation
        return x / 2 * (1 + mpmath.tanh(mpmath.sqrt(2 / mpmath.pi) * (x + mpmath.mpf(_GELU_C) * x ** 3)))
    return x * mpmath.ncdf(x)


# FINITE: torch's gelu(+-inf) is NaN (inf * 0 in its formula), though the limits are inf and 0
gelu = _unary("gelu", _gelu_forward, _gelu_vjp,
              lambda x, approximate="none": torch.nn.functional.gelu(x, approximate=approximate), FINITE, mp=_gelu_mp,
              params={"approximate": Choice("none", "tanh")})


def _softplus_forward(x):
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large x, no loss for very negative x
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


softplus = _unary("softplus", _softplus_forward, lambda g, out, x: g * sigmoid(x), torch.nn.functional.softplus,
                  EXP_FAMILY, mp=lambda x: mpmath.log1p(mpmath.exp(x)))

_CLIP_BOUNDS = Domain(avoid=(-0.5, 0.5), infinities=(-math.inf, math.inf), nan=True,
                      description="real (kinks at min and max)")
# the values of clip's bounds: the kink grid's range, so that kink mode puts x exactly on a bound; an
# infinite bound does not clip
_CLIP_LIMITS = Domain(-1.0, 1.0, avoid=(-0.5, 0.5), closed=(-1.0, 1.0), infinities=(-math.inf, math.inf),
                      description="a bound of clip")


def _clip_bound(gen, shape):
    """None, a Python number or an array that broadcasts against x (the result takes the broadcast shape)."""
    form = gen.choice(["number", "array", "none"])
    if form == "none":
        return None
    if form == "number":
        return gen.choice([-0.5, 0.5]) if gen.boolean() else gen.scalar(_CLIP_LIMITS)
    return gen.array(shape, _CLIP_LIMITS)


def _clip_sample(gen):
    # min > max is drawn too: NumPy and torch then return max everywhere, with a zero gradient
    x_shape, min_shape, max_shape = gen.broadcastable_shapes(3, min_side=0)
    params = {"min": _clip_bound(gen, min_shape), "max": _clip_bound(gen, max_shape)}
    if params["min"] is None and params["max"] is None:
        params[gen.choice(["min", "max"])] = gen.choice([-0.5, 0.5])
    return (gen.array(x_shape, _CLIP_BOUNDS),), params


def _clip_mp(x, min=None, max=None):
    # as np.clip and torch.clamp: the lower bound first, then the upper one, so min > max gives max
    if min is not None and x < min:
        x = min
    if max is not None and x > max:
        x = max
    return x


def _torch_clamp(x, min=None, max=None):
    # torch.clamp takes two numbers or two tensors: any bound given becomes a tensor of x's dtype.
    # It does not broadcast x against a bound larger than both x and the other bound (it clamps in
    # two steps), so x is expanded to the shape of the result first, as np.clip's result has
    min, max = (None if v is None else torch.as_tensor(np.array(v, order="C"), dtype=x.dtype) for v in (min, max))
    shape = torch.broadcast_shapes(x.shape, *(v.shape for v in (min, max) if v is not None))
    return torch.clamp(x.expand(shape), min, max)


def _clip_vjp(g, out, x, min=None, max=None):
    # the gradient passes where min <= x <= max (inclusive at the bounds, as torch.clamp)
    data = _raw(x)
    inside = np.ones(data.shape, dtype=bool)
    if min is not None:
        inside &= data >= min
    if max is not None:
        inside &= data <= max
    return g * inside


clip = _unary("clip", lambda x, min=None, max=None: np.clip(x, min, max), _clip_vjp,
              _torch_clamp, _CLIP_BOUNDS, smooth=False,
              kink_rule="gradient 1 on [min, max] inclusive, as torch.clamp",
              mp=_clip_mp, sample=_clip_sample)


# ---- binary (broadcasting; the engine reduces each gradient to its input's shape) ---------------------
def _binary(name, forward, vjp_x, vjp_y, reference, domain=(REAL, REAL), **flags):
    return register(OpSpec(name, forward, (vjp_x, vjp_y), reference, domain, "binary", **flags))


add = _binary("add", np.add, lambda g, out, x, y: g, lambda g, out, x, y: g, torch.add, mp=lambda x, y: x + y)
sub = _binary("sub", np.subtract, lambda g, out, x, y: g, lambda g, out, x, y: -g, torch.sub, mp=lambda x, y: x - y)
mul = _binary("mul", np.multiply, lambda g, out, x, y: g * y, lambda g, out, x, y: g * x, torch.mul,
              mp=lambda x, y: x * y)
div = _binary("div", np.divide, lambda g, out, x, y: g / y, lambda g, out, x, y: -g * out / y, torch.div,
              (REAL, NONZERO), mp=lambda x, y: x / y)


def _pow_vjp_exponent(g, out, x, y):
    # d/dy x^y = x^y log x, defined for x > 0; at x <= 0 we return 0 (torch returns 0 at x == 0
    # and NaN for x < 0, where x^y is real only for integer y and the derivative does not exist)
    return g * out * log(where(_raw(x) > 0, x, 1.0))


def _pow_vjp_base(g, out, x, y):
    # y x^(y-1), set to 0 where y == 0 and x == 0 (the formula is 0 * inf = NaN there; torch gives 0).
    # Only there: at y == 0 with x > 0 the formula is already 0 and its cross derivative d/dy is the
    # true 1/x (torch masks every y == 0 and gets 0, a convention that is not the derivative)
    if isinstance(y, (int, float)):               # x ** 2 and friends: no mask needed
        if y == 2:
            return (x + x) * g                    # the square: skip x ** 1 (and x * 2's scalar conversion)
        return g * 0.0 if y == 0 else g * y * x ** (y - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return where((_raw(y) == 0) & (_raw(x) == 0), 0.0, g * y * x ** (y - 1))


def _pow_forward(x, y):
    # ndarray ** scalar takes NumPy's fast paths (x ** 2 is a square, x ** 0.5 a sqrt); np.power
    # does not. Two Python scalars go through np.power (Python's ** gives a complex for (-8) ** (1/3))
    return x ** y if type(x) is np.ndarray else np.power(x, y)


def _pow_sample(gen):
    """Every call form: x ** y on arrays (a positive base: a real power of a negative number is NaN),
    x ** n with a Python int (any base; a nonzero one for n < 0: 0 ** -1 is a pole), x ** 2.5 with a
    Python float, and 2.0 ** y with a Python base."""
    form = gen.choice(["arrays", "int exponent", "float exponent", "number base"])
    if form == "arrays":
        x_shape, y_shape = gen.broadcastable_shapes(2, min_side=0)
        return (gen.array(x_shape, POSITIVE), gen.array(y_shape, REAL)), {}
    if form == "int exponent":
        n = gen.choice([3, 2, -1, 0, 1, -2, 4])
        return (gen.array(gen.shape(min_side=0), NONZERO if n < 0 else REAL), n), {}
    if form == "float exponent":
        return (gen.array(gen.shape(min_side=0), POSITIVE), float(gen.choice([0.5, 2.5, -1.5, 2.0]))), {}
    return (gen.scalar(POSITIVE), gen.array(gen.shape(min_side=0), REAL)), {}


power = _binary("pow", _pow_forward, _pow_vjp_base, _pow_vjp_exponent, torch.pow,
                (POSITIVE, REAL), mp=lambda x, y: mpmath.power(x, y), sample=_pow_sample)


def _tie_split(first, second, strict):
    """Share of the gradient that goes to `first` in maximum/minimum: 1 where it wins, 0.5 at ties
    (torch's convention for maximum/minimum), 0 where it loses."""
    first, second = _raw(first), _raw(second)
    wins = first > second if strict == ">" else first < second
    return np.where(wins, 1.0, np.where(first == second, 0.5, 0.0)).astype(np.result_type(first, second))


def _tensors(x, y):
    """torch.maximum and minimum take tensors only: a Python number becomes a 0-d tensor of the other
    operand's dtype, as NumPy treats it (a weakly typed scalar)."""
    if not isinstance(x, torch.Tensor):
        x = torch.tensor(x, dtype=y.dtype)
    if not isinstance(y, torch.Tensor):
        y = torch.tensor(y, dtype=x.dtype)
    return x, y


maximum = _binary("maximum", np.maximum, lambda g, out, x, y: g * _tie_split(x, y, ">"),
                  lambda g, out, x, y: g * _tie_split(y, x, ">"), lambda x, y: torch.maximum(*_tensors(x, y)),
                  smooth=False,
                  kink_rule="ties split the gradient 0.5/0.5, as torch.maximum", mp=lambda x, y: max(x, y))
minimum = _binary("minimum", np.minimum, lambda g, out, x, y: g * _tie_split(x, y, "<"),
                  lambda g, out, x, y: g * _tie_split(y, x, "<"), lambda x, y: torch.minimum(*_tensors(x, y)),
                  smooth=False,
                  kink_rule="ties split the gradient 0.5/0.5, as torch.minimum", mp=lambda x, y: min(x, y))


def _where_sample(gen):
    # x or y may be a Python number (where(c, x, 0.0)); an infinite or NaN value in the branch not
    # taken must not reach the gradient
    cond_shape, x_shape, y_shape = gen.broadcastable_shapes(3, min_side=0)
    number_at = gen.integer(0, 5)
    x = gen.scalar(REAL) if number_at == 4 else gen.array(x_shape)
    y = gen.scalar(REAL) if number_at == 5 else gen.array(y_shape)
    return (gen.mask(cond_shape), x, y), {}


where = register(OpSpec(
    "where", np.where, (None, lambda g, out, c, x, y: where(c, g, 0.0), lambda g, out, c, x, y: where(c, 0.0, g)),
    lambda c, x, y: torch.where(c, x, y), (NOT_DIFFERENTIABLE, REAL, REAL), "binary", sample=_where_sample,
    mp=lambda c, x, y: x if c else y))
