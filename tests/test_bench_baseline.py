"""`--baseline REF`: scratch_grad as committed at a git ref runs beside the working tree, checked like
any implementation. Timings are never asserted."""
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # benchmarks/ sits beside the package; it is not installed with it
    sys.path.insert(0, str(REPO_ROOT))

import scratch_grad  # noqa: E402
from benchmarks import baseline, implementations, suite  # noqa: E402


@pytest.fixture(scope="module")
def head():
    try:
        baseline._git("rev-parse", "--verify", "HEAD^{commit}")
    except baseline.BaselineError as error:
        pytest.skip(f"not a git checkout with commits ({error})")
    return baseline.load_baseline("HEAD")


def test_baseline_is_the_exported_engine_not_the_working_tree(head):
    assert head.available, head.detail
    assert head.label == "scratch_grad@HEAD"
    engine = head.module.sg
    assert engine is not scratch_grad and engine.__name__ == "scratch_grad_at_HEAD"
    assert engine.Variable is not scratch_grad.Variable
    assert not Path(engine.__file__).is_relative_to(REPO_ROOT), engine.__file__   # a git archive export
    assert head.version().endswith(baseline._git("rev-parse", "--short", "HEAD").strip())


def test_baseline_is_checked_against_numpy_then_timed_beside_the_working_tree(head):
    reference = implementations.load(implementations.IMPLEMENTATIONS[0])
    current = implementations.load(next(spec for spec in implementations.IMPLEMENTATIONS
                                        if spec.label == "scratch_grad"))
    results = suite.run_per_op_workload([reference, current, head], suite.Settings.make(quick=True, repeats=2))
    statuses = {label: result["status"] for label, result in results["results"].items()}
    assert statuses == {"numpy": "ok", "scratch_grad": "ok", "scratch_grad@HEAD": "ok"}
    assert results["results"]["scratch_grad@HEAD"]["ratio_to_numpy"] > 0


def test_an_unknown_ref_is_reported_not_raised():
    loaded = baseline.load_baseline("no-such-ref-for-the-baseline")
    assert (loaded.status, loaded.available) == ("unavailable", False)
    assert "no-such-ref-for-the-baseline" in loaded.detail


def test_labels_name_their_ref():
    assert baseline.ref_of(baseline.label_for("main~3")) == "main~3"
    assert baseline.ref_of("scratch_grad") is None
