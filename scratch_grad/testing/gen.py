"""Input generators implementing the `gen` protocol of scratch_grad.ops.sampling.

RandomGen draws from a NumPy Generator: fast and reproducible by seed, used by the CLI
(`scratch-grad parity`, `mutate`). The hypothesis-backed generator with the same protocol (it
shrinks) is `scratch_grad.testing.strategies.HypothesisGen`.

Two modes beyond the protocol's basics, shared by both generators:
- layouts: `array` sometimes returns a non-contiguous view (transposed, strided, reversed) with
  the requested shape and values, so ops and the engine see the strides NumPy users pass;
- kinks (`kinks=True`, used for ops with smooth=False): a random subset of entries is snapped to
  the domain's avoided points and to a coarse grid, so inputs sit exactly at kinks and contain
  ties (max, maximum, ...). There finite differences are meaningless and the check is that
  scratch_grad picks the same subgradient as torch.
"""
import math

import numpy as np

from ..ops.registry import REAL

MARGIN = 0.1          # distance kept from kinks and poles (finite differences straddle them otherwise)
SPREAD = 2.0          # values of unbounded domains are drawn from [-SPREAD, SPREAD]
TIE_GRID = (-1.0, -0.5, 0.0, 0.5, 1.0)
LAYOUTS = ("contiguous", "transposed", "strided", "reversed")


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


class RandomGen:
    """The gen protocol on a NumPy Generator: fast, reproducible by seed, no shrinking."""

    def __init__(self, seed=0, dtype=np.float64, max_side=4, kinks=False, layouts=True):
        self.rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        self.max_side = max_side
        self.kinks = kinks
        self.layouts = layouts

    def plain(self):
        """The same stream without kink snapping or layouts (for cotangents: a zero cotangent
        entry would hide the gradient it weighs)."""
        other = RandomGen.__new__(RandomGen)
        other.rng, other.dtype, other.max_side, other.kinks, other.layouts = \
            self.rng, self.dtype, self.max_side, False, False
        return other

    def integer(self, lo, hi):
        return int(self.rng.integers(lo, hi + 1))

    def choice(self, options):
        return options[self.integer(0, len(options) - 1)]

    def boolean(self):
        return bool(self.rng.integers(0, 2))

    def shape(self, min_dims=0, max_dims=3, min_side=1, max_side=None):
        max_side = self.max_side if max_side is None else max_side
        return tuple(self.integer(min_side, max_side) for _ in range(self.integer(min_dims, max_dims)))

    def broadcastable_shapes(self, n, min_dims=0, max_dims=3):
        base = self.shape(min_dims=max_dims if min_dims > max_dims else min_dims, max_dims=max_dims)
        shapes = []
        for _ in range(n):
            dims = self.integer(min(min_dims, len(base)), len(base))
            tail = base[len(base) - dims:]
            shapes.append(tuple(1 if self.boolean() and self.boolean() else s for s in tail))
        return tuple(shapes)

    def permutation(self, n):
        return [int(i) for i in self.rng.permutation(n)]

    def axis(self, ndim):
        if ndim == 0:
            return None
        form = self.choice(["none", "int", "tuple"])
        if form == "none":
            return None
        if form == "int":
            return self.integer(-ndim, ndim - 1)
        count = self.integer(1, ndim)
        return tuple(sorted(int(a) for a in self.rng.choice(ndim, size=count, replace=False)))

    def array(self, shape, domain=REAL):
        low, high = _interval(domain)
        values = push_away(self.rng.uniform(low, high, size=shape), domain)
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

    def integers(self, shape, lo, hi):
        return self.rng.integers(lo, hi, size=shape).astype(np.int64)

    def mask(self, shape):
        return self.rng.integers(0, 2, size=shape).astype(bool)
