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

Full mode differentiates along every coordinate (4 evaluations each + 1); projection mode
(large inputs, like JAX's check_vjp and torch gradcheck's fast mode) along one random
direction v, giving the scalar u^T J v that is compared with <analytic gradient, v>.
"""
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


def _directional(scalar_fn, points, index, direction, step, base_value, base_scale):
    """phi at -h, -h/2, +h/2, +h along `direction` on input `index`; returns the FD quantities."""
    values = {}
    scale = base_scale
    for multiple in (-1.0, -0.5, 0.5, 1.0):
        moved = list(points)
        moved[index] = np.asarray(points[index] + (multiple * step) * direction)   # 0-d stays an array
        value, absolute = scalar_fn(moved)
        values[multiple] = value
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


def differentiate(scalar_fn, points, index, rng, mode="auto"):
    """Finite-difference derivative of scalar_fn(points) with respect to points[index].

    scalar_fn(list of float64 arrays) -> (L, |L|_abs) where |L|_abs bounds the magnitudes summed
    into L (for the cancellation error). mode: "full", "projection" or "auto" (full for inputs
    of at most FULL_JACOBIAN_LIMIT entries).
    """
    points = [np.array(p, dtype=np.float64) if isinstance(p, np.ndarray) else p for p in points]
    x = points[index]
    if x.size == 0:
        empty = np.zeros(x.shape)
        return FiniteDifference(empty, empty, np.zeros(x.shape, dtype=bool), empty, empty, None, evaluations=0)
    base_value, base_scale = scalar_fn(points)
    if mode == "auto":
        mode = "full" if x.size <= FULL_JACOBIAN_LIMIT else "projection"
    if mode == "projection":
        direction = rng.standard_normal(x.shape)
        direction /= max(float(np.abs(direction).max()), 1e-300)
        step = STEP * max(float(np.abs(x).max()) if x.size else 1.0, 1.0)
        value, tolerance, kink, left, right = _directional(scalar_fn, points, index, direction, step,
                                                          base_value, base_scale)
        return FiniteDifference(np.float64(value), np.float64(tolerance), np.bool_(kink), np.float64(left),
                                np.float64(right), direction, evaluations=5)
    value = np.zeros(x.shape)
    tolerance = np.zeros(x.shape)
    kink = np.zeros(x.shape, dtype=bool)
    left = np.zeros(x.shape)
    right = np.zeros(x.shape)
    for position in np.ndindex(*x.shape):
        unit = np.zeros(x.shape)
        unit[position] = 1.0
        step = STEP * max(abs(float(x[position])), 1.0)
        (value[position], tolerance[position], kink[position], left[position],
         right[position]) = _directional(scalar_fn, points, index, unit, step, base_value, base_scale)
    return FiniteDifference(value, tolerance, kink, left, right, None, evaluations=1 + 4 * x.size)
