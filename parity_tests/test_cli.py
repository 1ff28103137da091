"""The three commands of the parity suite, run as a user runs them: exit codes, tables, JSON."""
import json
import sys

import pytest

from scratch_grad.cli import main as cli
from scratch_grad.ops import REGISTRY


def test_parity_prints_the_table_and_summary_and_writes_json(tmp_path, capsys):
    path = tmp_path / "parity.json"
    code = cli(["parity", "--op", "tanh", "--op", "matmul", "--samples", "3", "--graphs", "40", "--workers", "1",
                "--json", str(path), "--reproducers", str(tmp_path)])
    output = capsys.readouterr().out
    assert code == 0, output
    header = output.splitlines()[0]
    for column in ("forward", "VJP vs torch", "VJP vs FD", "2nd order", "random graphs", "compiled=eager"):
        assert column in header
    assert any(line.startswith("tanh ") and "pass" in line for line in output.splitlines())
    assert "ALL PASS" in output.splitlines()[-1]
    data = json.loads(path.read_text())
    assert data["passed"] is True and set(data["ops"]) == {"tanh", "matmul"}
    assert data["ops"]["matmul"]["cells"]["vjp_torch"]["status"] == "pass"
    assert data["ops"]["matmul"]["cells"]["compiled"]["status"] == "pass"
    assert data["ops"]["matmul"]["cells"]["compiled"]["checks"] > 2      # a sample of each dtype and graphs
    from scratch_grad.ops import REGISTRY
    assert data["op_checks"] == sum(2 * (3 + len(REGISTRY[name].examples)) for name in ("tanh", "matmul"))


def test_parity_fails_when_compiled_code_differs_from_eager_mode(tmp_path, capsys, monkeypatch):
    """A compiler bug planted in this process (workers=1): fan-out gradients overwritten, not added."""
    from scratch_grad.compiler import codegen
    monkeypatch.setattr(codegen, "_ACCUMULATE", "{name} = t")
    code = cli(["parity", "--op", "mul", "--samples", "2", "--graphs", "30", "--workers", "1",
                "--reproducers", str(tmp_path), "--quiet"])
    output = capsys.readouterr().out
    assert code == 1
    assert "sg.compile differs from eager mode on random graph" in output


def test_parity_rejects_unknown_ops(capsys):
    assert cli(["parity", "--op", "no_such_op"]) == 2
    assert "unknown op" in capsys.readouterr().err


def test_mutate_reports_the_kill_rate_per_op_and_class_in_json(tmp_path, capsys):
    path = tmp_path / "mutate.json"
    code = cli(["mutate", "--op", "mul", "--op", "relu", "--op", "sum", "--workers", "1", "--json", str(path)])
    output = capsys.readouterr().out
    data = json.loads(path.read_text())
    assert {"planted", "killed", "kill_rate", "survivors"} <= set(data)
    assert data["planted"] > 0 and data["kill_rate"] == 1.0 and data["survivors"] == []
    assert set(data["per_op"]) == {"mul", "relu", "sum"}
    assert data["per_class"]["sign_flip"]["planted"] == 2 + 1 + 1       # mul has two inputs
    assert all(m["seconds"] >= 0 for m in data["mutants"])
    assert code == 0 and "kill rate 100.0%" in output


def test_fuzz_runs_a_timed_campaign_and_reports_examples_per_second(tmp_path, capsys):
    code = cli(["fuzz", "--op", "neg", "--minutes", "0.1", "--workers", "1", "--database", str(tmp_path / "db"),
                "--reproducers", str(tmp_path / "reproducers")])
    output = capsys.readouterr().out
    assert "fuzzing graphs containing 'neg' with 1 worker(s)" in output
    done = [line for line in output.splitlines() if line.startswith("done:")]
    assert done and "examples/s" in done[0]
    examples = int(done[0].split()[1])
    assert examples > 0
    assert code == (1 if "FAILURE" in output else 0)


@pytest.fixture
def unregister_plugin_op():
    """--import registers the plugin's op in this process too: remove it after the test."""
    yield
    REGISTRY.pop("logcosh_extra", None)
    sys.modules.pop("parity_tests.extra_op_plugin", None)


def test_parity_imports_a_module_that_registers_more_ops_in_every_worker(tmp_path, capsys, unregister_plugin_op):
    # two spawned workers: each imports the plugin module, so the extra op exists there too
    code = cli(["parity", "--import", "parity_tests.extra_op_plugin", "--op", "logcosh_extra", "--samples", "2",
                "--graphs", "0", "--workers", "2", "--reproducers", str(tmp_path)])
    output = capsys.readouterr().out
    assert code == 0, output
    assert any(line.startswith("logcosh_extra ") for line in output.splitlines())


def test_each_failing_op_sample_reports_its_message_and_reproducer(tmp_path):
    """Every failing sample (up to three), not only those also run through sg.compile, gets its
    message and reproducer."""
    from scratch_grad.testing.parity import _op_task

    from .broken_ops import BROKEN_LOGCOSH, registered
    with registered(BROKEN_LOGCOSH):
        row = _op_task("logcosh_broken", "float64", 3, 0, str(tmp_path))["row"]
    # the same failure three times: printed once (the smallest sample), one reproducer (named by the failure)
    assert len(row.messages()) == 1 and "logcosh_broken" in row.messages()[0]
    assert len(list(tmp_path.glob("*.py"))) == 1
