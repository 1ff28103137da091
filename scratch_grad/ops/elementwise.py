"""Elementwise ops: unary functions and broadcasting binary ops.

`raw(x)` (engine.raw) gives the ndarray behind a Variable: masks and signs computed from it are constants in
a create_graph graph, which is right because they are piecewise constant (zero derivative a.e.).
"""
import math

import numpy as np
import scipy.special
from .lazy_torch import mpmath, torch

from .registry import (ABOVE_MINUS_ONE, EXP_FAMILY, FINITE, KINK_AT_ZERO, NONZERO, NOT_DIFFERENTIABLE, POSITIVE, REAL,
                       Domain, OpSpec, export, make_function, register)
from .sampling import Choice, Real, draw_params
from ..engine import Variable, raw


def _unary(name, forward, vjp, reference, domain=REAL, **flags):
    return register(OpSpec(name, forward, (vjp,), reference, (domain,), "elementwise", **flags))


# ---- derivatives that need their own op ---------------------------------------------------------------
# Derivatives written from the output (1 - tanh^2, s(1 - s)) cancel in the tails: tanh(20) and
# sigmoid(40) round to 1, and the gradient came out as exactly 0 where it is 4e-18. Written from x
# they are accurate to a few ulps everywhere, but a formula from x built of other ops either cancels
# in its own derivative or costs more ufunc calls on the hot path. These helpers are ops of their own
# (made like `astype`, not registered: they are parts of VJPs, not user functions): the forward is the
# accurate NumPy formula, the VJP the exact derivative written with scratch_grad ops, so under
# create_graph the second order is accurate too and can be differentiated again.
def _sech2_forward(x):
    """sech(x)^2 = 1 / cosh(x)^2 = tanh'(x): relative accuracy of a few ulps at every x (cosh is
    accurate and never cancels); |x| is capped where cosh would overflow (sech^2 has underflowed to
    0 there already: 4e^(-2|x|) < the smallest subnormal), so no overflow warning."""
    x = np.asarray(x)
    c = np.abs(x)
    if type(c) is not np.ndarray:
        c = np.array(c)                      # of a 0-d x, NumPy returns a scalar, which is no out= buffer
    # log(finfo.max): 709.78 for float64, 88.72 for float32 (cosh(88.72) < 3.4e38)
    np.minimum(c, 709.0 if x.dtype.itemsize >= 8 else 88.0, out=c)
    np.cosh(c, out=c)
    np.reciprocal(c, out=c)
    return np.multiply(c, c, out=c)           # 1/c/c: no overflow of c*c where 1/c underflows gracefully


# d/dx sech^2 = -2 sech^2 tanh: products of accurate values
_sech2 = make_function(OpSpec("sech2", _sech2_forward, (lambda g, out, x: g * (-2.0 * out * tanh(x)),),
                              lambda x: 1 / torch.cosh(x) ** 2, (REAL,), "elementwise"))


def _logistic_slope_forward(x):
    """s(x) s(-x) = sigmoid'(x) = e / (1 + e)^2 with e = exp(-|x|) <= 1: no overflow, no cancellation,
    a few ulps at every x (out * (1 - out) is 0 once sigmoid(x) rounds to 1, from x = 37 in float64).
    The exp costs ~30 instructions per entry where out * (1 - out) cost ~10: what accuracy needs."""
    x = np.asarray(x)
    e = np.abs(x)
    if type(e) is not np.ndarray:
        e = np.array(e)                      # of a 0-d x, NumPy returns a scalar, which is no out= buffer
    np.negative(e, out=e)
    np.exp(e, out=e)
    d = e + 1.0
    d *= d                                   # in place for arrays (of a 0-d e, d is a NumPy scalar)
    return np.divide(e, d, out=e)


# d/dx s'(x) = s'(x) (1 - 2 s(x)) = -s'(x) tanh(x / 2): no cancellation near 0, where 1 - 2 s(x) has
_logistic_slope = make_function(OpSpec("logistic_slope", _logistic_slope_forward,
                                       (lambda g, out, x: g * (-out * tanh(x * 0.5)),),
                                       lambda x: torch.sigmoid(x) * torch.sigmoid(-x), (REAL,), "elementwise"))


def _normal_pdf(x):
    return exp(x * x * -0.5) * (1 / math.sqrt(2 * math.pi))


# Phi(x), the normal CDF, from scipy.special.ndtr (erfc-based below 0: accurate in the lower tail, where
# 0.5 * (1 + erf(x / sqrt 2)) cancels to 0 from x = -8.3); its derivative is the normal density
_normal_cdf = make_function(OpSpec("normal_cdf", scipy.special.ndtr, (lambda g, out, x: g * _normal_pdf(x),),
                                   lambda x: torch.special.ndtr(x), (REAL,), "elementwise"))


# ---- unary ---------------------------------------------------------------------------------------
neg = _unary("neg", np.negative, lambda g, out, x: -g, torch.neg, mp=lambda x: -x)
exp = _unary("exp", np.exp, lambda g, out, x: g * out, torch.exp, EXP_FAMILY, mp=lambda x: mpmath.exp(x), method=True)
log = _unary("log", np.log, lambda g, out, x: g / x, torch.log, POSITIVE, mp=lambda x: mpmath.log(x), method=True)
log1p = _unary("log1p", np.log1p, lambda g, out, x: g / (1 + x), torch.log1p, ABOVE_MINUS_ONE,
               mp=lambda x: mpmath.log1p(x), method=True)
# d/dx (e^x - 1) = e^x, from x: out + 1 cancels to 0 once e^x is below out's rounding (x < -37 in float64)
expm1 = _unary("expm1", np.expm1, lambda g, out, x: g * exp(x), torch.expm1, EXP_FAMILY,
               mp=lambda x: mpmath.expm1(x),
               examples=(
                   ((np.array([-745.0, -100.0, -40.0, -20.0, -9.01, 1e-8, 80.0]),), {}),   # derivative tails
               ), method=True)
sqrt = _unary("sqrt", np.sqrt, lambda g, out, x: g / (2 * out), torch.sqrt, POSITIVE, mp=lambda x: mpmath.sqrt(x),
              method=True)


def _abs_vjp(g, out, x):
    # g * sign(x) with torch's sign, which is 0 at 0 and at NaN (np.sign(NaN) is NaN): (x > 0) - (x < 0)
    data = raw(x)
    return g * np.subtract(data > 0, data < 0, dtype=data.dtype)


abs = _unary("abs", np.abs, _abs_vjp, torch.abs, KINK_AT_ZERO,
             smooth=False, kink_rule="abs'(0) = 0 (sign(0) = 0, as torch; also 0 at NaN, as torch)",
             mp=lambda x: abs(x),
             examples=(
                 ((np.array([np.nan, 0.0, -0.0, -np.inf, np.inf, -2.0]),), {}),
             ), method=True)
sin = _unary("sin", np.sin, lambda g, out, x: g * cos(x), torch.sin, FINITE, mp=lambda x: mpmath.sin(x), method=True)
cos = _unary("cos", np.cos, lambda g, out, x: -g * sin(x), torch.cos, FINITE, mp=lambda x: mpmath.cos(x), method=True)
# tan: its poles at pi/2 + k*pi are kept out of the sampled interval
tan = _unary("tan", np.tan, lambda g, out, x: g * (1 + out * out), torch.tan,
            Domain(-1.4, 1.4, closed=(-1.4, 1.4), nan=True, description="|x| <= 1.4"),
            mp=lambda x: mpmath.tan(x), method=True)
# tanh' = sech^2(x) from x (1 - out^2 is 0 from |x| = 19 in float64, and 2e3 ulps off at 5)
def _tanh_vjp(g, out, x):
    # a plain backward calls the NumPy formula directly (tanh is on the per-op benchmark's path)
    return g * (_sech2_forward(x) if type(x) is np.ndarray else _sech2(x))


tanh = _unary("tanh", np.tanh, _tanh_vjp, torch.tanh, EXP_FAMILY, mp=lambda x: mpmath.tanh(x),
              examples=(
                  ((np.array([-1000.0, -80.0, -20.0, -9.01, -5.0, 1e-8, 5.0, 20.0, 40.0, 1000.0]),), {}),
                  ((np.array([np.inf, -np.inf, np.nan]),), {}),
                  ((np.array(-20.0),), {}),                       # 0-d
              ), method=True)
erf = _unary("erf", scipy.special.erf, lambda g, out, x: g * (2 / math.sqrt(math.pi)) * exp(-x * x), torch.erf,
             mp=lambda x: mpmath.erf(x))
square = _unary("square", np.square, lambda g, out, x: (x + x) * g, torch.square,  # x + x: no scalar 2 to convert
                mp=lambda x: x * x, method=True)
reciprocal = _unary("reciprocal", np.reciprocal, lambda g, out, x: -g * out * out, torch.reciprocal, NONZERO,
                    mp=lambda x: 1 / x, method=True)


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


def _sigmoid_vjp(g, out, x):
    # a plain backward calls the NumPy formula directly (sigmoid is on the MLP benchmark's path)
    return g * (_logistic_slope_forward(x) if type(x) is np.ndarray else _logistic_slope(x))


sigmoid = _unary("sigmoid", _sigmoid_forward, _sigmoid_vjp, torch.sigmoid, EXP_FAMILY,
                 mp=lambda x: 1 / (1 + mpmath.exp(-x)),
                 examples=(
                     ((np.array([-800.0, -40.0, -9.01, 1e-8, 9.01, 20.0, 40.0, 300.0, 800.0]),), {}),
                     ((np.linspace(-60.0, 60.0, 1200),), {}),        # >= 1024 entries: the exp-based forward
                     ((np.array([np.inf, -np.inf, np.nan]),), {}),
                     ((np.array(40.0),), {}),                     # 0-d
                 ), method=True)


def _relu_vjp(g, out, x):
    # The mask is read from the output, as torch's threshold_backward does (relu's input then need not
    # be kept alive for the backward). torch zeroes g where out <= 0, so a NaN input passes g through;
    # out is 0 exactly where x <= 0 and NaN where x is NaN, so out != 0 is that mask at the cost of
    # out > 0. torch selects (out <= 0 ? 0 : g): a NaN or inf in g (a second order through norm at 0,
    # a 1/0 upstream) stays out of the zeroed entries, where g * mask would give NaN * 0 = NaN. The
    # multiply is that select whenever g is finite, which one BLAS pass over g (vdot) confirms; np.where
    # costs 7x the multiply on large arrays, so it runs only when g is not finite
    mask = raw(out) != 0
    if type(g) is not np.ndarray:
        return where(mask, g, 0.0)             # create_graph: the select as an op
    if math.isfinite(np.vdot(g, g)):
        return g * mask
    return np.where(mask, g, 0.0)


relu = _unary("relu", lambda x: np.maximum(x, 0), _relu_vjp, torch.relu, KINK_AT_ZERO,
              smooth=False, kink_rule="relu'(0) = 0, as torch", mp=lambda x: x if x > 0 else 0 * x,
              examples=(
                  ((np.array([np.nan, 0.0, -0.0, 1.5, -2.0, np.inf, -np.inf]),), {}),
              ), method=True)


def _leaky_relu_vjp(g, out, x, negative_slope=0.01):
    return g * np.where(raw(x) > 0, 1.0, negative_slope).astype(raw(x).dtype)


leaky_relu = _unary("leaky_relu", lambda x, negative_slope=0.01: np.where(x > 0, x, x * negative_slope),
                    _leaky_relu_vjp, lambda x, negative_slope=0.01: torch.nn.functional.leaky_relu(x, negative_slope),
                    KINK_AT_ZERO, smooth=False, kink_rule="leaky_relu'(0) = negative_slope, as torch",
                    mp=lambda x, negative_slope=0.01: x if x > 0 else x * negative_slope,
                    params={"negative_slope": Real(-0.5, 2.0, edges=(0.01, 0.0, 1.0))})


def _elu_vjp(g, out, x, alpha=1.0):
    # for x < 0, d/dx alpha*(e^x - 1) = alpha e^x, computed from x: out + alpha (the same in exact
    # arithmetic) cancels to 0 once e^x is below out's rounding (x = -20 in float32, -40 in float64).
    # The exponent is 0 where x >= 0, so the branch not taken stays finite: exp(+inf) = inf would
    # make the second order 0 * inf = NaN at x = +inf. At x == 0 torch takes the left derivative
    # alpha for the gradient but a zero second derivative (its double backward masks x < 0
    # strictly), so there the constant alpha is used. x > 0 and NaN pass g (torch masks x <= 0)
    data = raw(x)
    negative = data < 0
    left = where(negative, g * (alpha * exp(where(negative, x, 0.0))), g * alpha)
    return where(data <= 0, left, g)


elu = _unary("elu", lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))), _elu_vjp,
             lambda x, alpha=1.0: torch.nn.functional.elu(x, alpha), KINK_AT_ZERO, smooth=False,
             kink_rule="elu'(0) = alpha (the left derivative) and elu''(0) = 0, as torch",
             mp=lambda x, alpha=1.0: x if x > 0 else alpha * mpmath.expm1(x),
             params={"alpha": Real(-0.5, 2.0, edges=(1.0, 0.0))},
             examples=(
                 ((np.array([-np.inf, -745.0, -40.0, -20.0, -1.0, -0.0, 0.0, 1.0, np.inf, np.nan]),), {}),
                 ((np.array([-700.0, -20.0, np.inf, -np.inf]),), {"alpha": 0.5}),
             ))

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_C = 0.044715


def _gelu_forward(x, approximate="none"):
    # x Phi(x) and x s(2u) rather than 0.5 x (1 + erf) and 0.5 x (1 + tanh u), which are 0 below
    # x = -8.3 (and -4.6 for tanh in float32) where gelu(-10) = -7.6e-23
    if approximate == "tanh":
        return x * scipy.special.expit((2 * _SQRT_2_OVER_PI) * (x + _GELU_C * x ** 3))
    if approximate != "none":
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return x * scipy.special.ndtr(x)


def _gelu_vjp(g, out, x, approximate="none"):
    if approximate == "tanh":
        # gelu = x s(2u), u = k (x + c x^3), as 0.5 (1 + tanh u) = s(2u); the derivative
        # s(2u) (1 + 2 x u' s(-2u)) has no 1 + tanh or 1 - tanh^2, which cancel in the tails
        two_u = (2 * _SQRT_2_OVER_PI) * (x + _GELU_C * x * x * x)
        slope = (2 * _SQRT_2_OVER_PI) * (1 + 3 * _GELU_C * x * x)      # 2 u'
        return g * (sigmoid(two_u) * (1 + x * slope * sigmoid(-two_u)))
    # exact: d/dx x Phi(x) = Phi(x) + x phi(x), with Phi from erfc in the lower tail (0.5 (1 + erf)
    # cancels to 0 from x = -8.3, where the derivative is -1e-15); the sum cancels only near the
    # derivative's zero at x = -0.75, as its conditioning says it must
    return g * (_normal_cdf(x) + x * _normal_pdf(x))


def _gelu_mp(x, approximate="none"):
    if approximate == "tanh":   # the same float64 constants as the forward: they define the approximation
        return x / 2 * (1 + mpmath.tanh(mpmath.sqrt(2 / mpmath.pi) * (x + mpmath.mpf(_GELU_C) * x ** 3)))
    return x * mpmath.ncdf(x)


# FINITE: torch's gelu(+-inf) is NaN (inf * 0 in its formula), though the limits are inf and 0
gelu = _unary("gelu", _gelu_forward, _gelu_vjp,
              lambda x, approximate="none": torch.nn.functional.gelu(x, approximate=approximate), FINITE, mp=_gelu_mp,
              params={"approximate": Choice("none", "tanh")},
              examples=(
                  ((np.array([-40.0, -20.0, -10.0, -5.0, -0.75, 1e-8, 10.0, 40.0]),), {}),   # 1 + erf cancels below -8
                  ((np.array([-40.0, -20.0, -10.0, -5.0, -0.75, 1e-8, 10.0, 40.0]),), {"approximate": "tanh"}),
              ))


def _softplus_forward(x):
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large x, no loss for very negative x
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


# softplus' = sigmoid, accurate in both tails; torch's gradient is exactly 1 above its threshold of 20,
# where the true value is 1 - 2e-9 (float64): torch is the less accurate reference there
softplus = _unary("softplus", _softplus_forward, lambda g, out, x: g * sigmoid(x), torch.nn.functional.softplus,
                  EXP_FAMILY, mp=lambda x: mpmath.log1p(mpmath.exp(x)),
                  examples=(
                      ((np.array([-40.0, -20.0, 1e-8, 15.0]),), {}),
                  ))

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
    # the gradient passes where min <= x <= max (inclusive at the bounds, as torch.clamp; nowhere when
    # min > max, where the result is max). Array bounds may broadcast x to a larger shape: the mask is
    # built by broadcasting, not in place into x's shape, and the engine sums g back to x's shape
    # torch selects (where(inside, g, 0)), so a NaN or inf in g does not reach the clipped entries
    data = raw(x)
    inside = True
    if min is not None:
        inside = data >= _bound(min, data)
    if max is not None:
        inside = inside & (data <= _bound(max, data))
    return where(inside, g, 0.0)


def _bound(value, x):
    """An array bound in x's dtype (torch.clamp's bounds take x's dtype; NumPy would promote a float32 x
    to float64 against float64 bounds)."""
    if isinstance(value, np.ndarray) and isinstance(x, np.ndarray) and value.dtype != x.dtype:
        return value.astype(x.dtype)
    return value


def _clip_forward(x, min=None, max=None):
    return np.clip(x, _bound(min, x), _bound(max, x))


def _clip_conventions(x, min=None, max=None):
    """x exactly on a bound that equals the other: clip is flat on both sides, yet the gradient is g
    (torch.clamp's [min, max] inclusive, kept here)."""
    if min is None or max is None:
        return False
    with np.errstate(invalid="ignore"):
        return bool(np.any((np.asarray(x) == min) & (np.asarray(min) == max)))


clip = _unary("clip", _clip_forward, _clip_vjp,
              _torch_clamp, _CLIP_BOUNDS, smooth=False,
              kink_rule="gradient 1 on [min, max] inclusive, as torch.clamp",
              mp=_clip_mp, sample=_clip_sample, conventions=_clip_conventions,
              examples=(
                  # array bounds that broadcast x to a larger shape; min > max in some entries
                  ((np.array([-1.0, 0.0, 0.25, 1.0]),), {"min": np.array([[-0.5], [0.5]]), "max": np.array([[0.5], [0.0]])}),
                  ((np.linspace(-1.0, 1.0, 6).reshape(2, 3),), {"min": np.array([-0.5, 0.0, 0.5]), "max": 0.7}),
                  ((np.array([-1.0, 0.0, 1.0]),), {"min": np.full((2, 3), -0.5)}),
                  ((np.array([-1.0, 0.2, 1.0]),), {"min": 0.5, "max": -0.5}),
              ), method=True)


# ---- binary (broadcasting; the engine reduces each gradient to its input's shape) ---------------------
def _binary(name, forward, vjp_x, vjp_y, reference, domain=(REAL, REAL), **flags):
    return register(OpSpec(name, forward, (vjp_x, vjp_y), reference, domain, "binary", **flags))


add = _binary("add", np.add, lambda g, out, x, y: g, lambda g, out, x, y: g, torch.add, mp=lambda x, y: x + y)
sub = _binary("sub", np.subtract, lambda g, out, x, y: g, lambda g, out, x, y: -g, torch.sub, mp=lambda x, y: x - y)
mul = _binary("mul", np.multiply, lambda g, out, x, y: g * y, lambda g, out, x, y: g * x, torch.mul,
              mp=lambda x, y: x * y)
div = _binary("div", np.divide, lambda g, out, x, y: g / y, lambda g, out, x, y: -g * out / y, torch.div,
              (REAL, NONZERO), mp=lambda x, y: x / y)


# pow's VJPs are torch's formulas, written with the same ops in the same places, so that values, NaN
# and inf agree with torch at the edges of the domain (x <= 0) in the gradient and in the second order
# (whose NaN at x == 0 comes from differentiating these wheres and is honest: x^y has no derivative
# in y for x < 0, so none of second order in a neighbourhood of x == 0 either). One exception, the
# base's mask at y == 0 (see _pow_vjp_base).


def _pow_vjp_exponent(g, out, x, y):
    # d/dy x^y = x^y log x. torch: g * where((x == 0) & (y >= 0), 0, out * log(x)): 0 at 0^y for y >= 0
    # (by continuity from x > 0), -inf * g at 0^y for y < 0 (out * log 0 = inf * -inf), NaN for x < 0
    # (log of a negative number: x^y is real there for integer y only, and has no derivative in y)
    with np.errstate(divide="ignore", invalid="ignore"):
        # NumPy's log on raw values: the VJP means the NaN of a negative base (no domain check, even when
        # called outside backprop); under create_graph, sg.log records (backprop does not check domains)
        log_x = log(x) if isinstance(x, Variable) else np.log(x)
    if isinstance(log_x, np.generic):
        log_x = float(log_x)      # a Python base: a NumPy float64 scalar would make a float32 y's gradient float64
    return g * where((raw(x) == 0) & (raw(y) >= 0), 0.0, out * log_x)


def _pow_vjp_base(g, out, x, y):
    # d/dx x^y = y x^(y-1). torch: where(y == 0, 0, g * (y * x^(y-1))). Here the mask is y == 0 and x
    # 0 or not finite only, where the formula is 0 * inf = NaN: at y == 0 with finite x != 0 it is 0 and
    # its cross derivative d/dy is the true 1/x (torch's mask gives 0 there, a convention that is not the
    # derivative: the oracle's finite differences and mpmath side against it). A Python exponent 0
    # gives zeros (even where g is inf or NaN), as torch; otherwise the formula
    if isinstance(y, np.generic):
        y = y.item()              # as in the forward: a Python number keeps x's dtype
    if isinstance(y, (int, float)):
        if y == 2:
            return (x + x) * g                    # the square: skip x ** 1 (and x * 2's scalar conversion)
        if y == 0:
            data = raw(x)
            return np.zeros(data.shape, dtype=data.dtype)
        return g * (y * x ** (y - 1))
    # the mask selects on g and on the factor separately (the same values as where(mask, 0, g * c)): a
    # NaN or inf in g stays out of masked entries, and the forward mode derived from this VJP (its
    # transpose in g) does not multiply a masked 0 by the factor's 0 * inf = NaN (torch's is 0 there)
    data = raw(x)
    # y == 0 where x is 0, +-inf or NaN: x^0 = 1 there too, but y x^(y-1) is 0 * inf or NaN
    mask = (raw(y) == 0) & ~(np.isfinite(data) & (data != 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return where(mask, 0.0, g) * where(mask, 1.0, y * x ** (y - 1))


def _pow_forward(x, y):
    # ndarray ** scalar takes NumPy's fast paths (x ** 2 is a square, x ** 0.5 a sqrt); np.power
    # does not. Two Python scalars go through np.power (Python's ** gives a complex for (-8) ** (1/3)).
    # A NumPy scalar beside an array is made a Python number: NumPy's float64 scalars are not weak, and
    # float32 ** np.float64(2.5) would be float64 (torch keeps float32)
    if isinstance(y, np.generic) and type(x) is np.ndarray:
        y = y.item()
    elif isinstance(x, np.generic) and type(y) is np.ndarray:
        x = x.item()
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
                (POSITIVE, REAL), mp=lambda x, y: mpmath.power(x, y), sample=_pow_sample,
                examples=(
                    # bases at 0 (both signs) and below 0 with integer exponents, exponents 0 and < 0
                    ((np.array([0.0, -0.0, 0.0, 0.0, -0.0, -1.0, -2.5, -2.5, 2.0, 0.0]),
                      np.array([-1.0, -1.0, 1.0, 2.0, 2.0, 3.0, 2.0, -1.0, 0.5, 0.0])), {}),
                    ((np.array([0.0, 0.5, 2.0, -1.5]), 0), {}),           # Python exponents
                    ((np.array([0.0, 0.5, 2.0, -1.5]), 1), {}),
                    ((np.array([0.0, 0.5, 2.0, -1.5]), 3), {}),
                    ((np.array([0.0, 0.5, 2.0]), 0.5), {}),
                    ((np.array([0.0, 0.5, -2.0]), -1), {}),
                    ((np.array([np.nan, np.inf, -np.inf, np.nan]), np.array([0.0, 0.0, -0.0, 1.0])), {}),
                    ((0.0, np.array([0.0, 1.0, 2.0, -1.0, 0.5])), {}),     # Python bases
                    ((2.0, np.array([0.0, 1.0, -1.0, 0.5])), {}),
                ), method=True)
export(power, "power")       # NumPy's name beside torch's (and the registry's) pow


def _max_min_vjp(g, first, second, loses):
    """The gradient `first` gets from maximum/minimum, with torch's masks: where(x == y, g / 2, g)
    .masked_fill_(lost, 0), lost being first < second for maximum, first > second for minimum. A NaN
    on either side loses nothing, so both inputs get the whole gradient there; the fill is a select,
    so a NaN or inf in g does not reach the input that lost (g * 0 would be NaN)."""
    a, b = raw(first), raw(second)
    lost = a < b if loses == "<" else a > b
    return where(lost, 0.0, where(a == b, g * 0.5, g))


def _tensors(x, y):
    """torch.maximum and minimum take tensors only: a Python number becomes a 0-d tensor of the other
    operand's dtype, as NumPy treats it (a weakly typed scalar)."""
    if not isinstance(x, torch.Tensor):
        x = torch.tensor(x, dtype=y.dtype)
    if not isinstance(y, torch.Tensor):
        y = torch.tensor(y, dtype=x.dtype)
    return x, y


_MAX_MIN_EXAMPLES = (
    ((np.array([np.nan, 1.0, np.nan, 2.0, 3.0]), np.array([1.0, np.nan, np.nan, 2.0, -np.inf])), {}),
    ((np.array([[1.0, 2.0]]), np.array([[2.0], [1.0]])), {}),
)
maximum = _binary("maximum", np.maximum, lambda g, out, x, y: _max_min_vjp(g, x, y, "<"),
                  lambda g, out, x, y: _max_min_vjp(g, y, x, "<"), lambda x, y: torch.maximum(*_tensors(x, y)),
                  smooth=False,
                  kink_rule="ties split the gradient 0.5/0.5, as torch.maximum", mp=lambda x, y: max(x, y),
                  examples=(
                      *_MAX_MIN_EXAMPLES,
                  ))
minimum = _binary("minimum", np.minimum, lambda g, out, x, y: _max_min_vjp(g, x, y, ">"),
                  lambda g, out, x, y: _max_min_vjp(g, y, x, ">"), lambda x, y: torch.minimum(*_tensors(x, y)),
                  smooth=False,
                  kink_rule="ties split the gradient 0.5/0.5, as torch.minimum", mp=lambda x, y: min(x, y),
                  examples=(
                      *_MAX_MIN_EXAMPLES,
                  ))


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
