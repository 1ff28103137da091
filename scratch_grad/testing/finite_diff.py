"""Finite differences done properly: float64 central differences with Richardson extrapolation,
an error estimate for free, and a kink detector from the same evaluations.

For a scalar function phi(t) = L(x + t*e) (e a coordinate or a random direction), with step h:

    D(h)   = (phi(h) - phi(-h)) / 2h                  error ~ h^2 phi'''/6
    R      = D(h/2) + (D(h/2) - D(h)) / 3             Richardson: error ~ h^4
    |D(h) - D(h/2)|                                   bounds R's error (it is ~3/4 of D(h)'s)

Step: h = STEP * max(|x_k|, 1) per coordinate (relative to the input's scale), STEP = 2^-10,
close to u64^(1/5), the step that balances the h^4 truncation against the u64/h cancellation.
The step is a power of two times the scale so x + h is computed with little rounding.

Kinks: J(h) = (phi(h) - 2 phi(0) + phi(-h)) / h is h*phi'' for a smooth phi but the jump of
the derivative for a kink at 0; so J(h/2) ~ J(h)/2 when smooth and J(h/2) ~ J(h) at a kink.
A coordinate whose J does not halve (and is larger than the noise) is reported as a kink, and
so is one where phi itself jumps (D(h/2) ~ 2 D(h), as for a discontinuous first gradient),
with its one-sided derivatives (phi(0) - phi(-h/2)) / (h/2) and (phi(h/2) - phi(0)) / (h/2);
there the derivative does not exist and only the convention (torch's) can be checked.

Domain edges: where a point at -h or +h cannot be evaluated (sqrt just above 0: L raises or is NaN there),
the step shrinks twice by 4; if that is not enough, one-sided differences are taken on the side that
can be evaluated (Richardson twice on the O(h) forward difference). Inputs that are not finite have no
finite difference (`unavailable`): torch and the high-precision reference decide there.

Full mode differentiates along every coordinate (4 evaluations each + 1); projection mode
(large inputs, like JAX's check_vjp and torch gradcheck's fast mode) along one random
direction v, giving the scalar u^T J v that is compared with <analytic gradient, v>.
"""
import math
from dataclasses import dataclass

import numpy as np

from .tolerance import finite_difference_tolerance

STEP = 2.0 ** -10
FULL_JACOBIAN_LIMIT = 48     # inputs with at most this many entries get the full (per-entry) check
KINK_RATIO = 0.75            # J(h/2) / J(h) above this: the derivative jumps (smooth: 0.5)
DISCONTINUITY_RATIO = 1.5    # D(h/2) / D(h) above this: phi itself jumps (smooth: 1)


@dataclass
class FiniteDifference:
    """The derivative of L along each coordinate (full) or along a direction (projection)."""
    value: np.ndarray          # Richardson-extrapolated derivative (input's shape, or () for projection)
    tolerance: np.ndarray      # its error bound (see tolerance.finite_difference_tolerance)
    kink: np.ndarray           # bool: the derivative jumps here; value is then meaningless
    left: np.ndarray           # one-sided derivative from below
    right: np.ndarray          # one-sided derivative from above
    direction: np.ndarray = None   # projection mode: the direction v (None in full mode)
    evaluations: int = 0
    one_sided: np.ndarray = None   # bool: a domain edge (or overflow) on one side: one-sided differences
    unavailable: np.ndarray = None  # bool: no finite difference exists here (non-finite input or L)

    def __post_init__(self):
        shape = np.shape(self.value)
        if self.one_sided is None:
            self.one_sided = np.zeros(shape, dtype=bool)
        if self.unavailable is None:
            self.unavailable = np.zeros(shape, dtype=bool)


class _Invalid(Exception):
    """L cannot be evaluated at a point (outside the domain, an overflow): try other steps."""


def _evaluator(scalar_fn, points, index, direction):
    def phi(t):
        moved = list(points)
        moved[index] = np.asarray(points[index] + t * direction)   # 0-d stays an array
        try:
            with np.errstate(all="ignore"):
                value, absolute = scalar_fn(moved)
        except Exception as exc:  # noqa: BLE001 - a forward that refuses a point: that point is outside
            if _from_checker(exc):
                raise
            raise _Invalid(exc) from None
        if not (np.isfinite(value) and np.isfinite(absolute)):
            raise _Invalid("non-finite")
        return value, absolute
    return phi


def _from_checker(exc):
    """An exception raised by the checker's own code is a checker bug, never an invalid point."""
    from .faults import raised_by_checker
    return raised_by_checker(exc)


def _central(phi, step, base_value, base_scale):
    """phi at -h, -h/2, +h/2, +h: Richardson-extrapolated central difference, its error bound, kink
    detection and the one-sided derivatives; raises _Invalid if a point cannot be evaluated."""
    values = {}
    scale = base_scale
    for multiple in (-1.0, -0.5, 0.5, 1.0):
        values[multiple], absolute = phi(multiple * step)
        scale = max(scale, absolute)
    coarse = (values[1.0] - values[-1.0]) / (2 * step)
    fine = (values[0.5] - values[-0.5]) / step
    extrapolated = fine + (fine - coarse) / 3
    tolerance = finite_difference_tolerance(coarse, fine, scale, step)
    with np.errstate(invalid="ignore", over="ignore"):
        jump_coarse = (values[1.0] - 2 * base_value + values[-1.0]) / step
        jump_fine = (values[0.5] - 2 * base_value + values[-0.5]) / (step / 2)
        left = (base_value - values[-0.5]) / (step / 2)
        right = (values[0.5] - base_value) / (step / 2)
    # rounding noise of a difference of phi values of size `scale`, divided by h/2
    rounding = 64 * np.finfo(np.float64).eps * scale / (step / 2)
    # a jump of the derivative smaller than the FD's own accuracy does not matter
    kink = bool(abs(jump_fine) > rounding + tolerance and abs(jump_fine) > KINK_RATIO * abs(jump_coarse))
    # phi itself jumps (a discontinuous gradient, in second order): D(h) ~ c/h, so D(h/2) ~ 2 D(h)
    if abs(fine - coarse) > rounding and abs(fine) > DISCONTINUITY_RATIO * abs(coarse):
        kink = True
    return extrapolated, tolerance, kink, left, right


def _one_sided(phi, step, side, base_value, base_scale):
    """Forward (side +1) or backward (side -1) differences at h, h/2, h/4, extrapolated twice
    (Richardson on the O(h) one-sided difference: error O(h^3)); its error bound is the change between
    the two extrapolations. Used where the other side leaves the domain (sqrt near 0)."""
    values = {}
    scale = base_scale
    for multiple in (0.25, 0.5, 1.0):
        values[multiple], absolute = phi(side * multiple * step)
        scale = max(scale, absolute)
    d = {m: (values[m] - base_value) / (side * m * step) for m in values}
    first = 2 * d[0.5] - d[1.0]
    second = 2 * d[0.25] - d[0.5]
    extrapolated = (4 * second - first) / 3
    tolerance = finite_difference_tolerance(first, second, scale, step / 4)
    return extrapolated, tolerance, False, d[0.25], d[0.25]


# central steps tried, largest first, before one-sided differences: next to a domain edge (sqrt at 2e-6)
# the step must shrink below the distance to it, or the difference averages over a singularity
SHRINK = tuple(0.25 ** k for k in range(11))


def _directional(scalar_fn, points, index, direction, step, base_value, base_scale, phi=None):
    """The FD quantities along `direction` on input `index`: central differences at the largest step
    whose points can all be evaluated, else one-sided on a side that can; (..., one_sided, available)."""
    phi = phi or _evaluator(scalar_fn, points, index, direction)
    for factor in SHRINK:
        try:
            return _central(phi, step * factor, base_value, base_scale) + (False, True)
        except _Invalid:
            continue
    for side in (1.0, -1.0):
        try:
            return _one_sided(phi, step, side, base_value, base_scale) + (True, True)
        except _Invalid:
            continue
    return math.nan, 0.0, False, math.nan, math.nan, False, False


def differentiate(scalar_fn, points, index, rng, mode="auto"):
    """Finite-difference derivative of scalar_fn(points) with respect to points[index].

    scalar_fn(list of float64 arrays) -> (L, |L|_abs) where |L|_abs bounds the magnitudes summed
    into L (for the cancellation error). mode: "full", "projection" or "auto" (full for inputs
    of at most FULL_JACOBIAN_LIMIT entries). Coordinates where no difference can be taken (a
    non-finite input, L not finite nearby on either side) are marked `unavailable`; where only one
    side can be evaluated, the difference is one-sided (`one_sided`).
    """
    points = [np.array(p, dtype=np.float64) if isinstance(p, np.ndarray) else p for p in points]
    x = points[index]
    if mode == "auto":
        mode = "full" if x.size <= FULL_JACOBIAN_LIMIT else "projection"
    if x.size == 0:
        empty = np.zeros(x.shape)
        return FiniteDifference(empty, empty, np.zeros(x.shape, dtype=bool), empty, empty, None, evaluations=0)
    base = _base(scalar_fn, points)
    if mode == "projection":
        direction = rng.standard_normal(x.shape)
        finite = np.isfinite(x)
        if base is None or not finite.all() or not all(np.all(np.isfinite(p)) for p in points
                                                        if isinstance(p, np.ndarray)):
            direction /= max(float(np.abs(direction).max()), 1e-300)
            return _unavailable((), direction)
        # each entry moves by STEP times its own scale, as in the full mode: one step for the whole leaf
        # would move an entry of 1e-154 beside one of 1e8 by 1e5
        direction = direction * np.maximum(np.abs(x), 1.0)
        direction /= max(float(np.abs(direction).max()), 1e-300)
        step = STEP * max(float(np.abs(x).max()) if x.size else 1.0, 1.0)
        value, tolerance, kink, left, right, one_sided, available = _directional(
            scalar_fn, points, index, direction, step, *base)
        if not available:
            return _unavailable((), direction)
        return FiniteDifference(np.float64(value), np.float64(tolerance), np.bool_(kink), np.float64(left),
                                np.float64(right), direction, evaluations=5, one_sided=np.bool_(one_sided))
    result = _unavailable(x.shape, None)
    result.evaluations = 1
    if base is None:
        return result
    others_finite = all(np.all(np.isfinite(p)) for k, p in enumerate(points) if k != index
                        and isinstance(p, np.ndarray))
    for position in np.ndindex(*x.shape):
        if not (others_finite and np.isfinite(x[position])):
            continue                     # inf or NaN inputs: no difference exists (torch decides there)
        unit = np.zeros(x.shape)
        unit[position] = 1.0
        step = STEP * max(abs(float(x[position])), 1.0)
        (result.value[position], result.tolerance[position], result.kink[position], result.left[position],
         result.right[position], result.one_sided[position], available) = _directional(
            scalar_fn, points, index, unit, step, *base)
        result.unavailable[position] = not available
        result.evaluations += 4
    return result


def _base(scalar_fn, points):
    """(L, |L|_abs) at the point itself, or None when it is not finite there."""
    try:
        with np.errstate(all="ignore"):
            value, absolute = scalar_fn(points)
    except Exception as exc:  # noqa: BLE001
        if _from_checker(exc):
            raise
        return None
    if not (np.isfinite(value) and np.isfinite(absolute)):
        return None
    return value, absolute


def _unavailable(shape, direction):
    nan = np.full(shape, np.nan)
    return FiniteDifference(nan, np.zeros(shape), np.zeros(shape, dtype=bool), nan.copy(), nan.copy(), direction,
                            one_sided=np.zeros(shape, dtype=bool), unavailable=np.ones(shape, dtype=bool))


def differentiate_along(scalar_fn, points, directions):
    """The derivative of scalar_fn at `points` along `directions` (one per point, moved together):
    d/ds L(x_1 + s t_1, ..., x_n + s t_n), a scalar FiniteDifference. What a JVP gives as <c, J t>."""
    points = [np.array(p, dtype=np.float64) if isinstance(p, np.ndarray) else p for p in points]
    directions = [np.asarray(d, dtype=np.float64) for d in directions]
    base = _base(scalar_fn, points)
    if base is None or not all(np.all(np.isfinite(p)) for p in points if isinstance(p, np.ndarray)):
        return _unavailable((), None)

    def phi(t):
        moved = [np.asarray(p + t * d) for p, d in zip(points, directions)]
        return _evaluator(scalar_fn, moved, 0, np.zeros_like(moved[0]))(0.0)

    # one step moves every leaf: relative to the smallest leaf that moves, so that a leaf of 1e8 (logits)
    # does not move a leaf of 0.5 beside it by 1e5 (the largest leaf is then moved by a tiny relative
    # step; its rounding error enters the tolerance through the cancellation term)
    moving = [float(np.abs(p).max()) for p, d in zip(points, directions) if np.size(p) and np.any(d != 0)]
    step = STEP * max(1.0, min(moving, default=1.0))
    value, tolerance, kink, left, right, one_sided, available = _directional(
        scalar_fn, points, 0, None, step, *base, phi=phi)
    if not available:
        return _unavailable((), None)
    return FiniteDifference(np.float64(value), np.float64(tolerance), np.bool_(kink), np.float64(left),
                            np.float64(right), None, evaluations=5, one_sided=np.bool_(one_sided))
