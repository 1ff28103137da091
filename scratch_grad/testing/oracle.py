"""The gradient oracle: scratch_grad vs torch.autograd vs finite differences vs a high-precision reference.

For a program (one op, a random graph, or a traced user function) and every leaf, the gradient
of L = sum_k <output_k, cotangent_k> is computed three ways and each pair is compared with the
error model of `tolerance`; single ops whose entry declares an mpmath definition (`OpSpec.mp`) get a
fourth reference, entry by entry (testing/high_precision.py). The verdict for a leaf:

    scratch ~ torch, scratch ~ FD      agree
    scratch ~ torch, scratch !~ FD     kink when the one-sided differences disagree (pass: torch fixes
                                       the convention); finite-difference noise (pass) when the miss
                                       is within GRAPH_CUT_RATIO of FD's own error; else FAIL as a
                                       graph cut: two analytic answers from one recorded program
                                       cannot outvote a clean finite difference of the function
                                       (a detach or .data inside it cut the graph)
    scratch !~ torch, torch ~ FD       engine bug (FAIL)
    scratch !~ torch, scratch ~ FD     reference mismatch: torch computes something else here (pass),
                                       except in second order when scratch's first order is already
                                       wrong (FD differentiates that wrong gradient: FAIL)
    scratch !~ torch at a kink         kink/convention: the subgradient differs from torch's (FAIL)
    no two agree                       FAIL, unresolved
    scratch ~ high precision,          reference imprecise (pass): scratch_grad is the accurate one
        scratch !~ torch
    scratch !~ high precision          FAIL: an engine bug, or a shared error when torch agrees with
                                       scratch_grad (a derivative tail both lose, a shortcut both take)

Forward values, shapes and dtypes are compared with torch (and the high-precision reference) too;
for programs whose ops are all twice differentiable, the gradient of <grad L, w> (w random,
non-contiguous, as is the cotangent then): scratch with create_graph against torch with
create_graph and against finite differences of scratch's first gradient; and the engine's contract
(testing/invariants.py: backward twice gives the same bits, a zero cotangent exact zeros, nothing
mutated, nothing aliased, each VJP's result in its input's dtype).

An exception from the engine (an op's forward, a VJP, backprop) is a finding, classified "scratch_grad
raised"; an exception from the checker's own code is re-raised (testing/faults.py): it is a bug of the
checker, never a verdict about the engine.
"""
import math
from dataclasses import replace

import numpy as np

from ..errors import NotProvidedError
from . import high_precision, invariants
from .faults import raised_by_checker
from .findings import CHECK_TITLES, CHECKS, WARNINGS, CheckFailure, CheckReport, Finding, raised
from .analytic import analytic_for
from .finite_diff import differentiate, differentiate_along
from .program import single_op_program, torch_jvp, trace
from .tolerance import FLOAT64_UNIT_ROUNDOFF, error_ratio, finite_max, high_precision_tolerance, result_tolerance

__all__ = ["CHECKS", "CHECK_TITLES", "WARNINGS", "CheckFailure", "CheckReport", "Finding", "check_fn", "check_op",
           "check_program", "check_sample"]

GRAPH_CUT_RATIO = 10.0     # FD misses beyond this many times its own error bound are not noise


def _at(array, position):
    array = np.asarray(array, dtype=np.float64)
    return float(array[position]) if array.size else math.nan


def _worst(ratio):
    """Position of the largest ratio (nan counts as largest)."""
    if ratio.size == 0:
        return ()
    flat = np.where(np.isnan(ratio), np.inf, ratio)
    return np.unravel_index(int(np.argmax(flat)), ratio.shape) if ratio.ndim else ()


def _guarded(who, check, dtype, findings, fn, *args, **kwargs):
    """fn(...) or None after appending a finding: an exception of the engine is a verdict; one of the
    checker's own code is re-raised."""
    try:
        return fn(*args, **kwargs)
    except NotProvidedError:
        # an adapter that cannot express one parameter value of an op (testing/engines): not a verdict
        # about the engine; the caller counts the program as not provided
        raise
    except Exception as exc:  # noqa: BLE001
        if raised_by_checker(exc):
            raise
        findings.append(raised(check, 0, (), dtype, who, exc))
        return None


# ---- the comparisons ---------------------------------------------------------------------------------

# torch's float64 result carries its formula's own error, which at large inputs is u |x| |derivative|, not
# u |derivative|: torch's logsumexp backward is exp(x - lse), and lse of logits near 1e8 rounds by half an ulp
# of 1e8 (7e-9), so its softmax is off by 7e-9 relative where scratch_grad's shifted softmax is not. This
# term (float64's unit roundoff, whatever the checked dtype: it is the reference's error) admits it
REFERENCE_CONDITION_SAFETY = 16.0


def _compare_to_torch(check, index, analytic, torch64, torch_low, dtype, depth, expected_dtype, floor=0.0,
                      input_scale=1.0):
    """A scratch result against torch in float64 (tolerance: rounding + float32 calibration); returns the
    Finding and the per-entry ratio (None on a shape or dtype mismatch)."""
    analytic_arr = np.asarray(analytic)
    shape = tuple(np.shape(torch64))
    if analytic_arr.shape != shape:
        return Finding(check, index, analytic_arr.shape, str(analytic_arr.dtype), False, math.inf, "shape mismatch",
                       detail=f"scratch_grad gives shape {analytic_arr.shape}, torch gives {shape}"), None
    if expected_dtype is not None and analytic_arr.dtype != expected_dtype:
        return Finding(check, index, shape, str(analytic_arr.dtype), False, math.inf, "dtype mismatch",
                       detail=f"scratch_grad gives dtype {analytic_arr.dtype}, expected {expected_dtype}"), None
    torch64 = _overflowed(torch64, dtype)
    if torch_low is not None and np.dtype(dtype) != np.float64 and np.shape(torch_low) == shape:
        # past float32's range a float32 computation can give NaN (inf - inf) where float64 gives inf:
        # torch's own run in the checked dtype is the reference for those non-finite entries
        low = np.asarray(torch_low, dtype=np.float64)
        analytic64 = np.asarray(analytic_arr, dtype=np.float64)
        same = ~np.isfinite(low) & ~np.isfinite(torch64) & ((analytic64 == low) | (np.isnan(analytic64) & np.isnan(low)))
        torch64 = np.where(same, analytic64, torch64)
    tolerance = result_tolerance(torch64, dtype, depth, torch_low, floor, analytic_arr)
    if input_scale > 1.0:
        with np.errstate(invalid="ignore", over="ignore"):
            magnitude = np.abs(np.asarray(torch64, dtype=np.float64))
            reference_error = (REFERENCE_CONDITION_SAFETY * FLOAT64_UNIT_ROUNDOFF * input_scale
                               * np.where(np.isfinite(magnitude), magnitude, 0.0))
        tolerance = tolerance + reference_error
    error, ratio = error_ratio(analytic_arr, torch64, tolerance)
    position = _worst(ratio)
    worst = float(ratio[position]) if ratio.size else 0.0
    finding = Finding(check, index, shape, str(analytic_arr.dtype), worst <= 1.0, worst,
                      "agree" if worst <= 1.0 else "mismatch", position=tuple(int(p) for p in position),
                      analytic=_at(analytic_arr, position), reference=_at(torch64, position),
                      torch=_at(torch64, position), error=float(error[position]) if error.size else 0.0,
                      tolerance=float(tolerance[position]) if tolerance.size else 0.0)
    return finding, ratio


def _overflowed(reference, dtype):
    """The float64 reference as the checked dtype can hold it: beyond float32's range the right
    float32 answer is inf (-1/x^2 at x = 1e-38), which torch's own float32 run gives too."""
    reference = np.asarray(reference, dtype=np.float64)
    largest = float(np.finfo(np.dtype(dtype)).max)
    with np.errstate(invalid="ignore"):
        beyond = np.isfinite(reference) & (np.abs(reference) > largest)
    return np.where(beyond, np.sign(reference) * np.inf, reference) if beyond.any() else reference


def _undefined_tangent(analytic, reference):
    """A JVP's reference with the entries where torch.func is inf or NaN taken as agreed when scratch_grad
    is finite (as _undefined_reference) or is also inf or NaN: forward mode through an infinite input is
    a convention torch does not keep with itself (prod of [1, -inf]: its VJP says NaN, its JVP -inf)."""
    analytic = np.asarray(analytic, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if analytic.shape != reference.shape:
        return reference
    return np.where(~np.isfinite(reference), analytic, reference)


def _undefined_reference(analytic, reference, mp=None):
    """(reference, count): entries where torch is inf or NaN but scratch_grad is finite taken as agreed,
    unless the high-precision reference judges them. A torch formula that overflows (log(cosh(x)) at
    x = 2702) has no answer there; a value scratch_grad should have made infinite is judged where an
    mp definition exists."""
    analytic = np.asarray(analytic, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if analytic.shape != reference.shape:
        return reference, 0
    with np.errstate(invalid="ignore"):
        undefined = ~np.isfinite(reference) & np.isfinite(analytic)
    if mp is not None and mp.value.shape == undefined.shape:
        undefined &= ~mp.valid
    if not undefined.any():
        return reference, 0
    return np.where(undefined, analytic, reference), int(undefined.sum())


def _fd_errors(values, fd, tolerance, judged):
    """Error of `values` against the FD estimate: plain where smooth; outside the one-sided bracket
    [min(left, right), max(left, right)] at kinks, where the derivative does not exist; 0 where FD
    does not judge (no difference exists, or the analytic value is not finite: FD cannot give inf)."""
    values = np.asarray(values, dtype=np.float64)
    low = np.minimum(fd.left, fd.right)
    high = np.maximum(fd.left, fd.right)
    with np.errstate(invalid="ignore", over="ignore"):
        smooth_error = np.abs(values - fd.value)
        bracket_error = np.maximum(np.maximum(low - values, values - high), 0.0)
        error = np.where(fd.kink, bracket_error, smooth_error)
        error = np.where(np.isnan(error), np.inf, error)
        error = np.where(judged, error, 0.0)
        total = tolerance + fd.tolerance + np.where(fd.kink, 1e-6 * (np.abs(low) + np.abs(high)), 0.0)
        total = np.where(np.isfinite(total), total, 0.0)
        ratio = np.where(error == 0, 0.0, error / np.maximum(total, np.finfo(np.float64).tiny))
        return error, ratio, total


def _mp_comparison(analytic, reference, dtype, depth, scale):
    """(error, ratio, tolerance, rounded reference) of a result against the high-precision reference,
    entry by entry, over the entries it references (0 elsewhere). The reference is rounded to the
    checked dtype first (an exact value beyond float32's range is inf in float32)."""
    analytic = np.asarray(analytic, dtype=np.float64)
    with np.errstate(over="ignore"):
        rounded = reference.value.astype(np.dtype(dtype)).astype(np.float64)
    tolerance = high_precision_tolerance(reference.magnitude, dtype, depth, scale)
    error, ratio = error_ratio(analytic, rounded, tolerance)
    ratio = np.where(reference.valid, ratio, 0.0)
    error = np.where(reference.valid, error, 0.0)
    return error, ratio, tolerance, rounded


def _mp_finding(check, index, analytic, reference, torch64, dtype, depth, scale, convention=None):
    """scratch_grad's result against the high-precision reference: a Finding (None when no entry of
    it is referenced)."""
    if reference is None or np.shape(analytic) != reference.value.shape or not reference.valid.any():
        return None
    error, ratio, tolerance, rounded = _mp_comparison(analytic, reference, dtype, depth, scale)
    position = _worst(ratio)
    worst = float(ratio[position]) if ratio.size else 0.0
    finding = Finding(check, index, tuple(np.shape(analytic)), str(np.asarray(analytic).dtype), worst <= 1.0, worst,
                      "agree", position=tuple(int(p) for p in position),
                      analytic=_at(analytic, position), reference=_at(rounded, position), mp=_at(rounded, position),
                      torch=_at(torch64, position) if np.shape(torch64) == np.shape(analytic) else math.nan,
                      error=_at(error, position), tolerance=_at(tolerance, position),
                      detail=f"compared entry by entry on {int(reference.valid.sum())} of {reference.valid.size} "
                             "entries (the others are kinks, ties, non-finite inputs, or not sampled)")
    if finding.passed:
        return finding
    torch_value, exact = finding.torch, finding.mp
    tolerance64 = float(high_precision_tolerance(reference.magnitude[position], np.float64, depth, scale))
    if math.isfinite(torch_value) and abs(torch_value - exact) <= tolerance64:
        finding.classification = ("engine bug (scratch_grad disagrees with the high-precision reference; "
                                  "torch agrees with it)")
    elif math.isfinite(torch_value) and abs(torch_value - finding.analytic) <= finding.tolerance and convention:
        finding.passed, finding.classification = True, convention
    elif math.isfinite(torch_value) and abs(torch_value - finding.analytic) <= finding.tolerance:
        finding.classification = ("shared error (scratch_grad and torch agree, the high-precision reference "
                                  "does not: a derivative tail or a shortcut both lose)")
    else:
        finding.classification = "engine bug (scratch_grad disagrees with the high-precision reference)"
    return finding


def _excused_by_mp(ratio, analytic, reference, dtype, depth, scale):
    """Whether every entry where scratch_grad misses torch is referenced in high precision and there
    scratch_grad agrees with it: torch is the imprecise one (softplus above torch's threshold of 20)."""
    if reference is None or ratio is None or np.shape(analytic) != reference.value.shape:
        return False
    missed = ratio > 1.0
    if not missed.any() or not reference.valid[missed].all():
        return False
    _, mp_ratio, _, _ = _mp_comparison(analytic, reference, dtype, depth, scale)
    return bool(np.all(mp_ratio[missed] <= 1.0))


_CUT = ("graph cut (scratch_grad and torch's replay of the recorded program agree, but finite differences of the "
        "function disagree with both far beyond their error: the function is not the program its ops recorded, "
        "e.g. a detach or .data cut the graph)")
_SHARED = ("shared error (scratch_grad and torch agree, but finite differences of the forward disagree with both "
           "far beyond their error: both differentiate something else here, a convention that is not the "
           "derivative)")
def _convention(program):
    """The classification of a clean finite difference (or the high-precision reference) that disagrees
    with scratch_grad and torch agreeing, when the program meets a point of an op's declared convention
    (OpSpec.conventions); None when it meets none."""
    try:
        met = program.at_convention()
    except Exception as exc:     # a forward that raises is reported by the checks themselves
        if raised_by_checker(exc):
            raise                # the checker's own bug stays loud
        return None
    if not met:
        return None
    return (f"convention point ({', '.join(sorted(set(met)))} at a point where its declared convention, kept "
            "with torch, is not the derivative; torch judges, finite differences do not)")


_SECOND_SHARED = ("shared error (scratch_grad's double backward agrees with torch's, but finite differences of its "
                  "own first-order gradient disagree far beyond their error: the second order is not the "
                  "derivative of the first)")


def _leaf_findings(kind, index, analytic, torch64, torch_low, fd, dtype, depth, floor, mp=None, scale=1.0,
                   first_order_ok=True, cut=_SHARED, convention=None, input_scale=1.0, torch_imprecise=False,
                   leaf=None):
    """The findings (vs torch, vs FD) for one leaf, with the joint classification; `mp` is the
    leaf's high-precision reference (high_precision.Referenced) or None; `cut` names a clean finite
    difference that outvotes both analytic answers (a graph cut for a user function), unless the program
    meets a declared convention point (`convention`: its classification, see _convention)."""
    torch_check, fd_check = f"{kind}_torch", f"{kind}_fd"
    analytic64 = np.asarray(analytic, dtype=np.float64)
    torch64 = np.asarray(torch64, dtype=np.float64)
    # Near a kink or singularity the terms summed into a derivative can dwarf it (1/std near zero
    # variance), and FD's one-sided derivatives there show their size: add it to the floor. It
    # enters the tolerance times u, so a wrong subgradient (an error of the derivative's own
    # size) is still far outside.
    if fd is not None and np.any(fd.kink):
        with np.errstate(invalid="ignore"):
            local = np.where(fd.kink, np.abs(fd.left) + np.abs(fd.right), 0.0)
        local = np.where(np.isfinite(local), local, 0.0)
        floor = floor + (local if fd.direction is None else float(np.max(local)))
    # where torch's result is NaN but scratch_grad's is finite, torch has no answer (e.g. the second
    # derivative of std at zero variance): those entries are not judged against torch
    undefined = np.zeros(torch64.shape, dtype=bool)
    if analytic64.shape == torch64.shape:
        undefined = np.isnan(torch64) & np.isfinite(analytic64)
        if leaf is not None and np.shape(leaf) == torch64.shape:
            # at a signed zero an infinite derivative's sign is a convention of the formula: x^0.5 at
            # x = -0.0 is +inf here (IEEE pow(-0, -0.5) = +inf) and -inf in torch's backward
            with np.errstate(invalid="ignore"):
                undefined |= ((np.asarray(leaf) == 0) & np.isinf(torch64) & np.isinf(analytic64)
                              & (np.sign(torch64) != np.sign(analytic64)))
        if undefined.any():
            torch64 = np.where(undefined, analytic64, torch64)
            if torch_low is not None:
                torch_low = np.where(undefined, analytic64, torch_low)
    versus_torch, torch_ratio = _compare_to_torch(torch_check, index, analytic, torch64, torch_low, dtype, depth,
                                                  None, floor, input_scale)
    excused = not versus_torch.passed and _excused_by_mp(torch_ratio, analytic, mp, dtype, depth, scale)
    if versus_torch.classification in ("shape mismatch", "dtype mismatch") or fd is None:
        if excused:
            versus_torch.passed = True
            versus_torch.classification = _IMPRECISE
        return [versus_torch]
    tol_analytic = result_tolerance(torch64, dtype, depth, torch_low, floor, analytic64)
    tol_torch = result_tolerance(torch64, np.float64, depth, torch_low, floor, analytic64)
    if fd.direction is not None:            # projection mode: compare <gradient, v> with D_v L
        v = np.abs(fd.direction)
        with np.errstate(invalid="ignore", over="ignore"):
            analytic_fd = np.sum(analytic64 * fd.direction)
            torch_fd = np.sum(torch64 * fd.direction)
        tol_analytic, tol_torch = np.sum(v * tol_analytic), np.sum(v * tol_torch)
        judged = ~fd.unavailable & np.isfinite(analytic_fd) & np.isfinite(torch_fd)
    else:
        analytic_fd, torch_fd = analytic64, torch64
        judged = ~fd.unavailable & np.isfinite(analytic64) & np.isfinite(torch64)
    a_error, a_ratio, a_total = _fd_errors(analytic_fd, fd, tol_analytic, judged)
    _, t_ratio, _ = _fd_errors(torch_fd, fd, tol_torch, judged)
    position = _worst(a_ratio)
    worst_fd = float(a_ratio[position]) if np.size(a_ratio) else 0.0
    agrees_torch = versus_torch.passed
    agrees_fd = worst_fd <= 1.0
    torch_agrees_fd = float(np.max(t_ratio)) <= 1.0 if np.size(t_ratio) else True
    kinks = int(np.sum(fd.kink))
    per_entry = fd.direction is None and np.size(fd.kink) > 0

    def kink_at(where):
        return bool(np.asarray(fd.kink)[where]) if per_entry else bool(kinks)

    if undefined.any():
        # torch's NaN marks a singular point (0/0 in its formulas: std at zero variance, a norm at
        # zero); every subgradient convention is defensible there and finite differences straddle
        # the singularity, so those entries are not judged; the others still are, against torch
        classification = ("reference undefined (torch gives NaN, or an infinity of the other sign at a signed "
                          "zero, at %d of %d entries: a singular point; not judged there)"
                          % (int(undefined.sum()), undefined.size))
    elif agrees_torch:
        if agrees_fd:
            classification = "agree"
        elif kink_at(position) or kinks:
            classification = "kink"
        elif (worst_fd > GRAPH_CUT_RATIO and _at(t_ratio, position) > GRAPH_CUT_RATIO
              and not np.any(fd.one_sided)):  # one-sided differences are never clean enough to outvote
            if convention:
                classification = convention
            else:
                classification = cut
                agrees_torch = False
        else:
            classification = "finite-difference noise"
    elif torch_imprecise:
        classification = ("reference imprecise (torch's first order is already off here, as the high-precision "
                          "reference shows: its second order is not judged)")
        agrees_torch = True
    elif excused:
        # before the kink verdict: the high-precision reference finds a derivative there (a near tie, std of
        # [a, a + ulp], is smooth; an exact tie is not referenced) and scratch_grad has it, torch not
        classification = _IMPRECISE
        agrees_torch = True
    elif kink_at(versus_torch.position):
        classification = "kink/convention (subgradient differs from torch's)"
    elif agrees_fd and not torch_agrees_fd and first_order_ok:
        # scratch_grad is confirmed by finite differences on a smooth stretch and torch is not:
        # the reference is wrong here (torch's own autograd quirk); a warning, not a failure
        classification = "reference mismatch (scratch_grad agrees with finite differences, torch does not)"
        agrees_torch = True
    elif agrees_fd and not first_order_ok:
        classification = ("engine bug (the first-order gradient is already wrong: finite differences of it agree "
                          "with this second order, torch does not)")
    elif torch_agrees_fd and not agrees_fd:
        classification = "engine bug (scratch_grad disagrees with torch and finite differences)"
    elif torch_agrees_fd:
        classification = "engine bug? (scratch_grad disagrees with torch; finite differences too coarse to tell)"
    else:
        classification = "unresolved (scratch_grad, torch and finite differences all disagree)"
    versus_torch.passed = agrees_torch
    versus_torch.classification = classification
    fd_value = _at(fd.value, position)
    versus_fd = Finding(fd_check, index, versus_torch.shape, versus_torch.dtype,
                        agrees_torch and (agrees_fd or classification != "agree" or undefined.any()), worst_fd,
                        classification,
                        position=tuple(int(p) for p in position), analytic=_at(analytic_fd, position),
                        reference=fd_value, torch=_at(torch_fd, position), fd=fd_value,
                        fd_left=_at(fd.left, position), fd_right=_at(fd.right, position),
                        error=_at(a_error, position), tolerance=_at(a_total, position),
                        projected=fd.direction is not None, kinks=kinks)
    if np.any(fd.one_sided):
        versus_fd.detail = "one-sided differences where a domain edge is within the step"
    if not agrees_torch:
        versus_fd.passed = agrees_fd and classification != cut
        if per_entry:   # the torch finding shows the FD value at its own worst entry, for the message
            versus_torch.fd = _at(fd.value, versus_torch.position)
            versus_torch.fd_left = _at(fd.left, versus_torch.position)
            versus_torch.fd_right = _at(fd.right, versus_torch.position)
    return [versus_torch, versus_fd]


_IMPRECISE = "reference imprecise (scratch_grad agrees with the high-precision reference, torch does not)"


# ---- checking a program -----------------------------------------------------------------------------

def _torch_runs(program, dtype, directions, findings):
    """torch's float64 run (outputs, gradients, second order, the largest gradient anywhere) and its run in
    the checked dtype for calibration (float32 for float64 programs); None when the reference raised."""
    low_precision = dtype != np.float64
    try:
        reference = program.astype(np.float64).run_torch(np.float64, second_order_directions=directions,
                                                         return_scale=True)
        low = program.run_torch(dtype, second_order_directions=directions) if low_precision else None
    except Exception as exc:  # noqa: BLE001 - a broken reference is reported, not raised
        findings.append(raised("forward", 0, (), dtype, "the torch reference", exc))
        return None, None
    if not low_precision:
        # float64 is calibrated too: torch's float32 run measures how much this computation
        # amplifies rounding (1/std near zero variance...); tolerance.py scales it to float64
        try:
            low = program.astype(np.float32).run_torch(np.float32, second_order_directions=directions)
        except Exception:  # noqa: BLE001 - no calibration then; the rounding model still applies
            low = None
    return reference, low


def check_program(program, *, engine=None, second_order=None, forward_mode=None, finite_differences=True,
                  fd_mode="auto", seed=0, objective=None, label=None, contract=True,
                  high_precision_reference="auto"):
    """Compare forward, first and (optionally) second order and forward mode of `program` three ways
    (four where the op has a high-precision definition), and check the engine's contract
    (testing/invariants.py).

    engine: None for scratch_grad, or an adapter (testing/engines) whose answers are checked instead;
    raises NotProvidedError when the engine lacks an op of the program. second_order / forward_mode:
    None = when the engine provides it and every op is declared twice differentiable. objective: an
    optional replacement for the float64 objective used by finite differences, objective(leaves) ->
    (L, |L|) (check_fn passes the user's function itself). high_precision_reference: True, False, or
    "auto" (the slow mpmath reference on samples with entries where tails live, and on every fourth
    seed). Returns a CheckReport; never raises on a mismatch or on an exception of the engine (both
    are findings).
    """
    rng = np.random.default_rng(seed)
    analytic = analytic_for(program, engine)
    dtype = program.dtype
    report = CheckReport(program, label or program.name or "program", engine=analytic.name)
    findings = report.findings
    depth = program.depth
    wanted = program.differentiable_leaves()
    if second_order is None:
        second_order = analytic.second_order and program.twice_differentiable() and bool(wanted)
    if forward_mode is None:
        forward_mode = analytic.forward_mode and program.twice_differentiable() and bool(wanted)
    directions = [rng.uniform(-1, 1, size=np.shape(program.leaves[k])) for k in wanted] if second_order else None

    before = invariants.snapshot(program) if contract and analytic.contract else None
    reference, low = _torch_runs(program, dtype, directions, findings)
    if reference is None:
        return report
    t_out64, t_grad64, t_second64, gradient_scale = reference
    t_out_low, t_grad_low, t_second_low = low if low is not None else (None, None, None)
    result = _guarded(analytic.name, "vjp_torch", dtype, findings, analytic.first)
    if result is None:
        return report
    outputs, grads = result

    # The natural scale of the problem: the largest gradient anywhere in the backward pass (the
    # cotangents, every intermediate's and every leaf's gradient, finite ones, from torch). Terms
    # of that size are summed into every gradient; when they cancel (softmax's gradient against a
    # constant cotangent, var of equal values) the result is ~0 but its rounding error is not (see
    # tolerance.py). Not the inputs' size: with logits of 1e8 a softmax gradient is still O(1).
    # Forward results are summed from terms of the inputs' size.
    largest_leaf = max((finite_max(v) for v in program.leaves if np.size(v)), default=0.0)
    largest_cotangent = max((finite_max(c) for c in program.cotangents if np.size(c)), default=0.0)
    natural = max(largest_cotangent, gradient_scale)
    mp = None
    if high_precision_reference == "auto":
        high_precision_reference = seed % 4 == 0 or high_precision.worth_it(program)
    if high_precision_reference:
        mp = _guarded("the high-precision reference", "vjp_mp", dtype, findings, high_precision.reference, program,
                      np.random.default_rng(seed))
    for k, (data, ref) in enumerate(zip(outputs, t_out64)):
        expected = t_out_low[k].dtype if t_out_low is not None and dtype != np.float64 else ref.dtype
        forward_mp = mp.forward[k] if mp is not None and k < len(mp.forward) else None
        judged_ref, undefined = _undefined_reference(data, ref, forward_mp)
        finding, ratio = _compare_to_torch("forward", k, data, judged_ref,
                                           None if t_out_low is None else t_out_low[k], dtype, depth, expected,
                                           max(1.0, largest_leaf))
        if undefined and finding.passed:
            finding.classification = (f"reference undefined (torch gives inf or NaN at {undefined} of "
                                      f"{np.size(ref)} entries where {analytic.name} is finite; not judged there)")
        if not finding.passed and _excused_by_mp(ratio, data, forward_mp, dtype, depth, 1.0):
            finding.passed, finding.classification = True, _IMPRECISE
        findings.append(finding)
        found = _mp_finding("forward_mp", k, data, forward_mp, ref, dtype, depth, 1.0)
        if found is not None:
            findings.append(found)

    program64 = program.astype(np.float64)
    convention = _convention(program64)
    scalar = objective or program64.scalar_raw
    points = list(program64.leaves)
    base = _guarded(f"{analytic.name}'s forward", "vjp_fd", dtype, findings, scalar, points)
    objective_scale = base[1] if base is not None and math.isfinite(base[1]) else 0.0
    for j, k in enumerate(wanted):
        analytic_gradient = np.asarray(grads[j])
        if analytic_gradient.dtype != program.leaves[k].dtype:
            findings.append(Finding("vjp_torch", k, analytic_gradient.shape, str(analytic_gradient.dtype), False,
                                    math.inf, "dtype mismatch", detail=f"gradient of a {program.leaves[k].dtype} "
                                                                       f"input has dtype {analytic_gradient.dtype}"))
            continue
        fd = differentiate(scalar, points, k, rng, fd_mode) if finite_differences else None
        floor = max(objective_scale / _input_scale(points[k]), natural)
        leaf_mp = mp.gradients.get(k) if mp is not None else None
        findings.extend(_leaf_findings("vjp", k, analytic_gradient, t_grad64[j],
                                       None if t_grad_low is None else t_grad_low[j], fd, dtype, 2 * depth + 1, floor,
                                       leaf_mp, largest_cotangent, cut=_CUT if objective is not None else _SHARED,
                                       convention=convention, input_scale=largest_leaf, leaf=points[k]))
        found = _mp_finding("vjp_mp", k, analytic_gradient, leaf_mp, t_grad64[j], dtype, 2 * depth + 1,
                            largest_cotangent, convention)
        if found is not None:
            findings.append(found)
    if contract and analytic.contract:
        findings.extend(invariants.check(program, t_grad64, before))
    if forward_mode:
        _forward_mode_findings(program, analytic, scalar, points, natural, rng, findings,
                               cut=_CUT if objective is not None else _SHARED, convention=convention)
    if second_order:
        first_order_ok = all(f.passed for f in findings if f.check in ("vjp_torch", "vjp_fd", "vjp_mp"))
        # where the high-precision reference showed torch's own first order imprecise (std of [a, a + ulp]:
        # torch rounds the spread to 0 and masks it), torch's second order is no reference either
        torch_imprecise = any(f.check == "vjp_torch" and f.classification == _IMPRECISE for f in findings)
        _second_order_findings(program, program64, analytic, directions, t_second64, t_second_low, natural, points,
                               rng, first_order_ok, findings, largest_leaf, torch_imprecise)
    if analytic.name != "scratch_grad":          # the verdicts name the engine that was checked
        for finding in findings:
            finding.classification = finding.classification.replace("scratch_grad", analytic.name)
    return report


def _forward_mode_findings(program, analytic, scalar, points, natural, rng, findings, cut=_SHARED, convention=None):
    """J t (the engine's forward mode, t random per differentiable leaf) against torch.func.jvp entry by
    entry, and <c, J t> against the finite difference of L along t (JAX's check_grads(modes=("fwd",))
    and torch's check_forward_ad)."""
    dtype, depth, wanted = program.dtype, program.depth, program.differentiable_leaves()
    tangents = [rng.uniform(-1, 1, size=np.shape(program.leaves[k])) for k in wanted]
    ours = _guarded(f"{analytic.name} (forward mode)", "jvp_torch", dtype, findings, analytic.jvp, tangents)
    if ours is None:
        return
    try:
        theirs = torch_jvp(program, tangents)
    except Exception:  # noqa: BLE001 - torch has no forward mode for this program: nothing to compare with
        return
    floor = natural * max([1.0] + [finite_max(t) for t in tangents])
    total, total_tolerance, judged = 0.0, 0.0, True
    for k, (a, t) in enumerate(zip(ours, theirs)):
        t = _undefined_tangent(a, t)
        finding, _ = _compare_to_torch("jvp_torch", k, a, t, None, dtype, 2 * depth + 1, None, floor)
        findings.append(finding)
        if finding.classification in ("shape mismatch", "dtype mismatch"):
            judged = False
            continue
        c = np.asarray(program.cotangents[k], dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            total += float(np.sum(np.asarray(a, dtype=np.float64) * c))
            tolerance = result_tolerance(t, dtype, 2 * depth + 1, None, floor, a)
            total_tolerance += float(np.sum(np.abs(c) * tolerance))
    fd = differentiate_along(scalar, points, [np.zeros_like(points[k]) if k not in wanted else
                                              tangents[wanted.index(k)] for k in range(len(points))])
    if not judged or fd.unavailable or not math.isfinite(total):
        return
    error = abs(total - float(fd.value))
    bound = total_tolerance + float(fd.tolerance)
    ratio = error / max(bound, np.finfo(np.float64).tiny) if error else 0.0
    agrees_torch = all(f.passed for f in findings if f.check == "jvp_torch")
    low, high = sorted((float(fd.left), float(fd.right)))
    one_sided = fd.kink and low - bound <= total <= high + bound
    if one_sided and not agrees_torch:
        # at a kink torch.func.jvp keeps a convention of its own, not always its backward's (clamp(x, min=0)
        # at x = 0: its VJP passes g, its JVP gives 0); a J t that is one of the one-sided derivatives is
        # the transposed VJP's convention, which the VJP checks hold to torch's
        for finding in findings:
            if finding.check == "jvp_torch" and not finding.passed:
                finding.passed = True
                finding.classification = "kink (torch.func.jvp's convention differs; J t is a one-sided derivative)"
        agrees_torch = True
    # the same verdicts as for a gradient (see _leaf_findings), on the one projection <c, J t>
    if ratio <= 1.0:
        passed, classification = True, "agree"
    elif fd.kink:
        passed, classification = agrees_torch, "kink" if agrees_torch else "kink/convention (J t differs from torch's)"
    elif not agrees_torch:
        passed, classification = False, "engine bug (J t disagrees with torch.func.jvp and the finite difference)"
    elif ratio <= GRAPH_CUT_RATIO or fd.one_sided:
        passed, classification = True, "finite-difference noise"
    elif convention:
        passed, classification = True, convention
    else:
        passed, classification = False, cut
    findings.append(Finding("jvp_fd", -1, (), str(dtype), passed, ratio, classification, analytic=total,
                            reference=float(fd.value), fd=float(fd.value), fd_left=float(fd.left),
                            fd_right=float(fd.right), error=error, tolerance=bound, projected=True))


def _second_order_findings(program, program64, analytic, directions, t_second64, t_second_low, natural, points,
                           rng, first_order_ok, findings, input_scale=1.0, torch_imprecise=False):
    """grad of S = sum_i <dL/dx_i, w_i> (double backward, with a non-contiguous cotangent and directions)
    against torch and against finite differences of the engine's own first gradient."""
    dtype, depth, wanted = program.dtype, program.depth, program.differentiable_leaves()
    second = _guarded(f"{analytic.name} (create_graph)", "second_torch", dtype, findings, analytic.second,
                      directions)
    if second is None:
        return
    # S = sum <dL/dx_i, w_i> sums first-derivative terms (natural size) times w
    direction_size = sum(float(np.sum(np.abs(w))) for w in directions)
    second_terms = natural * direction_size

    def first_gradient_objective(leaves):
        g = analytic.gradients_at(replace(program64, leaves=list(leaves)))
        total = sum(float(np.sum(np.asarray(gi, dtype=np.float64) * w)) for gi, w in zip(g, directions))
        absolute = sum(float(np.sum(np.abs(np.asarray(gi, dtype=np.float64)) * np.abs(w)))
                       for gi, w in zip(g, directions))
        return total, absolute + second_terms

    base = _guarded(f"{analytic.name} (at the points finite differences take)", "second_fd", dtype, findings,
                    first_gradient_objective, points)
    if base is None:
        return
    second_scale = base[1] if math.isfinite(base[1]) else second_terms
    # an input exactly on a declared kink (abs at 0): the first gradient jumps there, so finite
    # differences of it do not outvote two analytic second orders that agree
    try:
        met = program64.at_kink()
    except Exception as exc:  # noqa: BLE001 - a forward that raises is reported by the checks themselves
        if raised_by_checker(exc):
            raise
        met = []
    kinked = (f"kink ({', '.join(sorted(set(met)))} exactly at a kink: its first gradient jumps there, so finite "
              "differences of it do not judge the second order; torch does)") if met else None
    for j, k in enumerate(wanted):
        fd = differentiate(first_gradient_objective, points, k, rng, "projection")
        floor = second_scale / _input_scale(points[k])
        findings.extend(_leaf_findings("second", k, second[j], t_second64[j],
                                       None if t_second_low is None else t_second_low[j], fd, dtype,
                                       4 * depth + 2, floor, first_order_ok=first_order_ok, cut=_SECOND_SHARED,
                                       input_scale=input_scale, torch_imprecise=torch_imprecise,
                                       convention=kinked))


def _input_scale(x):
    """max(|x|, 1) over finite entries: the scale a derivative with respect to x divides the objective's
    terms by."""
    return max(finite_max(x) if np.size(x) else 1.0, 1.0)


# ---- public entry points ------------------------------------------------------------------------------

def check_fn(fn, inputs, *, cotangent=None, second_order=None, seed=0, fd_mode="auto", name=None,
             raise_on_failure=True):
    """Check the gradients of fn(*Variables) three ways: scratch_grad, torch.autograd, finite differences.

    fn is run once on Variables to record the ops it calls; torch runs the same ops through the
    registry's references; finite differences call fn itself on float64 inputs (so a graph cut inside
    fn, a detach or .data, shows as a disagreement with both analytic answers). Float array inputs are
    differentiated. cotangent: the weight of each output in the scalar L (random if None). Raises
    CheckFailure on a mismatch (or returns the report with raise_on_failure=False).
    """
    from ..engine import Variable, no_grad
    program = trace(fn, inputs)
    rng = np.random.default_rng(seed)
    _, outputs = program.run_scratch()
    if cotangent is None:
        cotangents = [rng.uniform(-2, 2, size=o.shape).astype(program.dtype) for o in outputs]
    else:
        cotangents = list(cotangent) if isinstance(cotangent, (list, tuple)) else [cotangent]
        cotangents = [np.asarray(c, dtype=program.dtype) for c in cotangents]
    program.cotangents = cotangents
    program.name = f"function '{name or program.name}'"

    def objective(leaves):
        with no_grad():
            result = fn(*[Variable(v) for v in leaves])
        if getattr(fn, "has_aux", False):
            result = result[0]
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        total = sum(float(np.sum(np.asarray(r._data, dtype=np.float64) * c)) for r, c in zip(results, cotangents))
        absolute = sum(float(np.sum(np.abs(np.asarray(r._data, dtype=np.float64)) * np.abs(c)))
                       for r, c in zip(results, cotangents))
        return total, absolute

    report = check_program(program, second_order=second_order, seed=seed, fd_mode=fd_mode, objective=objective)
    if raise_on_failure and not report.passed:
        raise CheckFailure(report)
    return report


def check_sample(spec, inputs, params, *, cotangent_gen=None, second_order=None, seed=0, fd_mode="auto",
                 engine=None):
    """One sampled call of a registry op, checked three ways (a CheckReport); engine: an adapter to check
    instead of scratch_grad (NotProvidedError when it lacks the op)."""
    program = single_op_program(spec, inputs, params, cotangent_gen=cotangent_gen,
                                rng=np.random.default_rng(seed))
    if second_order is not None:
        second_order = second_order and bool(program.differentiable_leaves())
    return check_program(program, second_order=second_order, seed=seed, fd_mode=fd_mode, label=spec.name,
                         engine=engine)


def example_inputs(spec, dtype):
    """The entry's regression examples (OpSpec.examples) with float arrays cast to `dtype`."""
    for inputs, params in spec.examples:
        cast = tuple(np.asarray(v, dtype=dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
                     for v in inputs)
        yield cast, dict(params)


def check_op(name, inputs=None, params=None, *, dtypes=("float64", "float32"), samples=6, seed=0,
             second_order=None, raise_on_failure=True):
    """Check a registry op three ways: on the given inputs, or on its regression examples and then
    `samples` draws of its sampler per dtype (non-smooth ops get a third of their draws exactly at
    kinks and ties, every op a quarter at edges).

    Returns the list of CheckReports; raises CheckFailure on the first failing one unless
    raise_on_failure=False."""
    from ..ops import REGISTRY
    from ..ops.sampling import sample_inputs
    from .gen import RandomGen, sample_modes
    spec = REGISTRY[name] if isinstance(name, str) else name
    reports = []
    if inputs is not None:
        inputs = tuple(np.asarray(v) if not np.isscalar(v) else v for v in inputs)
        reports.append(check_sample(spec, inputs, params or {}, second_order=second_order, seed=seed))
    else:
        for dtype in dtypes:
            for example, example_params in example_inputs(spec, dtype):
                reports.append(check_sample(spec, example, example_params, second_order=second_order, seed=seed))
            for k in range(samples):
                gen = RandomGen(seed=(seed, k), dtype=dtype, **sample_modes(spec, k))
                drawn_inputs, drawn_params = sample_inputs(spec, gen)
                reports.append(check_sample(spec, drawn_inputs, drawn_params, cotangent_gen=gen,
                                            second_order=second_order, seed=seed + k))
    if raise_on_failure:
        for report in reports:
            if not report.passed:
                raise CheckFailure(report)
    return reports
