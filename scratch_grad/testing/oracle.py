"""The three-way gradient oracle: scratch_grad vs torch.autograd vs finite differences.

For a program (one op, a random graph, or a traced user function) and every leaf, the gradient
of L = sum_k <output_k, cotangent_k> is computed three ways and each pair is compared with the
error model of `tolerance`. The verdict for a leaf:

    scratch ~ torch, scratch ~ FD      agree
    scratch ~ torch, scratch !~ FD     finite-difference noise (pass), or kink when the one-sided
                                       differences disagree (pass: torch fixes the convention)
    scratch !~ torch, torch ~ FD       engine bug (FAIL)
    scratch !~ torch, scratch ~ FD     reference mismatch: the torch reference computes something
                                       else, or a convention differs (FAIL)
    scratch !~ torch at a kink         kink/convention: the subgradient differs from torch's (FAIL)
    no two agree                       FAIL, unresolved

Forward values, shapes and dtypes are compared with torch too, and, for programs whose ops are
all twice differentiable, the gradient of <grad L, w> (w random): scratch with create_graph
against torch with create_graph and against finite differences of scratch's first gradient.
"""
import math
from dataclasses import dataclass, field

import numpy as np

from .finite_diff import differentiate
from .program import single_op_program, trace
from .tolerance import error_ratio, result_tolerance

CHECKS = ("forward", "vjp_torch", "vjp_fd", "second_torch", "second_fd")
# classifications that pass: scratch_grad agrees with the reference that can judge it
WARNINGS = ("finite-difference noise", "kink", "reference mismatch", "reference undefined")
CHECK_TITLES = {"forward": "forward", "vjp_torch": "VJP vs torch", "vjp_fd": "VJP vs FD",
                "second_torch": "2nd order vs torch", "second_fd": "2nd order vs FD"}


class CheckFailure(AssertionError):
    """Raised when a check fails; `.report` holds the CheckReport (its str is the message)."""

    def __init__(self, report, extra=""):
        self.report = report
        super().__init__(report.message() + extra)


@dataclass
class Finding:
    """One comparison: a forward output, or one leaf's gradient against one reference."""
    check: str                         # one of CHECKS
    index: int                         # output index (forward) or leaf index
    shape: tuple
    dtype: str
    passed: bool
    ratio: float = 0.0                 # worst |error| / tolerance
    classification: str = "agree"
    position: tuple = ()
    analytic: float = math.nan
    reference: float = math.nan        # the value compared against
    torch: float = math.nan
    fd: float = math.nan
    fd_left: float = math.nan
    fd_right: float = math.nan
    error: float = 0.0
    tolerance: float = 0.0
    projected: bool = False            # compared u^T J v (projection mode), not entries
    kinks: int = 0
    detail: str = ""


@dataclass
class CheckReport:
    program: object
    label: str
    findings: list = field(default_factory=list)
    reproducer: str = ""               # path of a standalone script, when one was written

    @property
    def passed(self):
        return all(f.passed for f in self.findings)

    def failures(self):
        return [f for f in self.findings if not f.passed]

    def worst(self, check):
        """(worst ratio, passed) over the findings of one check; None if it did not run."""
        found = [f for f in self.findings if f.check == check]
        if not found:
            return None
        return max(f.ratio for f in found), all(f.passed for f in found)

    def notes(self):
        """The warnings of a passing report: FD noise, kinks, a reference that is wrong or undefined."""
        if not self.passed:
            return []
        return sorted({f.classification for f in self.findings
                       if f.classification.startswith(WARNINGS) and not f.classification.startswith("kink/")})

    def message(self):
        program = self.program
        ops = program.op_names()
        if self.label in program.op_names() and len(program.steps) == 1:
            what = f"op '{self.label}'"
        else:
            count = f"{len(program.steps)} op{'s' if len(program.steps) != 1 else ''}"
            what = f"{self.label} of {count} ({', '.join(ops)})"
        lines = [f"gradient check failed: {what}, dtype {program.dtype}"]
        for f in self.failures():
            lines.append(_describe(f, program))
        if len(program.steps) == 1 and program.steps[0].params and self.label in program.op_names():
            lines.append(f"  params: {program.steps[0].params}")
        if self.reproducer:
            lines.append(f"  standalone reproducer: {self.reproducer}")
        return "\n".join(lines)

    __str__ = message


def _describe(f, program):
    target = f"output {f.index}" if f.check == "forward" else f"input {f.index}"
    head = (f"- {CHECK_TITLES[f.check]}: {target}, shape {f.shape}, dtype {f.dtype}: "
            f"{f.classification}")
    if f.detail and not np.isfinite(f.ratio) and math.isnan(f.analytic):
        return head + f"\n    {f.detail}"
    where = "projection u^T J v" if f.projected else f"entry {f.position}"
    lines = [head, f"    largest error at {where}: {f.error:.3e} = {f.ratio:.3g} x tolerance {f.tolerance:.3e}"]
    lines.append(f"    scratch_grad        {f.analytic:.10g}")
    if not math.isnan(f.torch):
        lines.append(f"    torch               {f.torch:.10g}")
    if not math.isnan(f.fd):
        lines.append(f"    finite differences  {f.fd:.10g}   (one-sided: left {f.fd_left:.6g}, right {f.fd_right:.6g})")
    if f.detail:
        lines.append(f"    {f.detail}")
    return "\n".join(lines)


def _at(array, position):
    array = np.asarray(array, dtype=np.float64)
    return float(array[position]) if array.size else math.nan


def _worst(ratio):
    """Position of the largest ratio (nan counts as largest)."""
    if ratio.size == 0:
        return ()
    flat = np.where(np.isnan(ratio), np.inf, ratio)
    return np.unravel_index(int(np.argmax(flat)), ratio.shape) if ratio.ndim else ()


def _raised(check, index, shape, dtype, who, exc):
    return Finding(check, index, tuple(shape), str(dtype), False, math.inf, f"{who} raised",
                   detail=f"{type(exc).__name__}: {exc}")


# ---- the comparisons ---------------------------------------------------------------------------------

def _compare_to_torch(check, index, analytic, torch64, torch_low, dtype, depth, expected_dtype, floor=0.0):
    """A scratch result against torch in float64 (tolerance: rounding + float32 calibration)."""
    analytic_arr = np.asarray(analytic)
    shape = tuple(np.shape(torch64))
    if analytic_arr.shape != shape:
        return Finding(check, index, analytic_arr.shape, str(analytic_arr.dtype), False, math.inf, "shape mismatch",
                       detail=f"scratch_grad gives shape {analytic_arr.shape}, torch gives {shape}")
    if expected_dtype is not None and analytic_arr.dtype != expected_dtype:
        return Finding(check, index, shape, str(analytic_arr.dtype), False, math.inf, "dtype mismatch",
                       detail=f"scratch_grad gives dtype {analytic_arr.dtype}, expected {expected_dtype}")
    tolerance = result_tolerance(torch64, dtype, depth, torch_low, floor, analytic_arr)
    error, ratio = error_ratio(analytic_arr, torch64, tolerance)
    position = _worst(ratio)
    worst = float(ratio[position]) if ratio.size else 0.0
    return Finding(check, index, shape, str(analytic_arr.dtype), worst <= 1.0, worst,
                   "agree" if worst <= 1.0 else "mismatch", position=tuple(int(p) for p in position),
                   analytic=_at(analytic_arr, position), reference=_at(torch64, position),
                   torch=_at(torch64, position), error=float(error[position]) if error.size else 0.0,
                   tolerance=float(tolerance[position]) if tolerance.size else 0.0)


def _fd_errors(values, fd, tolerance):
    """Error of `values` against the FD estimate: plain where smooth; outside the one-sided bracket
    [min(left, right), max(left, right)] at kinks, where the derivative does not exist."""
    values = np.asarray(values, dtype=np.float64)
    low = np.minimum(fd.left, fd.right)
    high = np.maximum(fd.left, fd.right)
    with np.errstate(invalid="ignore", over="ignore"):
        smooth_error = np.abs(values - fd.value)
        bracket_error = np.maximum(np.maximum(low - values, values - high), 0.0)
        error = np.where(fd.kink, bracket_error, smooth_error)
        error = np.where(np.isnan(error), np.inf, error)
        total = tolerance + fd.tolerance + np.where(fd.kink, 1e-6 * (np.abs(low) + np.abs(high)), 0.0)
        return error, error / total, total


def _leaf_findings(kind, index, analytic, torch64, torch_low, fd, dtype, depth, floor):
    """The pair of findings (vs torch, vs FD) for one leaf, with the joint classification."""
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
    # where torch's result is NaN/inf but scratch_grad's is finite, torch has no answer (e.g. the
    # second derivative of std at zero variance): those entries are not judged
    undefined = np.zeros(torch64.shape, dtype=bool)
    if analytic64.shape == torch64.shape:
        undefined = ~np.isfinite(torch64) & np.isfinite(analytic64)
        if undefined.any():
            torch64 = np.where(undefined, analytic64, torch64)
            if torch_low is not None:
                torch_low = np.where(undefined, analytic64, torch_low)
    versus_torch = _compare_to_torch(torch_check, index, analytic, torch64, torch_low, dtype, depth, None, floor)
    if versus_torch.classification == "shape mismatch" or fd is None:
        return [versus_torch]
    tol_analytic = result_tolerance(torch64, dtype, depth, torch_low, floor, analytic64)
    tol_torch = result_tolerance(torch64, np.float64, depth, torch_low, floor, analytic64)
    if fd.direction is not None:            # projection mode: compare <gradient, v> with D_v L
        v = np.abs(fd.direction)
        analytic_fd = np.sum(analytic64 * fd.direction)
        torch_fd = np.sum(torch64 * fd.direction)
        tol_analytic, tol_torch = np.sum(v * tol_analytic), np.sum(v * tol_torch)
    else:
        analytic_fd, torch_fd = analytic64, torch64
    a_error, a_ratio, a_total = _fd_errors(analytic_fd, fd, tol_analytic)
    _, t_ratio, _ = _fd_errors(torch_fd, fd, tol_torch)
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
        classification = ("reference undefined (torch gives NaN at %d of %d entries, a singular point; "
                          "not judged there)" % (int(undefined.sum()), undefined.size))
    elif agrees_torch:
        classification = "agree" if agrees_fd else ("kink" if kink_at(position) or kinks else
                                                    "finite-difference noise")
    elif kink_at(versus_torch.position):
        classification = "kink/convention (subgradient differs from torch's)"
    elif agrees_fd and not torch_agrees_fd:
        # scratch_grad is confirmed by finite differences on a smooth stretch and torch is not:
        # the reference is wrong here (torch's own autograd quirk); a warning, not a failure
        classification = "reference mismatch (scratch_grad agrees with finite differences, torch does not)"
        agrees_torch = True
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
    if not agrees_torch:
        versus_fd.passed = agrees_fd
        if per_entry:   # the torch finding shows the FD value at its own worst entry, for the message
            versus_torch.fd = _at(fd.value, versus_torch.position)
            versus_torch.fd_left = _at(fd.left, versus_torch.position)
            versus_torch.fd_right = _at(fd.right, versus_torch.position)
    return [versus_torch, versus_fd]


# ---- checking a program -----------------------------------------------------------------------------

def check_program(program, *, second_order=None, finite_differences=True, fd_mode="auto", seed=0,
                  objective=None, label=None):
    """Compare forward, first and (optionally) second order of `program` three ways.

    second_order: None = when every op is declared twice differentiable. objective: an optional
    replacement for the float64 objective used by finite differences, objective(leaves) -> (L, |L|)
    (check_fn passes the user's function itself). Returns a CheckReport; never raises on a mismatch.
    """
    rng = np.random.default_rng(seed)
    dtype = program.dtype
    low_precision = dtype != np.float64
    report = CheckReport(program, label or program.name or "program")
    findings = report.findings
    depth = program.depth
    wanted = program.differentiable_leaves()
    if second_order is None:
        second_order = program.twice_differentiable() and bool(wanted)
    directions = [rng.uniform(-1, 1, size=np.shape(program.leaves[k])) for k in wanted] if second_order else None

    try:
        t_out64, t_grad64, t_second64 = program.astype(np.float64).run_torch(np.float64,
                                                                            second_order_directions=directions)
        t_out_low = t_grad_low = t_second_low = None
        if low_precision:
            t_out_low, t_grad_low, t_second_low = program.run_torch(dtype, second_order_directions=directions)
    except Exception as exc:  # noqa: BLE001 - a broken reference is reported, not raised
        findings.append(_raised("forward", 0, (), dtype, "the torch reference", exc))
        return report
    if not low_precision:
        # float64 is calibrated too: torch's float32 run measures how much this computation
        # amplifies rounding (1/std near zero variance...); tolerance.py scales it to float64
        try:
            t_out_low, t_grad_low, t_second_low = program.astype(np.float32).run_torch(
                np.float32, second_order_directions=directions)
        except Exception:  # noqa: BLE001 - no calibration then; the rounding model still applies
            t_out_low = t_grad_low = t_second_low = None
    try:
        outputs, grads, _ = program.scratch_gradients()
    except Exception as exc:  # noqa: BLE001
        findings.append(_raised("vjp_torch", 0, (), dtype, "scratch_grad", exc))
        return report

    # The natural scale of the problem: a cotangent entry times an input value. Terms of that size
    # are summed into every gradient; when they cancel (softmax's gradient against a constant
    # cotangent, var of equal values) the result is ~0 but its rounding error is not (see
    # tolerance.py). Forward results are summed from terms of the inputs' size.
    largest_leaf = max((float(np.max(np.abs(v))) for v in program.leaves if np.size(v)), default=0.0)
    largest_cotangent = max((float(np.max(np.abs(c))) for c in program.cotangents if np.size(c)), default=0.0)
    natural = largest_cotangent * max(1.0, largest_leaf)
    for k, (out, ref) in enumerate(zip(outputs, t_out64)):
        data = getattr(out, "data", out)
        expected = t_out_low[k].dtype if low_precision else ref.dtype
        findings.append(_compare_to_torch("forward", k, data, ref, None if t_out_low is None else t_out_low[k],
                                          dtype, depth, expected, max(1.0, largest_leaf)))

    program64 = program.astype(np.float64)
    scalar = objective or program64.scalar_raw
    points = list(program64.leaves)
    _, objective_scale = scalar(points)
    for j, k in enumerate(wanted):
        analytic = grads[j]
        if analytic.dtype != program.leaves[k].dtype:
            findings.append(Finding("vjp_torch", k, analytic.shape, str(analytic.dtype), False, math.inf,
                                    "dtype mismatch", detail=f"gradient of a {program.leaves[k].dtype} input "
                                                             f"has dtype {analytic.dtype}"))
            continue
        fd = differentiate(scalar, points, k, rng, fd_mode) if finite_differences else None
        floor = max(objective_scale / _input_scale(points[k]), natural)
        findings.extend(_leaf_findings("vjp", k, analytic, t_grad64[j], None if t_grad_low is None else t_grad_low[j],
                                       fd, dtype, 2 * depth + 1, floor))

    if second_order:
        try:
            second = _scratch_second_order(program, directions)
        except Exception as exc:  # noqa: BLE001
            findings.append(_raised("second_torch", 0, (), dtype, "scratch_grad (create_graph)", exc))
            return report
        # S = sum <dL/dx_i, w_i> sums first-derivative terms (natural size) times w
        direction_size = sum(float(np.sum(np.abs(w))) for w in directions)
        second_terms = natural * direction_size

        def first_gradient_objective(leaves):
            _, g, _ = program64.scratch_gradients(leaves)
            total = sum(float(np.sum(gi * w)) for gi, w in zip(g, directions))
            absolute = sum(float(np.sum(np.abs(gi) * np.abs(w))) for gi, w in zip(g, directions))
            return total, absolute + second_terms

        _, second_scale = first_gradient_objective(points)
        for j, k in enumerate(wanted):
            fd = differentiate(first_gradient_objective, points, k, rng, "projection") if finite_differences else None
            floor = second_scale / _input_scale(points[k])
            findings.extend(_leaf_findings("second", k, second[j], t_second64[j],
                                           None if t_second_low is None else t_second_low[j], fd, dtype,
                                           4 * depth + 2, floor))
    return report


def _input_scale(x):
    """max(|x|, 1): the scale a derivative with respect to x divides the objective's terms by."""
    return max(float(np.max(np.abs(x))) if np.size(x) else 1.0, 1.0)


def _scratch_second_order(program, directions):
    """Gradient of S = sum_i <dL/dx_i, w_i> with respect to every leaf (grad of grad)."""
    from ..engine import Variable, grad
    from ..ops import mul, sum as total
    _, first, variables = program.scratch_gradients(create_graph=True)
    wanted = [variables[k] for k in program.differentiable_leaves()]
    s = None
    for g, w in zip(first, directions):
        if isinstance(g, Variable) and g.requires_grad:
            term = total(mul(g, np.asarray(w, dtype=g.dtype)))
            s = term if s is None else s + term
    if s is None:   # every first gradient is a constant: the second derivative is zero
        return [np.zeros(v.shape, dtype=v.dtype) for v in wanted]
    result = grad(s, wanted, allow_unused=True)
    return [np.zeros(v.shape, dtype=v.dtype) if r is None else r for r, v in zip(result, wanted)]


# ---- public entry points ------------------------------------------------------------------------------

def check_fn(fn, inputs, *, cotangent=None, second_order=None, seed=0, fd_mode="auto", name=None,
             raise_on_failure=True):
    """Check the gradients of fn(*Variables) three ways: scratch_grad, torch.autograd, finite differences.

    fn is run once on Variables to record the ops it calls; torch runs the same ops through the
    registry's references; finite differences call fn itself on float64 inputs. Float array
    inputs are differentiated. cotangent: the weight of each output in the scalar L (random if
    None). Raises CheckFailure on a mismatch (or returns the report with raise_on_failure=False).
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
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        total = sum(float(np.sum(np.asarray(r.data, dtype=np.float64) * c)) for r, c in zip(results, cotangents))
        absolute = sum(float(np.sum(np.abs(np.asarray(r.data, dtype=np.float64)) * np.abs(c)))
                       for r, c in zip(results, cotangents))
        return total, absolute

    report = check_program(program, second_order=second_order, seed=seed, fd_mode=fd_mode, objective=objective)
    if raise_on_failure and not report.passed:
        raise CheckFailure(report)
    return report


def check_sample(spec, inputs, params, *, cotangent_gen=None, second_order=None, seed=0, fd_mode="auto"):
    """One sampled call of a registry op, checked three ways (a CheckReport)."""
    program = single_op_program(spec, inputs, params, cotangent_gen=cotangent_gen,
                                rng=np.random.default_rng(seed))
    if second_order is None:
        second_order = spec.twice_differentiable
    return check_program(program, second_order=second_order and bool(program.differentiable_leaves()),
                         seed=seed, fd_mode=fd_mode, label=spec.name)


def check_op(name, inputs=None, params=None, *, dtypes=("float64", "float32"), samples=6, seed=0,
             second_order=None, raise_on_failure=True):
    """Check a registry op three ways: on the given inputs, or on `samples` draws of its sampler
    per dtype (non-smooth ops get a third of their draws exactly at kinks and ties).

    Returns the list of CheckReports; raises CheckFailure on the first failing one unless
    raise_on_failure=False."""
    from ..ops import REGISTRY
    from ..ops.sampling import sample_inputs
    from .gen import RandomGen
    spec = REGISTRY[name] if isinstance(name, str) else name
    reports = []
    if inputs is not None:
        inputs = tuple(np.asarray(v) if not np.isscalar(v) else v for v in inputs)
        reports.append(check_sample(spec, inputs, params or {}, second_order=second_order, seed=seed))
    else:
        for dtype in dtypes:
            for k in range(samples):
                gen = RandomGen(seed=(seed, k), dtype=dtype, kinks=not spec.smooth and k % 3 == 2)
                drawn_inputs, drawn_params = sample_inputs(spec, gen)
                reports.append(check_sample(spec, drawn_inputs, drawn_params, cotangent_gen=gen,
                                            second_order=second_order, seed=seed + k))
    if raise_on_failure:
        for report in reports:
            if not report.passed:
                raise CheckFailure(report)
    return reports
