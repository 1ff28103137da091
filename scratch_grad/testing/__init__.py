"""scratch_grad.testing: the three-way gradient oracle, random graphs, reproducers, mutation testing.

    from scratch_grad.testing import check_fn, check_op
    check_fn(lambda x, w: sg.tanh(x @ w).sum(), [x, w])   # scratch_grad vs torch vs finite differences
    check_op("logsumexp")                                    # the op's sampler, float64 and float32

Each raises CheckFailure (an AssertionError) with a message naming the op or graph, the input, its
shape and dtype, the largest error and where, scratch_grad's value next to torch's and the finite
difference, and a classification: engine bug, finite-difference noise, kink/convention, reference
mismatch. torch is needed to check (it is the reference); hypothesis only for the shrinking
generator in `scratch_grad.testing.strategies` (pytest suite, `scratch-grad fuzz`).
"""
from .oracle import CHECKS, CheckFailure, CheckReport, Finding, check_fn, check_op, check_program, check_sample
from .graphs import build_graph, check_graph, fuzz_graphs, localize
from .program import Program, single_op_program, trace


def op_names():
    """The ops under test: every registry entry (never a hand-kept list)."""
    from ..ops import REGISTRY
    return sorted(REGISTRY)


__all__ = ["CHECKS", "CheckFailure", "CheckReport", "Finding", "Program", "build_graph", "check_fn", "check_graph",
           "check_op", "check_program", "check_sample", "fuzz_graphs", "localize", "op_names", "single_op_program",
           "trace"]
