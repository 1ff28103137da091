"""Input generators implementing the `gen` protocol of scratch_grad.ops.sampling.

RandomGen draws from a NumPy Generator: fast and reproducible by seed, used by the CLI
(`scratch-grad parity`, `mutate`). The hypothesis-backed generator with the same protocol (it
shrinks) is `scratch_grad.testing.strategies.HypothesisGen`.

Three modes beyond the protocol's basics, shared by both generators:
- layouts: `array` sometimes returns a non-contiguous view (transposed, strided, reversed) with
  the requested shape and values, so ops and the engine see the strides NumPy users pass;
- kinks (`kinks=True`, used for ops with smooth=False): a random subset of entries is snapped to
  the domain's avoided points and to a coarse grid, so inputs sit exactly at kinks and contain
  ties (max, maximum, ...). There finite differences are meaningless and the check is that
  scratch_grad picks the same subgradient as torch.
- edges (`edges=True`, a quarter of every op's samples: `sample_modes`): where real autograd bugs
  live. Arrays take the values of `edge_points` (zeros, the domain's closed bounds and the values
  just inside its bounds, kinks, the infinities and NaN the domain declares, large and tiny
  magnitudes) in one of the EDGE_FAMILIES; shapes are 0-d or (where the sampler allows size 0)
  empty; 0-d inputs get axis 0 or -1; axes are negative; permutations are not their own inverse.
  Everything drawn stays inside the op's declared domain: an edge sample is one a correct engine
  passes.
"""
import functools
import math
from typing import Protocol, Sequence

import numpy as np

from ..ops.registry import REAL
from ..ops.sampling import with_negative_axes

MARGIN = 0.1          # distance kept from kinks and poles (finite differences straddle them otherwise)
SPREAD = 2.0          # values of unbounded domains are drawn from [-SPREAD, SPREAD]
TIE_GRID = (-1.0, -0.5, 0.0, 0.5, 1.0)
LAYOUTS = ("contiguous", "transposed", "strided", "reversed")
EDGE_ODDS = 4         # one sample in EDGE_ODDS is an edge sample
KINK_ODDS = 3         # one sample in KINK_ODDS of a non-smooth op sits exactly at kinks and ties
# how the entries of an edge array are made (simplest first: hypothesis shrinks towards it):
#   points     some entries are finite edge points, the others ordinary values
#   ties       every entry is one of two finite values (exact ties, across inputs too: edge points repeat)
#   ulp        every entry is v or one of its neighbours in the dtype (equal up to rounding)
#   constant   every entry is the same edge point, maybe infinite or NaN (the zero vector, a row of -inf)
#   nonfinite  some entries are the domain's infinities or NaN, the others ordinary values
# Infinities and NaN are kept to the last two: one of them in an input makes finite differences of
# the whole sample uninformative, so the finite families are checked three ways
EDGE_FAMILIES = ("points", "ties", "ulp", "constant", "nonfinite")


def sample_modes(spec, k):
    """The generator modes of the k-th sample of `spec` in the CLI's loops (parity, mutate):
    a third of a non-smooth op's samples exactly at kinks, a quarter of every op's samples at edges."""
    return {"kinks": not spec.smooth and k % KINK_ODDS == KINK_ODDS - 1,
            "edges": k % EDGE_ODDS == EDGE_ODDS - 1}


def _interval(domain):
    low = max(domain.low, -SPREAD) if domain.low > -math.inf else -SPREAD
    high = min(domain.high, SPREAD) if domain.high < math.inf else SPREAD
    if domain.low > -math.inf and domain.high == math.inf:
        high = domain.low + 2 * SPREAD   # e.g. log: (0, 4]
    # stay a margin inside open bounds: near log's 0 the derivative explodes
    return low + (MARGIN if domain.low > -math.inf else 0), high - (MARGIN if domain.high < math.inf else 0)


def push_away(values, domain):
    """Move values that fall within MARGIN of an avoided point to MARGIN beyond it."""
    for point in domain.avoid:
        near = np.abs(values - point) < MARGIN
        values = np.where(near, point + np.where(values >= point, MARGIN, -MARGIN) * 1.5, values)
    return values


def kink_points(domain):
    """Values an input of a non-smooth op is snapped to in kink mode: the domain's avoided points
    (kinks) and a coarse grid (ties), restricted to the sampled interval."""
    low, high = _interval(domain)
    points = sorted(set(domain.avoid) | set(TIE_GRID))
    return [p for p in points if low <= p <= high]


def in_domain(value, domain):
    """Whether an input may take this value: inside the open interval or on a closed bound, not on a
    pole, infinite only where declared, NaN only where declared."""
    if math.isnan(value):
        return domain.nan
    if math.isinf(value):
        return value in domain.infinities
    if value in domain.poles:
        return False
    return domain.low < value < domain.high or value in domain.closed


def _exact(value, dtype):
    return float(np.asarray(value, dtype=dtype))


def _neighbours(value, dtype):
    """value and its two neighbours in dtype (for values equal up to rounding)."""
    v = np.asarray(value, dtype=dtype)
    return [float(v), float(np.nextafter(v, np.asarray(np.inf, dtype))),
            float(np.nextafter(v, np.asarray(-np.inf, dtype)))]


@functools.lru_cache(maxsize=None)
def edge_points(domain, dtype):
    """The special values of an input, simplest first, each exactly representable in dtype and in
    the domain: exact zeros (both signs) and ones, kinks (avoided points that are not poles), the
    closed bounds and the values just inside each finite bound (the nearest float, and 2^-10 in),
    values beside each pole, large magnitudes (domain.large and a non-power-of-ten below it), tiny
    ones (the smallest normal and its square root), then the declared infinities and NaN."""
    finfo = np.finfo(dtype)
    tiny = (float(finfo.tiny), math.sqrt(float(finfo.tiny)))
    candidates = [0.0, -0.0, 1.0, -1.0]
    candidates += [p for p in domain.avoid if p not in domain.poles]
    for bound, inward in ((domain.low, 1.0), (domain.high, -1.0)):
        if math.isfinite(bound):
            candidates += [bound, float(np.nextafter(np.asarray(bound, dtype), np.asarray(inward * np.inf, dtype))),
                           bound + inward * 2.0 ** -10]
    for pole in domain.poles:
        candidates += [pole + t * sign for t in tiny for sign in (1.0, -1.0)]
    candidates += [domain.large, -domain.large, domain.large / 3.7, -domain.large / 3.7]
    candidates += [t * sign for t in tiny for sign in (1.0, -1.0)]
    candidates += list(domain.infinities) + ([math.nan] if domain.nan else [])
    points = []
    for value in candidates:
        value = _exact(value, dtype)
        if in_domain(value, domain) and not any(_same_float(value, p) for p in points):
            points.append(value)
    return tuple(points)


def _same_float(a, b):
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))


def with_layout(values, layout):
    """The same values and shape, stored with another layout (a view of a bigger/permuted array)."""
    if layout == "transposed" and values.ndim >= 2:
        return np.ascontiguousarray(values.T).T
    if layout == "strided" and values.ndim >= 1:
        spaced = np.zeros((values.shape[0] * 2,) + values.shape[1:], dtype=values.dtype)
        spaced[::2] = values
        return spaced[::2]
    if layout == "reversed" and values.ndim >= 1:
        return np.ascontiguousarray(values[::-1])[::-1]
    return values


def _involution(permutation):
    return all(permutation[permutation[i]] == i for i in range(len(permutation)))


def non_involution(permutation):
    """`permutation` itself when it is not its own inverse, else the first rotation of it that is
    not, or the cycle (1 2 ... n-1 0) (n >= 3): the inverse of a transpose then differs from the
    transpose, so a VJP that applies the permutation instead of its inverse shows."""
    n = len(permutation)
    if n < 3 or not _involution(permutation):
        return list(permutation)
    for shift in range(1, n):
        rotated = [permutation[(i + shift) % n] for i in range(n)]
        if not _involution(rotated):
            return rotated
    return [(i + 1) % n for i in range(n)]


class Gen(Protocol):
    """What an op's sampler (OpSpec.sample) may ask of its generator: the one protocol of RandomGen (a
    NumPy Generator: fast, by seed), HypothesisGen (testing/strategies.py: hypothesis draws, so failures
    shrink) and graphs._WiringGen (a random graph's wiring: existing values where they fit). A sampler
    written against it runs under all three; tests/test_generators.py holds them to it."""
    dtype: np.dtype
    kinks: bool          # snap values onto the domain's kinks and ties
    edges: bool          # an edge sample: zeros, bounds, inf/NaN, ulp neighbours, 0-d and empty shapes

    def plain(self) -> "Gen": ...                                   # no kinks, edges or layouts (cotangents)
    def edge_mode(self, on: bool = True) -> "Gen": ...
    def integer(self, lo: int, hi: int) -> int: ...                 # lo..hi inclusive
    def real(self, lo: float, hi: float) -> float: ...
    def choice(self, options: Sequence) -> object: ...
    def boolean(self) -> bool: ...
    def shape(self, min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side=None) -> tuple: ...
    def broadcastable_shapes(self, n: int, min_dims: int = 0, max_dims: int = 3, min_side: int = 1) -> tuple: ...
    def permutation(self, n: int) -> list: ...
    def axis(self, ndim: int): ...                                  # None, an int or a tuple, negatives too
    def array(self, shape, domain=REAL) -> np.ndarray: ...
    def scalar(self, domain=REAL): ...                              # a Python int or float
    def integers(self, shape, lo: int, hi: int) -> np.ndarray: ...  # lo..hi-1
    def mask(self, shape) -> np.ndarray: ...


class RandomGen:
    """The gen protocol on a NumPy Generator: fast, reproducible by seed, no shrinking."""

    def __init__(self, seed=0, dtype=np.float64, max_side=4, kinks=False, layouts=True, edges=False):
        self.rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        self.max_side = max_side
        self.kinks = kinks
        self.layouts = layouts
        self.edges = edges

    def _sibling(self, **changes):
        other = RandomGen.__new__(RandomGen)
        other.__dict__.update(self.__dict__)
        other.__dict__.update(changes)
        return other

    def plain(self):
        """The same stream without kink snapping, edges or layouts (for cotangents: a zero cotangent
        entry would hide the gradient it weighs)."""
        return self._sibling(kinks=False, layouts=False, edges=False)

    def edge_mode(self, on=True):
        """The same stream with edge mode on (or off)."""
        return self._sibling(edges=on)

    def integer(self, lo, hi):
        return int(self.rng.integers(lo, hi + 1))

    def real(self, lo, hi):
        if self.edges and self.integer(0, 2) == 0:
            return float(self.choice([lo, hi]))
        return float(self.rng.uniform(lo, hi))

    def choice(self, options):
        return options[self.integer(0, len(options) - 1)]

    def boolean(self):
        return bool(self.rng.integers(0, 2))

    def shape(self, min_dims=0, max_dims=3, min_side=1, max_side=None):
        max_side = self.max_side if max_side is None else max_side
        low = max(min_side, 1)
        if self.edges and min_dims == 0 and self.integer(0, 3) == 0:
            return ()
        sides = [self.integer(low, max(low, max_side)) for _ in range(self.integer(min_dims, max(min_dims, max_dims)))]
        if self.edges and min_side == 0 and sides and self.integer(0, 2) == 0:
            sides[self.integer(0, len(sides) - 1)] = 0
        return tuple(sides)

    def broadcastable_shapes(self, n, min_dims=0, max_dims=3, min_side=1):
        base = self.shape(min_dims=max_dims if min_dims > max_dims else min_dims, max_dims=max_dims, min_side=min_side)
        shapes = []
        for _ in range(n):
            dims = self.integer(min(min_dims, len(base)), len(base))
            tail = base[len(base) - dims:]
            shapes.append(tuple(1 if self.boolean() and self.boolean() else s for s in tail))
        return tuple(shapes)

    def permutation(self, n):
        permutation = [int(i) for i in self.rng.permutation(n)]
        return non_involution(permutation) if self.edges else permutation

    def axis(self, ndim):
        if ndim == 0:
            return self.choice([None, 0, -1]) if self.edges else None
        form = self.choice(["none", "int", "tuple"]) if not self.edges else self.choice(["int", "tuple"])
        if form == "none":
            return None
        if form == "int":
            return self.integer(-ndim, -1) if self.edges else self.integer(-ndim, ndim - 1)
        count = self.integer(1, ndim)
        axes = [int(a) for a in self.rng.choice(ndim, size=count, replace=False)]
        flags = [self.boolean() for _ in axes]
        if self.edges:
            flags[0] = True     # unsorted, with a negative axis
        else:
            axes.sort()
        return tuple(with_negative_axes(axes, ndim, flags))

    def _plain_values(self, shape, domain):
        low, high = _interval(domain)
        return push_away(self.rng.uniform(low, high, size=shape), domain)

    def _edge_values(self, shape, domain):
        points = edge_points(domain, self.dtype)
        finite = [p for p in points if math.isfinite(p)]
        family = self.choice(EDGE_FAMILIES)
        if family == "constant":
            return np.full(shape, self.choice(points))
        if family in ("points", "nonfinite"):
            pool = [p for p in points if not math.isfinite(p)] if family == "nonfinite" else finite
            chosen = self.rng.integers(0, 4 if family == "nonfinite" else 2, size=shape) == 1
            return np.where(chosen, self.rng.choice(pool or finite, size=shape), self._plain_values(shape, domain))
        base = self.choice(finite) if self.boolean() else float(self._plain_values((), domain))
        if family == "ties":
            other = float(self._plain_values((), domain)) if self.boolean() else self.choice(finite)
            return self.rng.choice([base, other], size=shape)
        near = [v for v in _neighbours(base, self.dtype) if in_domain(v, domain)]
        return self.rng.choice(near, size=shape)

    def array(self, shape, domain=REAL):
        if self.edges and self.integer(0, 3) != 0:
            values = self._edge_values(shape, domain)
        else:
            values = self._plain_values(shape, domain)
            if self.kinks:
                points = kink_points(domain)
                if points:
                    if self.integer(0, 3) != 0:
                        # every entry on two points, one of them a kink when the domain names some:
                        # ties at a maximum, many entries exactly at a kink
                        kinks = [p for p in domain.avoid if p in points] or points
                        pair = [self.choice(kinks), self.choice(points)]
                        values = self.rng.choice(pair, size=shape)
                    else:
                        chosen = self.rng.integers(0, 2, size=shape) == 1
                        values = np.where(chosen, self.rng.choice(points, size=shape), values)
        values = np.asarray(values, dtype=self.dtype)
        if self.layouts and self.integer(0, 3) == 0:
            values = with_layout(values, self.choice(LAYOUTS[1:]))
        return values

    def scalar(self, domain=REAL):
        """A Python number inside the domain: an int when one fits (x ** 3), else a float; edge
        points in edge mode."""
        if self.edges and self.boolean():
            return self.choice(edge_points(domain, self.dtype))
        ints = [n for n in (2, 3, -1, 0, 1, -2) if domain.low < n < domain.high and n not in domain.avoid]
        if ints and self.boolean():
            return self.choice(ints)
        return float(np.asarray(self._plain_values((), domain), dtype=self.dtype))

    def integers(self, shape, lo, hi):
        return self.rng.integers(lo, hi, size=shape).astype(np.int64)

    def mask(self, shape):
        return self.rng.integers(0, 2, size=shape).astype(bool)
