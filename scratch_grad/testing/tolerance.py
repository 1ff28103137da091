"""The error model: how far a correct result may be from its reference, entry by entry.

One fixed `atol` is either too loose for float64 or flaky for float32. Instead every comparison
gets a tolerance built from what can actually go wrong in a correct computation:

1. Rounding in the checked dtype. A result computed in a dtype with unit roundoff u (2^-24 for
   float32, 2^-53 for float64) through `depth` ops, each well conditioned on the sampled domain,
   carries an error of a few u per op, relative to the magnitude of the terms it was summed
   from. Those terms are unknown, so the scale is the entry's own magnitude plus the largest
   magnitude of the whole array (sums whose terms cancel keep an error of the size of the
   terms, not of the result: a normwise floor). When the result is zero or tiny because its
   terms cancel (softmax's gradient against a constant cotangent, var of equal values, the
   second derivative of a linear function), even that floor is zero, so a floor from the terms
   themselves is added: for gradients of L = sum <output, cotangent>, the larger of
   |L|_abs / max(|x|, 1) (|L|_abs = sum |output| |cotangent|) and the problem's natural scale,
   the largest gradient anywhere in torch's backward pass (the cotangents, every intermediate
   value's gradient, every leaf's); for second order, the same times the direction w; for
   forward values, max(1, max|x|). Not the inputs' magnitude for gradients: with logits of 1e8
   a softmax gradient is O(1), and a floor of 1e8 u would let a sign flip pass. All magnitudes
   are taken over finite entries only (an inf input must not make every tolerance infinite;
   non-finite results must match exactly). Below that floor a float32 result is noise, so a
   relative bug in a value far smaller than the problem's scale is only caught in float64 (or
   by the high-precision reference, entry by entry, at the end of this module)::

       rounding_i = ROUNDING_SAFETY * u * depth * (m_i + max_j m_j + floor)

   where m_i = max(|reference_i|, |analytic_i|): symmetric, so that a reference that is wrong
   (torch's second derivative of x^y at y = 0 is 0) does not shrink the tolerance of a result
   that is right; a gradient scaled by 2 only doubles it, far from hiding the error.

2. Conditioning, measured rather than modelled. The reference is evaluated twice: in float64
   (the value compared against) and in float32 by torch. Their difference is the rounding error
   a competent implementation of the *same* computation actually makes here, with all the
   ill-conditioning of this particular graph and these inputs included (1/std near zero
   variance, a long chain of exp). For a float32 result it is used as is; for a float64 result
   it is scaled by the ratio of the unit roundoffs, u64 / u32 = 2^-29::

       calibration_i = CALIBRATION_SAFETY * (u / u32) * |torch_float32_i - torch_float64_i|

3. Finite-difference error (only when comparing against finite differences). Central
   differences at steps h and h/2 are combined by Richardson extrapolation; the difference of
   the two levels bounds the truncation error of the extrapolated value, and evaluating in
   float64 adds a cancellation error of about u64 * |L| / h (L the scalar differentiated)::

       finite_difference_i = FD_SAFETY * (|D(h)_i - D(h/2)_i| + u64 * |L|_abs / h)

The tolerance is the sum of the terms that apply; an entry passes when |analytic - reference|
<= tolerance, and a report gives the worst ratio error / tolerance. The safety factors are
calibrated so that the worst ratio of correct ops over thousands of random float32 graphs
stays far below 1 (see parity_tests/test_checker.py), while a gradient that is off by 0.1%
is still more than a hundred tolerances away.
"""
import numpy as np

ROUNDING_SAFETY = 64.0
CALIBRATION_SAFETY = 8.0
FD_SAFETY = 4.0
FLOAT64_UNIT_ROUNDOFF = np.finfo(np.float64).eps / 2


def unit_roundoff(dtype):
    """2^-24 for float32, 2^-53 for float64: the largest relative error of one rounding."""
    return float(np.finfo(np.dtype(dtype)).eps) / 2


def finite_max(values):
    """The largest |value| over the finite entries (0 for none): an inf or NaN entry must not make
    every other entry's tolerance infinite."""
    magnitude = np.abs(np.asarray(values, dtype=np.float64))
    finite = magnitude[np.isfinite(magnitude)]
    return float(finite.max()) if finite.size else 0.0


def rounding_tolerance(reference, dtype, depth, floor=0.0):
    """Per-entry bound on the rounding error of a result computed in `dtype` through `depth` ops;
    `floor` is the magnitude of the terms the result is summed from (see the module doc). Non-finite
    entries get a tolerance of 0: they must match exactly (inf for inf, NaN for NaN)."""
    magnitude = np.abs(np.asarray(reference, dtype=np.float64))
    magnitude = np.where(np.isfinite(magnitude), magnitude, 0.0)
    largest = float(magnitude.max()) if magnitude.size else 0.0
    # the factor (< 1) multiplies each term before they are added: magnitudes near float64's largest
    # (a second derivative 1/y^3) would overflow the sum to inf and make every entry pass
    # a floor that overflowed (the terms of a second derivative near 1e308) stands for the largest float:
    # an infinite tolerance would be dropped by error_ratio and fail every entry
    floor = np.nan_to_num(np.asarray(floor, dtype=np.float64), nan=0.0, posinf=np.finfo(np.float64).max)
    factor = ROUNDING_SAFETY * unit_roundoff(dtype) * max(depth, 1)
    tolerance = factor * magnitude + factor * largest + factor * floor
    # results that are exactly zero everywhere must still allow the smallest normal number
    return np.maximum(tolerance, np.finfo(np.dtype(dtype)).tiny)


def calibration_tolerance(low_precision, reference):
    """The reference's own rounding error in the checked dtype, with a safety factor."""
    low = np.asarray(low_precision, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        difference = np.abs(low - ref)
    return CALIBRATION_SAFETY * np.where(np.isfinite(difference), difference, 0.0)


def result_tolerance(reference, dtype, depth, low_precision_reference=None, floor=0.0, analytic=None):
    """Tolerance for a result computed in `dtype` against a float64 reference (terms 1 and 2);
    low_precision_reference is torch's float32 result of the same computation."""
    magnitude = np.abs(np.asarray(reference, dtype=np.float64))
    if analytic is not None and np.shape(analytic) == magnitude.shape:
        with np.errstate(invalid="ignore"):
            analytic = np.abs(np.asarray(analytic, dtype=np.float64))
        magnitude = np.maximum(magnitude, np.where(np.isfinite(analytic), analytic, 0.0))
    tolerance = rounding_tolerance(magnitude, dtype, depth, floor)
    if low_precision_reference is not None and np.shape(low_precision_reference) == magnitude.shape:
        scale = unit_roundoff(dtype) / unit_roundoff(np.float32)
        tolerance = tolerance + scale * calibration_tolerance(low_precision_reference, reference)
    return tolerance


def finite_difference_tolerance(coarse, fine, absolute_scale, step):
    """Term 3: the error of a Richardson-extrapolated central difference (see the module doc)."""
    coarse = np.asarray(coarse, dtype=np.float64)
    fine = np.asarray(fine, dtype=np.float64)
    truncation = np.abs(coarse - fine)
    cancellation = FLOAT64_UNIT_ROUNDOFF * absolute_scale / np.asarray(step, dtype=np.float64)
    return FD_SAFETY * (truncation + 16 * cancellation)


def error_ratio(analytic, reference, tolerance):
    """|analytic - reference| / tolerance, entry by entry: 0 where both are the same non-finite value
    (inf and inf, NaN and NaN: NaN positions must match), inf where one is finite and the other not."""
    analytic = np.asarray(analytic, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(analytic - reference)
    same_nonfinite = ~np.isfinite(analytic) & (analytic == reference) | (np.isnan(analytic) & np.isnan(reference))
    error = np.where(same_nonfinite, 0.0, np.where(np.isnan(error), np.inf, error))
    tolerance = np.where(np.isfinite(tolerance), tolerance, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(error == 0, 0.0, error / np.maximum(tolerance, np.finfo(np.float64).tiny))
    return error, ratio


# ---- the high-precision reference (testing/high_precision.py) ----------------------------------------------
# Compared entry by entry, not normwise: the reference gives each entry its own magnitude (the terms
# summed into it plus its condition number), so a tail that lost its digits fails even where it is tiny
# next to the rest of the array. A stable computation stays within a few unit roundoffs per op of that
# magnitude (MP_SAFETY covers the ulps of NumPy's float32 functions and of the VJP's few operations);
# results in the subnormal range only within the smallest normal number (times the cotangent).
MP_SAFETY = 16.0


def high_precision_tolerance(magnitude, dtype, depth, scale=1.0):
    """Per-entry tolerance against the mpmath reference; `scale` is the size of the weights (the
    cotangent) multiplying the entry, for the subnormal floor."""
    tiny = float(np.finfo(np.dtype(dtype)).tiny)
    magnitude = np.where(np.isfinite(magnitude), np.abs(magnitude), 0.0)
    return MP_SAFETY * unit_roundoff(dtype) * max(depth, 1) * magnitude + 4 * tiny * (1.0 + scale)


# ---- trajectories: training two implementations side by side (experiments/lockstep.py) --------------------
# Training the same network in scratch_grad and in torch, from the same weights on the same batches, compares
# whole parameter tensors (and the loss) after every step, normwise: err(t) = max |ours - reference| /
# max |reference|. Not entry by entry, as above: after a few steps every entry has been through every other
# entry's updates, and the trajectory, not one entry, is what a correct optimizer must follow.
#
# A count of roundings per op (term 1) cannot bound it: the error compounds over the steps as the dynamics
# amplify or damp it, and Adam divides each gradient entry by its own magnitude, so an entry whose gradient is
# dominated by rounding (cancellation) gets an update of full size lr with rounding-level noise (on the
# 784-40-10 net torch float32 is 8e-6, 67 eps, from float64 after ONE Adam step for some seeds, while SGD
# stays near 1 eps for hundreds of steps). So the bound is term 2, measured along the run: torch trains the
# same network in float32 and in float64 side by side, and e(s) = normwise |torch_float32 - torch_float64|
# after step s is the error a competent float32 implementation makes on THIS trajectory so far. Two correct
# implementations cannot be expected to agree better than each agrees with the exact trajectory, and the
# error so far only grows, so after step t, for results computed in a dtype with unit roundoff u:
#
#     trajectory(t) = TRAJECTORY_SAFETY * (u / u32) * max_{s <= t} e(s) + TRAJECTORY_FLOOR * u
#
# The floor is for a calibration that happens to be zero (a loss that came out bit for bit). For a float32
# run e(s) is a measurement of float32 itself. For a float64 run it is an extrapolation, scaled by u / u32 as
# term 2 scales it, and on a trajectory that extrapolation underestimates: where ReLU kinks and momentum make
# the run chaotic, how much an error grows depends on its size and direction, and two float64 runs drifted
# up to 37x further apart (in units of u) than float32 did from float64 within 100 steps (784-16-10 ReLU,
# cross-entropy, SGD lr 0.5 with Nesterov momentum 0.9, seeds 0-11); elsewhere under 8x. So an extrapolated
# calibration gets TRAJECTORY_EXTRAPOLATION_SAFETY on top. Measured over 300 steps of the 784-40-10 sigmoid
# net (SGD lr 5, Adam, AdamW), 784-16-10 ReLU and tanh nets on cross-entropy (SGD with Nesterov momentum and
# weight decay, AdamW) and the 784-128-10 ReLU net (Adam, batch 32), seeds 0-11: the largest error /
# tolerance of a correct float64 run was 0.12 outside the chaotic net, where it stays below 1 for 100 steps
# (0.72) and no tolerance can follow a chaotic run for long. A formula slip stays far outside: an lr off
# by 1e-6 relative, or Adam's eps 1e-7 for 1e-8, is reported at step 1.
TRAJECTORY_SAFETY = 4.0
TRAJECTORY_EXTRAPOLATION_SAFETY = 16.0
TRAJECTORY_FLOOR = 32.0


def normwise_relative_error(ours, reference):
    """max |ours - reference| / max |reference| in float64 (the absolute error when the reference is all zero;
    inf for a shape mismatch)."""
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if ours.shape != reference.shape:
        return float("inf")
    if not reference.size:
        return 0.0
    scale = float(np.max(np.abs(reference)))
    difference = float(np.max(np.abs(ours - reference)))
    return difference / scale if scale else difference


def trajectory_tolerance(dtype, calibration):
    """The largest normwise relative error accepted between two trainings in `dtype` after a step, given
    calibration = the running max over the steps so far of normwise |torch_float32 - torch_float64|: measured
    in float32, extrapolated (with TRAJECTORY_EXTRAPOLATION_SAFETY) to any other dtype (see above)."""
    u, u32 = unit_roundoff(dtype), unit_roundoff(np.float32)
    safety = TRAJECTORY_SAFETY if u == u32 else TRAJECTORY_SAFETY * TRAJECTORY_EXTRAPOLATION_SAFETY
    return safety * (u / u32) * calibration + TRAJECTORY_FLOOR * u
