"""Reductions over axis=None / int / tuple with keepdims. Each VJP expands g back to x's shape."""
import numpy as np
from .lazy_torch import mpmath, torch

from .elementwise import _raw, exp, sqrt, where
from .registry import FINITE, LOGITS, REAL, OpSpec, register
from .sampling import reduction_inputs
from .shape import _broadcast_forward, broadcast_to, reshape


def _axes(ndim, axis):
    """axis as a tuple of non-negative ints (all axes for None)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(a % ndim if ndim else a for a in axes)


def _kept_shape(shape, axis):
    """The shape the reduction has with keepdims=True."""
    axes = _axes(len(shape), axis)
    return tuple(1 if k in axes else s for k, s in enumerate(shape))


def _count(shape, axis):
    axes = _axes(len(shape), axis)
    return int(np.prod([shape[a] for a in axes])) if axes else 1


def _expand(g, x, axis):
    """Broadcast a reduction's gradient (kept dims or not) back to the shape of x."""
    if type(g) is np.ndarray:                     # a plain backward (x is raw too): skip the ops' dispatch
        shape = x.shape
        return _broadcast_forward(g if axis is None else g.reshape(_kept_shape(shape, axis)), shape)
    shape = _raw(x).shape
    return broadcast_to(reshape(g, _kept_shape(shape, axis)), shape)


def _keep(value, x, axis):
    """A reduction's result with the reduced axes kept as size 1, ready to broadcast against x."""
    return reshape(value, _kept_shape(_raw(x).shape, axis))


def _torch_dims(x, axis):
    return tuple(range(x.dim())) if axis is None else axis


def _reduction(name, forward, vjp, reference, domain=REAL, **flags):
    return register(OpSpec(name, forward, (vjp,), reference, (domain,), "reduction", **flags))


sum = _reduction("sum", lambda x, axis=None, keepdims=False: np.add.reduce(np.asarray(x), axis=axis, keepdims=keepdims),
                 lambda g, out, x, axis=None, keepdims=False: _expand(g, x, axis),
                 lambda x, axis=None, keepdims=False: torch.sum(x, dim=_torch_dims(x, axis), keepdim=keepdims),
                 mp=lambda values: mpmath.fsum(values))

mean = _reduction("mean", lambda x, axis=None, keepdims=False: np.mean(x, axis=axis, keepdims=keepdims),
                  lambda g, out, x, axis=None, keepdims=False: _expand(g, x, axis) * (1.0 / _count(_raw(x).shape, axis)),
                  lambda x, axis=None, keepdims=False: torch.mean(x, dim=_torch_dims(x, axis), keepdim=keepdims),
                  mp=lambda values: mpmath.fsum(values) / len(values))


def _mp_var(values, ddof):
    mean = mpmath.fsum(values) / len(values)
    return mpmath.fsum((v - mean) ** 2 for v in values) / (len(values) - ddof)


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
    centered = x - mean(x, axis=axis, keepdims=True)
    return _expand(g, x, axis) * centered * (2.0 / (_count(_raw(x).shape, axis) - ddof))


var = _reduction("var", lambda x, axis=None, keepdims=False, ddof=0: np.var(x, axis=axis, keepdims=keepdims, ddof=ddof),
                 _var_vjp,
                 lambda x, axis=None, keepdims=False, ddof=0: torch.var(x, dim=_torch_dims(x, axis), keepdim=keepdims,
                                                                       correction=ddof),
                 mp=lambda values, ddof=0: _mp_var(values, ddof), sample=_ddof_sample)


def _std_vjp(g, out, x, axis=None, keepdims=False, ddof=0):
    # d std = d var / (2 std). Where std == 0 (all values equal) std is not differentiable; torch
    # uses the subgradient 0 there, for the gradient and for its derivative, and so do we: the
    # `where` picks a constant 0 that does not depend on x
    centered = x - mean(x, axis=axis, keepdims=True)
    std_kept = _keep(out, x, axis)
    flat = _raw(std_kept) == 0
    safe = where(flat, 1.0, std_kept)
    return where(flat, 0.0, _expand(g, x, axis) * centered / (safe * (_count(_raw(x).shape, axis) - ddof)))


std = _reduction("std", lambda x, axis=None, keepdims=False, ddof=0: np.std(x, axis=axis, keepdims=keepdims, ddof=ddof),
                 _std_vjp,
                 lambda x, axis=None, keepdims=False, ddof=0: torch.std(x, dim=_torch_dims(x, axis), keepdim=keepdims,
                                                                       correction=ddof),
                 mp=lambda values, ddof=0: mpmath.sqrt(_mp_var(values, ddof)),
                 smooth=False, kink_rule="gradient 0 where all reduced values are equal (std == 0), as torch",
                 sample=_ddof_sample)


def _extremum_vjp(g, out, x, axis=None, keepdims=False):
    # ties share the gradient evenly among the maximal entries, as torch.amax/amin
    hits = (_raw(x) == _raw(_keep(out, x, axis))).astype(_raw(x).dtype)
    return _expand(g, x, axis) * (hits / hits.sum(axis=_axes(hits.ndim, axis), keepdims=True))


max = _reduction("max", lambda x, axis=None, keepdims=False: np.max(x, axis=axis, keepdims=keepdims), _extremum_vjp,
                 lambda x, axis=None, keepdims=False: torch.amax(x, dim=_torch_dims(x, axis), keepdim=keepdims),
                 smooth=False, kink_rule="ties split the gradient evenly, as torch.amax", mp=lambda values: max(values),
                 reduces_empty=False)
min = _reduction("min", lambda x, axis=None, keepdims=False: np.min(x, axis=axis, keepdims=keepdims), _extremum_vjp,
                 lambda x, axis=None, keepdims=False: torch.amin(x, dim=_torch_dims(x, axis), keepdim=keepdims),
                 smooth=False, kink_rule="ties split the gradient evenly, as torch.amin", mp=lambda values: min(values),
                 reduces_empty=False)


def _product_of_others(x, axis):
    """prod over axis of x with each element left out in turn, via exclusive prefix and suffix
    products: exact even where x has zeros (where out / x would divide 0 by 0)."""
    axes = _axes(x.ndim, axis)
    rest = tuple(a for a in range(x.ndim) if a not in axes)
    moved = np.transpose(x, rest + axes)
    flat = moved.reshape(moved.shape[:len(rest)] + (-1,))
    ones = np.ones(flat.shape[:-1] + (1,), dtype=x.dtype)
    prefix = np.cumprod(np.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    suffix = np.cumprod(np.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    others = (prefix * suffix).reshape(moved.shape)
    return np.transpose(others, np.argsort(rest + axes))


def _prod_vjp(g, out, x, axis=None, keepdims=False):
    if np.all(_raw(x) != 0):
        return _expand(g, x, axis) * _keep(out, x, axis) / x
    # zeros: a constant array, so no second derivative flows through here (the sampler avoids 0)
    return _expand(g, x, axis) * _product_of_others(_raw(x), axis)


def _torch_prod(x, axis=None, keepdims=False):
    dims = sorted(_axes(x.dim(), axis), reverse=True)
    for d in dims:
        x = torch.prod(x, dim=d, keepdim=True)
    return x if keepdims else x.reshape([s for k, s in enumerate(x.shape) if k not in dims])


prod = _reduction("prod", lambda x, axis=None, keepdims=False: np.prod(x, axis=axis, keepdims=keepdims), _prod_vjp,
                  _torch_prod, mp=lambda values: mpmath.fprod(values))


def _logsumexp_forward(x, axis=None, keepdims=False):
    # m + log(sum(exp(x - m))) with m the max: exp never overflows; m is 0 where it is +-inf
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=_axes(x.ndim, axis))


logsumexp = _reduction("logsumexp", _logsumexp_forward,
                       lambda g, out, x, axis=None, keepdims=False: _expand(g, x, axis) * exp(x - _keep(out, x, axis)),
                       lambda x, axis=None, keepdims=False: torch.logsumexp(x, dim=_torch_dims(x, axis), keepdim=keepdims),
                       LOGITS, mp=lambda values: mpmath.log(mpmath.fsum(mpmath.exp(v) for v in values)))


def _norm_vjp(g, out, x, axis=None, keepdims=False):
    # x / ||x||; at ||x|| = 0 (not differentiable) the subgradient 0 is used, as torch, with a
    # constant 0 so that its derivative is 0 too
    norm_kept = _keep(out, x, axis)
    zero = _raw(norm_kept) == 0
    safe = where(zero, 1.0, norm_kept)
    return where(zero, 0.0, _expand(g, x, axis) * x / safe)


norm = _reduction("norm", lambda x, axis=None, keepdims=False: np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims)),
                  _norm_vjp,
                  lambda x, axis=None, keepdims=False: torch.linalg.vector_norm(x, 2, dim=_torch_dims(x, axis),
                                                                                keepdim=keepdims),
                  FINITE, smooth=False, kink_rule="gradient 0 at the zero vector, as torch",
                  mp=lambda values: mpmath.sqrt(mpmath.fsum(v * v for v in values)))
