"""What a check reports: one Finding per comparison, gathered in a CheckReport, raised as CheckFailure.

A Finding is one comparison (a forward output, or one leaf's gradient against one reference, or one of
the engine's contract invariants) with its verdict and its evidence: the worst entry, the error and
tolerance there, and the analytic value beside each reference (torch, finite differences with their
one-sided values, the high-precision reference). Its classification names what the disagreement
means (oracle.py's module doc lists them); a failing report's message is gradcheck's "numerical: ...
analytical: ..." for every failure.
"""
import math
from dataclasses import dataclass, field

import numpy as np

CHECKS = ("forward", "vjp_torch", "vjp_fd", "second_torch", "second_fd", "jvp_torch", "jvp_fd", "forward_mp", "vjp_mp",
          "invariants")
CHECK_TITLES = {"forward": "forward", "vjp_torch": "VJP vs torch", "vjp_fd": "VJP vs FD",
                "second_torch": "2nd order vs torch", "second_fd": "2nd order vs FD",
                "jvp_torch": "JVP vs torch.func", "jvp_fd": "JVP vs FD",
                "forward_mp": "forward vs high precision", "vjp_mp": "VJP vs high precision",
                "invariants": "invariants"}
# classifications that pass: scratch_grad agrees with the reference that can judge it
WARNINGS = ("finite-difference noise", "kink", "reference mismatch", "reference undefined", "reference imprecise")


class CheckFailure(AssertionError):
    """Raised when a check fails; `.report` holds the CheckReport (its str is the message)."""

    def __init__(self, report, extra=""):
        self.report = report
        super().__init__(report.message() + extra)


@dataclass
class Finding:
    """One comparison: a forward output, one leaf's gradient against one reference, or an invariant."""
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
    mp: float = math.nan               # the high-precision reference (testing/high_precision.py)
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
    engine: str = "scratch_grad"       # the engine whose answers were checked

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
        if self.engine != "scratch_grad":
            lines[0] += f", engine {self.engine}"
        for f in self.failures():
            lines.append(describe(f, program, self.engine))
        if len(program.steps) == 1 and program.steps[0].params and self.label in program.op_names():
            lines.append(f"  params: {program.steps[0].params}")
        if self.reproducer:
            lines.append(f"  standalone reproducer: {self.reproducer}")
        return "\n".join(lines)

    __str__ = message


def describe(f, program=None, engine="scratch_grad"):
    """A failure as lines: the check, the input, its classification, then the worst entry with the
    analytic value beside each reference that judged it."""
    target = f"output {f.index}" if f.check.startswith(("forward", "jvp_torch")) else f"input {f.index}"
    if f.check == "jvp_fd":
        target = "<cotangent, J t>"
    if f.check == "invariants":
        target = f"input {f.index}" if f.index >= 0 else "program"
    head = f"- {CHECK_TITLES.get(f.check, f.check)}: {target}, shape {f.shape}, dtype {f.dtype}: {f.classification}"
    if f.detail and not np.isfinite(f.ratio) and math.isnan(f.analytic):
        return head + f"\n    {f.detail}"
    where = "projection u^T J v" if f.projected else f"entry {f.position}"
    lines = [head, f"    largest error at {where}: {f.error:.3e} = {f.ratio:.3g} x tolerance {f.tolerance:.3e}"]
    lines.append(f"    {engine:<20}{f.analytic:.10g}")
    if not math.isnan(f.torch):
        lines.append(f"    torch               {f.torch:.10g}")
    if not math.isnan(f.fd):
        lines.append(f"    finite differences  {f.fd:.10g}   (one-sided: left {f.fd_left:.6g}, right {f.fd_right:.6g})")
    if not math.isnan(f.mp):
        lines.append(f"    high precision      {f.mp:.10g}   (mpmath, the op's own definition)")
    if f.detail:
        lines.append(f"    {f.detail}")
    return "\n".join(lines)


def raised(check, index, shape, dtype, who, exc):
    """A finding for an exception: `who` raised it (scratch_grad, the torch reference, ...)."""
    from .faults import describe as describe_exception
    return Finding(check, index, tuple(shape), str(dtype), False, math.inf, f"{who} raised",
                   detail=describe_exception(exc))
