"""How test inputs for an op are drawn: the `gen` protocol and the default sampler of each kind.

A registry entry's `sample(gen)` returns `(inputs, params)`. `gen` is any object with the methods
below; `scratch_grad.testing` provides one backed by hypothesis (shrinkable) and one backed by a
NumPy Generator (fast, for the CLI). Arrays come in `gen.dtype`, with values inside the domain
and a margin away from its `avoid` points (kinks and poles, where finite differences are wrong).

    gen.dtype                                      float32 or float64
    gen.integer(lo, hi) -> int                     lo <= n <= hi
    gen.choice(options) -> one of options
    gen.boolean() -> bool
    gen.shape(min_dims=0, max_dims=3, min_side=1, max_side=4) -> tuple
    gen.broadcastable_shapes(n, min_dims=0, max_dims=3) -> n mutually broadcastable shapes
    gen.permutation(n) -> list, a permutation of range(n)
    gen.axis(ndim) -> None, an int (maybe negative) or a tuple of distinct axes
    gen.array(shape, domain=REAL) -> ndarray of gen.dtype
    gen.integers(shape, lo, hi) -> int64 ndarray with lo <= v < hi
    gen.mask(shape) -> bool ndarray

Modes of the testing generators that samplers need not know about (scratch_grad/testing/gen.py):
`gen.array` may return a non-contiguous view (transposed, strided, reversed) with the requested
shape, and for ops with smooth=False the checker sometimes sets kink mode, in which values sit
exactly on the domain's `avoid` points and on a coarse grid (ties): there finite differences are
meaningless and scratch_grad must pick torch's subgradient. Samplers must therefore not assume
contiguous arrays nor values away from `avoid` for non-smooth ops.
"""
from .registry import REAL


def _elementwise(spec, gen):
    return (gen.array(gen.shape(), spec.domain[0]),), {}


def _binary(spec, gen):
    shapes = gen.broadcastable_shapes(spec.arity)
    return tuple(gen.array(s, d) for s, d in zip(shapes, spec.domain)), {}


def _reduction(spec, gen):
    shape = gen.shape()
    return (gen.array(shape, spec.domain[0]),), {"axis": gen.axis(len(shape)), "keepdims": gen.boolean()}


DEFAULT_SAMPLERS = {"elementwise": _elementwise, "binary": _binary, "reduction": _reduction}


def sample_inputs(spec, gen):
    """Inputs and params for one check of `spec`: its own sampler, or its kind's default."""
    if spec.sample is not None:
        return spec.sample(gen)
    try:
        return DEFAULT_SAMPLERS[spec.kind](spec, gen)
    except KeyError:
        raise ValueError(f"op '{spec.name}' of kind '{spec.kind}' needs a sample function in its entry") from None


__all__ = ["sample_inputs", "DEFAULT_SAMPLERS", "REAL"]
