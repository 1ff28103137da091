"""Reductions over axis=None / int / tuple with keepdims. Each VJP expands g back to x's shape."""
import builtins
import math

import numpy as np
from .lazy_torch import mpmath, torch

from .elementwise import exp, sqrt, where
from .registry import FINITE, LOGITS, REAL, OpSpec, register
from .sampling import reduction_inputs
from .shape import _broadcast_forward, broadcast_to, flip, pad, reshape, transpose
from ..engine import raw


def _axes(ndim, axis):
    """axis as a tuple of distinct non-negative ints (all axes for None). As in torch, a 0-d input
    takes axis 0 or -1 (as if it had one axis of size 1) and reduces nothing; NumPy refuses those
    in np.mean, np.var and np.flip and accepts them in ufunc.reduce, so every forward passes the
    normalized tuple instead of the axis as given."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    bound = ndim or 1
    result = []
    for a in axes:
        if not isinstance(a, (int, np.integer)):
            raise TypeError(f"axis must be an int or a tuple of ints, got {axis!r}")
        if not -bound <= a < bound:
            raise np.exceptions.AxisError(int(a), ndim)
        result.append(int(a) % bound)
    if len(set(result)) != len(result):
        raise np.exceptions.AxisError(f"axis {axis!r} names an axis more than once")
    return tuple(result) if ndim else ()


def _numpy_axis(x, axis):
    """The axis argument a NumPy reduction gets: None stays None (the fast default), else `_axes`."""
    return None if axis is None else _axes(np.ndim(x), axis)


def _kept_shape(shape, axis):
    """The shape the reduction has with keepdims=True."""
    axes = _axes(len(shape), axis)
    return tuple(1 if k in axes else s for k, s in enumerate(shape))


def _count(shape, axis):
    """How many entries each output entry reduces (0 over an empty axis, 1 over no axis)."""
    return math.prod(shape[a] for a in _axes(len(shape), axis))


def _ratio(numerator, denominator):
    """numerator / denominator as a Python float, inf for a zero denominator (as float division in
    torch's backward formulas: mean over an empty axis, var with ddof == n), never ZeroDivisionError.
    A Python float keeps the dtype of the array it multiplies (NumPy 2 promotion), a NumPy scalar would not."""
    return numerator / denominator if denominator else math.copysign(math.inf, numerator)


def _expand(g, x, axis):
    """Broadcast a reduction's gradient (kept dims or not) back to the shape of x."""
    if type(g) is np.ndarray:                     # a plain backward (x is raw too): skip the ops' dispatch
        shape = x.shape
        return _broadcast_forward(g if axis is None else g.reshape(_kept_shape(shape, axis)), shape)
    shape = raw(x).shape
    return broadcast_to(reshape(g, _kept_shape(shape, axis)), shape)


def _keep(value, x, axis):
    """A reduction's result with the reduced axes kept as size 1, ready to broadcast against x."""
    return reshape(value, _kept_shape(raw(x).shape, axis))


def _torch_dims(x, axis):
    return tuple(range(x.dim())) if axis is None else axis


# a 0-d input with axis 0 or -1 (torch reduces nothing, as if it had one axis of size 1)
_ZERO_D = (((np.array(1.5),), {"axis": 0}), ((np.array(-0.5),), {"axis": -1, "keepdims": True}),
           ((np.array(0.0),), {"axis": (0,)}))


def _reduction(name, forward, vjp, reference, domain=REAL, **flags):
    return register(OpSpec(name, forward, (vjp,), reference, (domain,), "reduction", **flags))


def _sum_forward(x, axis=None, keepdims=False):
    x = np.asarray(x)
    return np.add.reduce(x, axis=axis if axis is None else _axes(x.ndim, axis), keepdims=keepdims)


sum = _reduction("sum", _sum_forward,
                 lambda g, out, x, axis=None, keepdims=False: _expand(g, x, axis),
                 lambda x, axis=None, keepdims=False: torch.sum(x, dim=_torch_dims(x, axis), keepdim=keepdims),
                 mp=lambda values: mpmath.fsum(values),
                 examples=(
                     *_ZERO_D,
                 ))

def _mean_vjp(g, out, x, axis=None, keepdims=False):
    # g / n, then broadcast: scaling the smaller g is cheaper, and over an empty axis (n = 0) the
    # forward mode derived from this VJP (its transpose: sum(t) / n) is 0/0 = NaN, as torch's
    return _expand(g * _ratio(1.0, _count(raw(x).shape, axis)), x, axis)


mean = _reduction("mean", lambda x, axis=None, keepdims=False: np.mean(x, axis=_numpy_axis(x, axis), keepdims=keepdims),
                  _mean_vjp,
                  lambda x, axis=None, keepdims=False: torch.mean(x, dim=_torch_dims(x, axis), keepdim=keepdims),
                  mp=lambda values: mpmath.fsum(values) / len(values),
                  examples=(
                      *_ZERO_D,
                      ((np.ones((2, 0)),), {"axis": 1}),                             # an empty axis: NaN, an empty gradient
                      ((np.ones((0, 3)),), {"axis": -2, "keepdims": True}),
                      ((np.ones((0,)),), {}),
                  ))


def _centered(x, axis):
    """x - mean(x) along axis, on arrays or Variables, computed as d - mean(d) with d = x - (the first
    entry of each reduced row). The shift changes nothing in exact arithmetic, but values that are
    equal give exactly zero deviations (mean(x) of n equal values is not always exactly that value:
    seven entries of 0.1 average to 0.1 + 1.4e-17), so var and std of a constant row are exactly 0
    and the std gradient takes its zero subgradient there, as torch's Welford-based kernels do; and
    values that are nearly equal (1e8 + 0.3, or float32 rows that agree to an ulp) lose no digits to
    a mean of large magnitude. Deviations are rounded at the scale of the row, as NumPy's two-pass
    x - mean(x) is."""
    ndim = raw(x).ndim
    axes = _axes(ndim, axis)
    if not axes:
        return x - x                          # nothing reduced: every deviation is 0
    first = tuple(slice(0, 1) if k in axes else slice(None) for k in range(ndim))
    shift = x[first]
    # an infinite first entry would make every deviation inf - inf = NaN; torch's x - mean(x) gives
    # NaN only at the infinite entries and +-inf elsewhere: such rows are not shifted
    d = x - where(np.isfinite(raw(shift)), shift, 0.0)
    return d - mean(d, axis=axes, keepdims=True)


def _var_forward(x, axis=None, keepdims=False, ddof=0):
    x = np.asarray(x)
    axes = _axes(x.ndim, axis)
    # float32 is reduced in float64, as torch accumulates it: squares of 1e-30 or 1e30 are out of
    # float32's range, while the variance of those values (or their std) is not
    work = x.astype(np.float64) if x.dtype == np.float32 else x
    # an empty axis (0/0) and ddof >= n (division by max(n - ddof, 0) = 0, as NumPy and torch) give
    # NaN or inf: expected values, not warnings
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        centered = _centered(work, axes)
        squares = np.add.reduce(centered * centered, axis=axes, keepdims=keepdims)
        result = squares / builtins.max(_count(x.shape, axes) - ddof, 0)   # `max` here is the op
    return result.astype(x.dtype) if work is not x else result


def _mp_var(values, ddof):
    # the forward's own definition: divided by max(n - ddof, 0), as NumPy and torch, so ddof >= n has no
    # reference (ZeroDivisionError, as at ddof == n); n - ddof < 0 would give a negative variance
    mean = mpmath.fsum(values) / len(values)
    return mpmath.fsum((v - mean) ** 2 for v in values) / builtins.max(len(values) - ddof, 0)


def _ddof_sample(gen):
    """The reduction sampler plus ddof, the correction: 0 to n - 1 (n = the reduced count), and n
    itself in edge mode (a division by zero: inf or NaN, as in NumPy and torch)."""
    x, params = reduction_inputs(gen)
    shape = np.shape(x)
    axes = range(len(shape)) if params["axis"] is None else np.atleast_1d(params["axis"])
    n = int(np.prod([shape[a] for a in axes])) if shape else 1
    params["ddof"] = gen.integer(0, n if gen.edges else max(n - 1, 0))
    return (x,), params


def _var_vjp(g, out, x, axis=None, keepdims=False, ddof=0):
    # 2 (x - mean) / (n - ddof). torch's backward divides by n - ddof as it is (inf at n == ddof, negative
    # beyond), while its forward, as NumPy's, divides by max(n - ddof, 0): the same here
    data = raw(x)
    dof = _count(data.shape, axis) - ddof
    if data.ndim == 0 and dof <= 0:
        # torch's backward has a branch of its own here: grad * where(x == mean, NaN, inf), constants
        # (so no second order); of a 0-d x, NaN unless x is NaN. Kept, so NaN positions match torch
        return g * np.where(data == data, np.nan, np.inf).astype(data.dtype)
    # (x - mean) before the factor: over an empty axis torch's forward mode gives 0 (a sum over nothing),
    # which is what this VJP's transpose gives; mean and std scale g first (NaN there, as torch's)
    return _expand(g, x, axis) * _centered(x, axis) * _ratio(2.0, dof)


# var and std: the same regression inputs (their forwards share _var_forward, their VJPs the centring)
_SPREAD_EXAMPLES = (
    *_ZERO_D,
    ((np.array([[np.inf, 1.0, 2.0], [-np.inf, -np.inf, 1.0]]),), {"axis": 1}),   # infinite entries: NaN only there
    ((np.full((2, 7), 0.1),), {"axis": 1}),                       # equal values: exactly 0, zero gradient
    ((np.full((2, 3, 2), 1e8 + 0.3),), {"axis": (0, -1)}),
    ((np.full(5, 1 / 3),), {}),
    ((np.ones((2, 0)),), {"axis": 1}),                             # an empty axis: NaN, an empty gradient
    ((np.ones((0, 3)),), {"axis": -2, "keepdims": True}),
    ((np.ones((0,)),), {}),
    ((np.array([[1.0, 2.0], [0.5, 0.5]]),), {"axis": 1, "ddof": 2}),    # ddof == n: inf/NaN, torch's 2/(n - ddof)
    ((np.array([[1.0, 2.0, 4.0]]),), {"axis": -1, "ddof": 5}),          # ddof > n
    ((np.array(1.5),), {"axis": 0, "ddof": 1}),
)


var = _reduction("var", _var_forward,
                 _var_vjp,
                 lambda x, axis=None, keepdims=False, ddof=0: torch.var(x, dim=_torch_dims(x, axis), keepdim=keepdims,
                                                                       correction=ddof),
                 mp=lambda values, ddof=0: _mp_var(values, ddof), sample=_ddof_sample,
                 examples=_SPREAD_EXAMPLES)


def _std_vjp(g, out, x, axis=None, keepdims=False, ddof=0):
    # d std = d var / (2 std). Where std == 0 (all values equal) std is not differentiable; torch
    # uses the subgradient 0 there, for the gradient and for its derivative, and so do we: the
    # `where` picks a constant 0 that does not depend on x
    centered = _centered(x, axis)
    std_kept = _keep(out, x, axis)
    flat = raw(std_kept) == 0
    scale = _ratio(1.0, _count(raw(x).shape, axis) - ddof)
    # g / ((n - ddof) std) in the output's shape first, then broadcast, as mean
    safe_out = where(raw(out) == 0, 1.0, out)
    return where(flat, 0.0, _expand(g * scale / safe_out, x, axis) * centered)


def _std_forward(x, axis=None, keepdims=False, ddof=0):
    x = np.asarray(x)
    if x.dtype == np.float32:       # the square root of the float64 variance (which may exceed float32)
        with np.errstate(over="ignore"):
            return np.sqrt(_var_forward(x.astype(np.float64), axis, keepdims, ddof)).astype(np.float32)
    return np.sqrt(_var_forward(x, axis, keepdims, ddof))


std = _reduction("std", _std_forward,
                 _std_vjp,
                 lambda x, axis=None, keepdims=False, ddof=0: torch.std(x, dim=_torch_dims(x, axis), keepdim=keepdims,
                                                                       correction=ddof),
                 mp=lambda values, ddof=0: mpmath.sqrt(_mp_var(values, ddof)),
                 smooth=False, kink_rule="gradient 0 where all reduced values are equal (std == 0), as torch",
                 sample=_ddof_sample,
                 examples=_SPREAD_EXAMPLES)


def _extremum_vjp(g, out, x, axis=None, keepdims=False):
    # ties share the gradient evenly among the maximal entries, as torch.amax/amin
    hits = (raw(x) == raw(_keep(out, x, axis))).astype(raw(x).dtype)
    return _expand(g, x, axis) * (hits / hits.sum(axis=_axes(hits.ndim, axis), keepdims=True))


max = _reduction("max", lambda x, axis=None, keepdims=False: np.max(x, axis=_numpy_axis(x, axis), keepdims=keepdims),
                 _extremum_vjp,
                 lambda x, axis=None, keepdims=False: torch.amax(x, dim=_torch_dims(x, axis), keepdim=keepdims),
                 smooth=False, kink_rule="ties split the gradient evenly, as torch.amax", mp=lambda values: max(values),
                 reduces_empty=False,
                 examples=(
                     *_ZERO_D,
                 ))
min = _reduction("min", lambda x, axis=None, keepdims=False: np.min(x, axis=_numpy_axis(x, axis), keepdims=keepdims),
                 _extremum_vjp,
                 lambda x, axis=None, keepdims=False: torch.amin(x, dim=_torch_dims(x, axis), keepdim=keepdims),
                 smooth=False, kink_rule="ties split the gradient evenly, as torch.amin", mp=lambda values: min(values),
                 reduces_empty=False,
                 examples=(
                     *_ZERO_D,
                 ))


def _exclusive_cumprod(v):
    """[1, v0, v0 v1, ..., v0 ... v_(n-2)] along the last axis, with scratch_grad ops (on arrays or
    Variables): a Hillis-Steele scan, log2(n) steps of a shifted product (pad with ones, multiply).
    Only products of the entries, never a division, so it is exact where entries are 0, and under
    create_graph it is itself differentiable (prod's second order at zeros)."""
    n = raw(v).shape[-1]
    lead = ((0, 0),) * (raw(v).ndim - 1)
    prefix = pad(v[..., :n - 1], pad_width=lead + ((1, 0),), constant_values=1.0)
    shift = 1
    while shift < n:
        prefix = prefix * pad(prefix[..., :n - shift], pad_width=lead + ((shift, 0),), constant_values=1.0)
        shift *= 2
    return prefix


def _product_of_others(x, axes):
    """prod over axes of x with each entry left out in turn: the exclusive prefix product times the
    exclusive suffix product of each reduced row (x's reduced axes moved last and flattened), so no
    division by an entry that may be 0 (torch's prod_safe_zeros_backward does the same with cumprod)."""
    shape = raw(x).shape
    rest = tuple(a for a in range(len(shape)) if a not in axes)
    moved = transpose(x, axes=rest + axes)
    rows = reshape(moved, tuple(shape[a] for a in rest) + (_count(shape, axes),))
    others = _exclusive_cumprod(rows) * flip(_exclusive_cumprod(flip(rows, axis=-1)), axis=-1)
    return transpose(reshape(others, raw(moved).shape), axes=tuple(int(k) for k in np.argsort(rest + axes)))


def _prod_vjp(g, out, x, axis=None, keepdims=False):
    data = raw(x)
    axes = _axes(data.ndim, axis)
    if not axes:                           # nothing reduced: prod is the identity
        return _expand(g, x, axes) * 1.0
    product = np.abs(raw(out))
    if data.all() and (not np.isfinite(data).all() or
                       (np.isfinite(product).all() and product.min(initial=np.inf) >= np.finfo(product.dtype).tiny)):
        # no zero: d prod / d x_i = prod / x_i, as torch (also with inf or NaN entries, for torch's NaNs)
        return _expand(g, x, axes) * _keep(out, x, axes) / x
    # zeros, or a product that under- or overflowed (prod of [1e-200, 1e-200] is 0, of [1e200, 1e200, 1e-200]
    # inf, and prod / x_i is then 0 or inf where the product of the others is 1e-200 or 1e200; a subnormal
    # product has lost digits): the product of the other entries, written with ops so that under
    # create_graph its own derivative (the product of all but two entries, nonzero where a row holds
    # exactly one or two zeros) is the true second order, as torch's cumprod-based formula gives at zeros
    return _expand(g, x, axes) * _product_of_others(x, axes)


def _torch_prod(x, axis=None, keepdims=False):
    dims = sorted(_axes(x.dim(), axis), reverse=True)
    for d in dims:
        x = torch.prod(x, dim=d, keepdim=True)
    return x if keepdims else x.reshape([s for k, s in enumerate(x.shape) if k not in dims])


prod = _reduction("prod", lambda x, axis=None, keepdims=False: np.prod(x, axis=_numpy_axis(x, axis), keepdims=keepdims),
                  _prod_vjp,
                  _torch_prod, mp=lambda values: mpmath.fprod(values),
                  examples=(
                      *_ZERO_D,
                      ((np.array([[0.0, 1.5, 2.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]]),), {"axis": 1}),  # 1, 2, 3 zeros
                      ((np.array([0.0, -1.5, 2.0, 0.5]),), {}),
                      ((np.array([0.0]),), {"axis": 0}),
                      ((np.array([[[1.0, 0.0], [2.0, -1.0]], [[0.0, 3.0], [0.0, 0.5]]]),), {"axis": (0, -1), "keepdims": True}),
                      ((np.array(0.0),), {"axis": -1}),
                      ((np.array([[1e-200, 1e-200], [1e-30, 1e-30]]),), {"axis": 1}),   # the product underflows
                  ))


def _row_max(x, axes):
    """The max over axes (kept), 0 where it is +-inf or the axes are empty: the shift of logsumexp."""
    if x.size == 0:
        return np.zeros(_kept_shape(x.shape, axes), dtype=x.dtype)
    m = np.max(x, axis=axes, keepdims=True)
    return np.where(np.isfinite(m), m, 0)


def _logsumexp_forward(x, axis=None, keepdims=False):
    # m + log(sum(exp(x - m))) with m the max: exp never overflows; m is 0 where it is +-inf (and over
    # an empty axis, whose logsumexp is log 0 = -inf, as torch)
    x = np.asarray(x)
    axes = _axes(x.ndim, axis)
    m = _row_max(x, axes)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axes)


def _logsumexp_vjp(g, out, x, axis=None, keepdims=False):
    # d lse / dx = softmax(x) = e / sum(e) with e = exp(x - m). exp(x - lse), the same in exact
    # arithmetic, loses it where lse rounds to m: lse([1e200, 1e200]) = 1e200 + log 2 = 1e200, and
    # exp(0) = 1 where the gradient is 1/2 (torch shares that error). m is a constant shift (the
    # ratio does not depend on it), so under create_graph the ratio is differentiated as it is
    axes = _axes(raw(x).ndim, axis)
    if _count(raw(x).shape, axes) == 0:
        # an empty axis: the gradient is empty; the forward mode derived from this VJP is NaN, as torch's
        return _expand(g * math.nan, x, axes)
    e = exp(x - _row_max(raw(x), axes))
    return _expand(g, x, axes) * (e / sum(e, axis=axes, keepdims=True))


logsumexp = _reduction("logsumexp", _logsumexp_forward, _logsumexp_vjp,
                       lambda x, axis=None, keepdims=False: torch.logsumexp(x, dim=_torch_dims(x, axis), keepdim=keepdims),
                       LOGITS, mp=lambda values: mpmath.log(mpmath.fsum(mpmath.exp(v) for v in values)),
                       examples=(
                           *_ZERO_D,
                           # lse rounds to the max (in float32: 1e8 + log 2 == 1e8): exp(x - lse) = 1, not 1/2
                           ((np.array([[1e8, 1e8, 0.0], [3e4, 3e4, -3e4]]),), {"axis": 1}),
                           ((np.array([[np.inf, 1.0], [-np.inf, -np.inf], [np.nan, 0.0]]),), {"axis": -1}),
                           ((np.ones((2, 0)),), {"axis": 1}),                                   # empty: -inf
                       ))


def _norm_vjp(g, out, x, axis=None, keepdims=False):
    # g x / ||x||. At ||x|| = 0 norm is not differentiable: the subgradient 0 is used, as torch, which
    # writes it g * (x / ||x||).masked_fill_(||x|| == 0, 0). The same formula here keeps torch's second
    # order there too: NaN (0 times the 0/0 of x / ||x|| when it is differentiated), which is honest,
    # as the Hessian of ||x|| grows like 1/||x|| near 0 and has no value at 0
    norm_kept = _keep(out, x, axis)
    zero = raw(norm_kept) == 0
    if not zero.any():
        return _expand(g, x, axis) * (x / norm_kept)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _expand(g, x, axis) * where(zero, 0.0, x / norm_kept)


def _norm_forward(x, axis=None, keepdims=False):
    x = np.asarray(x)
    if x.dtype == np.float32:
        # squares in float64, as torch accumulates float32: the norm of 1e-30 (or of 1e30) is a float32,
        # its square is not (it came out as 0, with a zero gradient where torch's is 1)
        return _norm_forward(x.astype(np.float64), axis, keepdims).astype(np.float32)
    return np.sqrt(np.sum(x * x, axis=_numpy_axis(x, axis), keepdims=keepdims))


norm = _reduction("norm", _norm_forward,
                  _norm_vjp,
                  lambda x, axis=None, keepdims=False: torch.linalg.vector_norm(x, 2, dim=_torch_dims(x, axis),
                                                                                keepdim=keepdims),
                  FINITE, smooth=False,
                  kink_rule="gradient 0 at the zero vector, as torch (second order there: NaN, as torch)",
                  mp=lambda values: mpmath.sqrt(mpmath.fsum(v * v for v in values)),
                  examples=(
                      *_ZERO_D,
                      ((np.zeros((2, 3)),), {"axis": 1}),                       # the zero vector: torch's NaN second order
                      ((np.array([[0.0, 0.0], [3.0, -4.0]]),), {"axis": -1, "keepdims": True}),
                  ))
