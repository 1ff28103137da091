"""How test inputs for an op are drawn: the `gen` protocol, keyword ranges and the default sampler of each kind.

A registry entry's `sample(gen)` returns `(inputs, params)`. `gen` is any object with the methods
below; `scratch_grad.testing` provides one backed by hypothesis (shrinkable) and one backed by a
NumPy Generator (fast, for the CLI). Arrays come in `gen.dtype`, with values inside the domain
and a margin away from its `avoid` points (kinks and poles, where finite differences are wrong).

    gen.dtype                                      float32 or float64
    gen.edges                                      True in edge mode (see below)
    gen.integer(lo, hi) -> int                     lo <= n <= hi
    gen.real(lo, hi) -> float                      lo <= v <= hi (a Python float: a keyword's value)
    gen.choice(options) -> one of options          (shrinks towards the first)
    gen.boolean() -> bool
    gen.shape(min_dims=0, max_dims=3, min_side=1, max_side=4) -> tuple
    gen.broadcastable_shapes(n, min_dims=0, max_dims=3, min_side=1) -> n mutually broadcastable shapes
    gen.permutation(n) -> list, a permutation of range(n)
    gen.axis(ndim) -> None, an int (maybe negative) or a tuple of distinct axes (maybe negative, unsorted)
    gen.array(shape, domain=REAL) -> ndarray of gen.dtype
    gen.scalar(domain=REAL) -> a Python float or int inside the domain (the `2.0 - x`, `x ** 3` call forms)
    gen.integers(shape, lo, hi) -> int64 ndarray with lo <= v < hi
    gen.mask(shape) -> bool ndarray
    gen.edge_mode(on=True) -> the same stream with edge mode on (or off)

`min_side=0` declares that the op accepts size-0 dimensions: shapes then have them in edge mode only.

Modes of the testing generators that samplers need not know about (scratch_grad/testing/gen.py):
- layouts: `gen.array` may return a non-contiguous view (transposed, strided, reversed);
- kinks (ops with smooth=False, a third of their samples): values sit exactly on the domain's
  `avoid` points and on a coarse grid (ties): finite differences are meaningless there and
  scratch_grad must pick torch's subgradient;
- edges (a quarter of every op's samples): `gen.array` returns the domain's edges (exact zeros and
  ties, the closed bounds and values just inside the bounds, the declared infinities and NaN,
  large and tiny magnitudes, values equal up to an ulp, whole arrays of one value), `gen.shape`
  0-d shapes and (with min_side=0) size-0 dimensions, `gen.axis` 0 and -1 on 0-d inputs and
  negative axes, `gen.permutation` permutations that are not their own inverse, `gen.real` and
  `gen.scalar` the edges of their range. A sampler may read `gen.edges` to add call forms that
  only edge samples should try (an empty index, a contraction over a size-0 axis).
Samplers must therefore not assume contiguous arrays, values away from `avoid` for non-smooth
ops, nor finite values where the domain declares infinities or NaN.
"""
from dataclasses import dataclass

from .registry import REAL


# ---- keyword ranges: OpSpec.params ----------------------------------------------------------------------
@dataclass(frozen=True)
class Real:
    """A float keyword in [low, high]; `edges` are its special values (0, 1, a threshold), drawn
    often, and first (hypothesis shrinks towards edges[0])."""
    low: float
    high: float
    edges: tuple = ()

    def draw(self, gen):
        if self.edges and gen.integer(0, 2) == 0:
            return gen.choice(self.edges)
        return gen.real(self.low, self.high)


@dataclass(frozen=True)
class Integer:
    low: int
    high: int

    def draw(self, gen):
        return gen.integer(self.low, self.high)


@dataclass(frozen=True)
class Choice:
    """One of `options`; an option that is itself a Param is drawn in turn (Choice(None, Real(0, 1)))."""
    options: tuple

    def __init__(self, *options):
        object.__setattr__(self, "options", tuple(options))

    def draw(self, gen):
        option = gen.choice(self.options)
        return option.draw(gen) if hasattr(option, "draw") else option


def draw_params(spec, gen, **fixed):
    """Every keyword of `spec.params` drawn from its range (`fixed` ones as given)."""
    params = {name: param.draw(gen) for name, param in spec.params.items() if name not in fixed}
    params.update(fixed)
    return params


def with_negative_axes(axes, ndim, flags):
    """Axes (non-negative) with those flagged written as negative (a - ndim): the same axes."""
    return [a - ndim if flag else a for a, flag in zip(axes, flags)]


# ---- the default samplers of the kinds ----------------------------------------------------------------
SCALAR_ODDS = 3     # the default binary sampler makes one input a Python number in about 1 draw of 3


def _elementwise(spec, gen):
    return (gen.array(gen.shape(min_side=0), spec.domain[0]),), draw_params(spec, gen)


def _binary(spec, gen):
    """Broadcasting arrays, or one of them a Python number (`x ** 3`, `2.0 - x`): NumPy and torch treat
    a Python number as a weakly typed 0-d operand, so the result keeps the array's dtype."""
    shapes = gen.broadcastable_shapes(spec.arity, min_side=0)
    scalar_at = gen.integer(0, SCALAR_ODDS * spec.arity - 1)
    inputs = tuple(gen.scalar(d) if k == scalar_at else gen.array(s, d)
                   for k, (s, d) in enumerate(zip(shapes, spec.domain)))
    return inputs, draw_params(spec, gen)


def reduction_inputs(gen, domain=REAL, reduces_empty=True):
    """An array and the axis/keepdims of a reduction over it. 0-d inputs get axis 0 or -1 in edge
    mode (torch accepts them); size-0 dimensions are reduced over only where `reduces_empty`."""
    shape = gen.shape(min_side=0)
    axis = gen.axis(len(shape))
    if not reduces_empty and 0 in shape:
        axes = range(len(shape)) if axis is None else (axis,) if isinstance(axis, int) else axis
        if any(shape[a] == 0 for a in axes):
            shape = tuple(s if s else 1 for s in shape)
    return gen.array(shape, domain), {"axis": axis, "keepdims": gen.boolean()}


def _reduction(spec, gen):
    x, params = reduction_inputs(gen, spec.domain[0], spec.reduces_empty)
    return (x,), {**params, **draw_params(spec, gen)}


DEFAULT_SAMPLERS = {"elementwise": _elementwise, "binary": _binary, "reduction": _reduction}


def sample_inputs(spec, gen):
    """Inputs and params for one check of `spec`: its own sampler, or its kind's default."""
    if spec.sample is not None:
        return spec.sample(gen)
    try:
        return DEFAULT_SAMPLERS[spec.kind](spec, gen)
    except KeyError:
        raise ValueError(f"op '{spec.name}' of kind '{spec.kind}' needs a sample function in its entry") from None


__all__ = ["sample_inputs", "draw_params", "reduction_inputs", "with_negative_axes", "Real", "Integer", "Choice", "DEFAULT_SAMPLERS",
           "REAL"]
