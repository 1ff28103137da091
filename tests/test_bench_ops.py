"""benchmarks/bench_ops.py (per-op pytest-benchmark timings of every registry op) runs and checks before it times.

It is run here once with --benchmark-disable (each case called once, nothing timed or asserted on time)."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # benchmarks/ sits beside the package; it is not installed with it
    sys.path.insert(0, str(REPO_ROOT))

pytest.importorskip("pytest_benchmark")

from benchmarks import bench_ops  # noqa: E402
from scratch_grad.ops import REGISTRY  # noqa: E402


def test_every_registry_op_runs_on_both_engines():
    result = subprocess.run([sys.executable, "-m", "pytest", str(REPO_ROOT / "benchmarks" / "bench_ops.py"),
                             "--benchmark-disable", "-p", "no:xdist", "-p", "no:cacheprovider", "-q"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"{2 * len(REGISTRY)} passed" in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize("name, index", [("sin", 0), ("mul", 1), ("matmul", 0)])
def test_a_planted_wrong_gradient_fails_the_case_instead_of_being_timed(monkeypatch, name, index):
    spec = REGISTRY[name]
    right = spec.vjps[index]
    vjps = tuple((lambda g, out, *args, _right=right, **params: _right(g, out, *args, **params) * 1.001)
                 if k == index else vjp for k, vjp in enumerate(spec.vjps))
    monkeypatch.setitem(REGISTRY, name, dataclasses.replace(spec, vjps=vjps))
    bench_ops.checked.cache_clear()
    try:
        with pytest.raises(AssertionError, match=rf"op '{name}': the gradient of input {index} "
                                                 r"differs from torch's by .* scratch_grad .* torch "):
            bench_ops.checked(name)
    finally:
        bench_ops.checked.cache_clear()
        monkeypatch.undo()
    bench_ops.checked(name)     # the registry's own entry is back, and agrees: no error
