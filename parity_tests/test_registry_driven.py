"""The suite is driven by the registry: an op added to it is collected, checked by the per-op
properties, the graph fuzzer and `scratch-grad parity` with no test written; a broken one is
caught, shrunk to a minimal graph and reproduced by a standalone script."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scratch_grad.cli import main as cli
from scratch_grad.testing import CheckFailure, op_names
from scratch_grad.testing.parity import run_parity
from scratch_grad.testing.strategies import graph_property, op_property

from .broken_ops import BROKEN_LOGCOSH, LOGCOSH, registered

ROOT = Path(__file__).resolve().parent.parent


def test_an_op_registered_by_a_module_is_collected_by_the_suite_with_no_test_written():
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "parity_tests.extra_op_plugin",
                          "parity_tests/test_registry_ops.py"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stdout + run.stderr
    collected = run.stdout
    assert "test_op_parity[logcosh_extra-float64]" in collected
    assert "test_op_parity[logcosh_extra-float32]" in collected
    assert "test_op_parity[tanh-float32]" in collected     # and the registry's own ops, of course


def test_an_added_op_is_checked_by_the_properties_and_by_parity(reproducer_dir):
    assert LOGCOSH.name not in op_names()
    with registered(LOGCOSH):
        assert LOGCOSH.name in op_names()
        op_property(LOGCOSH, "float32", max_examples=15, derandomize=True, database=None)()
        result = run_parity(ops=[LOGCOSH.name], samples=4, graphs=120, workers=1)
    row = result.rows[LOGCOSH.name]
    assert result.passed, result.rows
    assert {"forward", "vjp_torch", "vjp_fd", "second"} <= set(row.cells)
    assert row.cells["graphs"].count > 0       # random graphs picked the new op up too


def test_a_broken_op_fails_the_per_op_property_as_an_engine_bug(tmp_path):
    with registered(BROKEN_LOGCOSH), pytest.raises(CheckFailure) as caught:
        op_property(BROKEN_LOGCOSH, "float32", max_examples=20, derandomize=True, database=None,
                    example_kwargs={"directory": str(tmp_path)})()
    failure = caught.value.report.failures()[0]
    assert failure.classification.startswith("engine bug")
    assert "logcosh_broken" in str(caught.value)


def test_a_broken_op_is_caught_in_graphs_shrunk_to_itself_and_reproduced_standalone(tmp_path):
    with registered(BROKEN_LOGCOSH), pytest.raises(CheckFailure) as caught:
        graph_property("float64", max_examples=100, require_op=BROKEN_LOGCOSH.name, max_ops=5, derandomize=True,
                       database=None,
                       example_kwargs={"directory": str(tmp_path)})()
    report = caught.value.report
    # hypothesis shrank the random graph to the broken op alone, on a 0-d input
    assert [step.spec.name for step in report.program.steps] == ["logcosh_broken"]
    assert all(leaf.ndim == 0 for leaf in report.program.leaves)
    assert report.failures()[0].classification.startswith("engine bug")
    path = Path(report.reproducer)
    assert path.parent == tmp_path and path.exists()
    source = path.read_text()
    assert "def scratch_program" in source and "def torch_program" in source
    assert "from parity_tests.broken_ops import" in source      # the op comes from where it was defined
    # standalone: a fresh interpreter, another directory, no PYTHONPATH
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "largest |scratch_grad - torch|" in run.stdout
    assert "engine bug" in run.stdout


def test_parity_cli_exits_non_zero_on_a_broken_op_and_zero_on_a_correct_one(tmp_path, capsys):
    with registered(BROKEN_LOGCOSH), registered(LOGCOSH):
        broken = cli(["parity", "--op", BROKEN_LOGCOSH.name, "--samples", "3", "--graphs", "0", "--workers", "1",
                      "--reproducers", str(tmp_path), "--json", str(tmp_path / "broken.json")])
        correct = cli(["parity", "--op", LOGCOSH.name, "--samples", "3", "--graphs", "0", "--workers", "1",
                       "--reproducers", str(tmp_path)])
    output = capsys.readouterr().out
    assert broken == 1 and correct == 0
    assert "FAIL" in output and "logcosh_broken" in output
    data = json.loads((tmp_path / "broken.json").read_text())
    assert data["failed_ops"] == ["logcosh_broken"] and data["passed"] is False
    assert data["ops"]["logcosh_broken"]["cells"]["vjp_torch"]["status"] == "fail"
    assert list(tmp_path.glob("logcosh_broken-*.py"))           # reproducers written for the failures
