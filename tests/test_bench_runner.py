"""The benchmark runner, run once in --quick mode with 2 rounds: every available implementation must agree with
NumPy by hand, the JSON must have its documented structure, and a wrong implementation must be excluded.
Timings are never asserted (they live in benchmarks/, as ratios)."""
import contextlib
import io
import json
import math
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # benchmarks/ sits beside the package; it is not installed with it
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import implementations, runner, suite  # noqa: E402
from benchmarks.workloads import MLP_CONFIGS, QUICK_SCALING_LENGTHS  # noqa: E402

ROUNDS = 2
STATUSES = {"ok", "disagrees", "error", "n/a", "skipped", "not installed", "unavailable"}
LABELS = [spec.label for spec in implementations.IMPLEMENTATIONS]
EXPECTED_WORKLOADS = ([config.name for config in MLP_CONFIGS] + ["per_op_overhead"]
                      + [f"chain_{length:.0e}".replace("+0", "") for length in QUICK_SCALING_LENGTHS])
OPTIONAL = {spec.label: spec.library for spec in implementations.IMPLEMENTATIONS if spec.optional}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bench")
    json_path, plot_path = directory / "bench.json", directory / "bench.png"
    environ_before = dict(os.environ)
    with contextlib.redirect_stderr(io.StringIO()) as progress, contextlib.redirect_stdout(io.StringIO()) as out:
        exit_code = runner.main(["--quick", "--repeats", str(ROUNDS), "--json", str(json_path),
                                 "--plot", str(plot_path)])
    return SimpleNamespace(exit_code=exit_code, report=json.loads(json_path.read_text()), plot_path=plot_path,
                           environ_changed=dict(os.environ) != environ_before, progress=progress.getvalue(),
                           output=out.getvalue())


def statuses(report, label):
    return {workload["name"]: workload["results"][label]["status"] for workload in report["workloads"]}


def test_json_structure(bench):
    report = bench.report
    assert report["schema_version"] == 1
    settings = report["settings"]
    assert settings["quick"] is True and settings["threads"] == 1 and settings["repeats"] == ROUNDS
    assert settings["thread_pinning"] and settings["malloc"]["applied_by"] and settings["memory_method"]
    assert list(report["implementations"]) == LABELS
    for info in report["implementations"].values():
        assert info["status"] in {"available", "not installed", "unavailable"}
    assert [workload["name"] for workload in report["workloads"]] == EXPECTED_WORKLOADS
    for workload in report["workloads"]:
        assert workload["unit"] in {"us/step", "us/op", "us/node"}
        assert list(workload["results"]) == LABELS
        for label, result in workload["results"].items():
            assert result["status"] in STATUSES, (workload["name"], label, result)
            if result["status"] != "ok":
                assert result["detail"], (workload["name"], label)
                continue
            assert result["agreement"]["agrees"] is True
            assert 0 < result["min"] <= result["median"] <= result["max"]
            expected_rounds = ROUNDS if workload["kind"] != "chain" else min(ROUNDS, 3)
            assert len(result["samples"]) == expected_rounds
            assert math.isclose(result["ratio_to_numpy"] * workload["results"]["numpy"]["median"], result["median"])
            reference = workload["results"]["numpy"]["samples"]
            paired = sorted(s / r for s, r in zip(result["samples"], reference))
            assert result["paired_ratio_to_numpy"] == pytest.approx(
                (paired[(len(paired) - 1) // 2] + paired[len(paired) // 2]) / 2)
            assert "ratio_to_torch" in result
            if workload["kind"] == "chain":
                assert isinstance(result.get("peak_memory_bytes"), int) or result.get("memory_error")
    assert report["parity_suite"]["status"] in {"ok", "partial", "skipped"}


def test_reference_and_torch_run_every_workload(bench):
    assert set(statuses(bench.report, "numpy").values()) == {"ok"}
    assert set(statuses(bench.report, "torch").values()) == {"ok"}
    prealloc = statuses(bench.report, "numpy-prealloc")
    small_nets = ("mlp_784_40_10_sigmoid_mse_b20_f64", "mlp_784_40_10_sigmoid_mse_b20_f32")
    assert [prealloc.pop(name) for name in small_nets] == ["ok", "ok"]
    assert set(prealloc.values()) == {"n/a"}


@pytest.mark.parametrize("label", ["scratch_grad", "scratch_grad-compiled"])
def test_scratch_grad_agrees_on_every_workload(bench, label):
    """Never skipped: while the engine is absent the runner must say so; once present it must agree everywhere
    (compiled too: the quick run's chains stay within the compiled chain limit)."""
    if not (REPO_ROOT / "scratch_grad" / "engine.py").exists():
        assert bench.report["implementations"][label]["status"] == "unavailable"
        return
    assert bench.report["implementations"][label]["status"] == "available"
    failures = {workload["name"]: workload["results"][label] for workload in bench.report["workloads"]
                if workload["results"][label]["status"] != "ok"}
    assert not failures


@pytest.mark.parametrize("label", sorted(OPTIONAL))
def test_optional_competitor_agrees(bench, label):
    pytest.importorskip(OPTIONAL[label])
    results = statuses(bench.report, label)
    assert set(results.values()) <= {"ok", "n/a", "skipped"}, results
    assert "ok" in results.values()


def test_exit_code_and_environment(bench):
    assert bench.exit_code == 0
    assert not bench.environ_changed, "thread env vars set for the run must be restored afterwards"


def test_plot_written_when_matplotlib_is_installed(bench):
    pytest.importorskip("matplotlib")
    assert bench.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def fake_implementation(label, make_chain):
    spec = implementations.Implementation(label, "fake", "fake", optional=True)
    return implementations.LoadedImplementation(spec, "available", module=SimpleNamespace(make_chain=make_chain))


def test_wrong_or_crashing_implementations_are_excluded_not_timed():
    """The agreement check must fail for a slightly wrong gradient, a NaN, a wrong dtype, and an exception."""
    reference = implementations.load(implementations.IMPLEMENTATIONS[0])
    timed_calls = []

    def altered(change):
        def make_chain(ops, length, x0):
            right = reference.make_chain(ops, length, x0)

            def forward_backward():
                timed_calls.append(change.__name__)
                value, grad = right()
                return change(value, grad)

            return forward_backward

        return make_chain

    def grad_off_by_a_thousandth(value, grad):
        return value, grad * 1.001

    def nan_grad(value, grad):
        return value, np.full_like(grad, np.nan)

    def float32_grad(value, grad):
        return value, grad.astype(np.float32)

    def raises(value, grad):
        raise RuntimeError("engine exploded")

    changes = [grad_off_by_a_thousandth, nan_grad, float32_grad, raises]
    candidates = [reference] + [fake_implementation(change.__name__, altered(change)) for change in changes]
    results = suite.run_per_op_workload(candidates, suite.Settings.make(quick=True, repeats=2))["results"]
    assert results["numpy"]["status"] == "ok"
    assert results["grad_off_by_a_thousandth"]["status"] == "disagrees"
    assert results["nan_grad"]["status"] == "disagrees"
    assert "dtype float32" in results["float32_grad"]["detail"]
    assert results["raises"]["status"] == "error" and "engine exploded" in results["raises"]["detail"]
    assert timed_calls == [change.__name__ for change in changes], "only the agreement check may call them"


def test_missing_optional_library_is_reported_as_not_installed():
    ghost = implementations.Implementation("ghost", "benchmarks.impl_ghost", "no_such_library_for_bench", True)
    loaded = implementations.load(ghost)
    assert (loaded.status, loaded.available) == ("not installed", False)


def test_chain_samples_start_from_a_trimmed_heap_and_other_samples_do_not(monkeypatch):
    """Long chains free ~1 GB that glibc would otherwise consolidate inside the next implementation's sample."""
    from benchmarks import measure

    events = []
    monkeypatch.setattr(measure, "release_free_memory", lambda: events.append("trim"))
    functions = {"a": lambda: events.append("a"), "b": lambda: events.append("b")}
    estimates = {"a": 1.0, "b": 1.0}           # one call per sample
    measure.time_interleaved(functions, repeats=2, target_sample_seconds=0.0, estimated_seconds=estimates,
                             release_memory=True)
    assert events == ["trim", "a", "trim", "b", "trim", "b", "trim", "a"]
    events.clear()
    measure.time_interleaved(functions, repeats=2, target_sample_seconds=0.0, estimated_seconds=estimates)
    assert "trim" not in events and events.count("a") == events.count("b") == 2

    calls = []

    def record(functions, *args, **kwargs):
        calls.append((args, kwargs))
        return {label: measure.Timing([1e-3]) for label in functions}

    monkeypatch.setattr(suite, "time_interleaved", record)
    settings = suite.Settings.make(quick=True, repeats=1)
    reference = [spec for spec in implementations.load_all() if spec.label == implementations.REFERENCE]
    suite.run_scaling_workloads(reference, settings)
    suite.run_per_op_workload(reference, settings)
    assert [args[-1] for args, _ in calls] == [True] * len(settings.scaling_lengths) + [False]


def test_progress_says_what_it_times_as_it_goes(bench):
    """One line per workload on stderr, in the order they run, naming what is timed and how; the
    report itself goes to stdout."""
    lines = [line for line in bench.progress.splitlines() if line.startswith("[")]
    names = [workload["name"] for workload in bench.report["workloads"]]
    timed = [line for line in lines if any(f"] {name} (" in line for name in names)]
    assert [next(name for name in names if f"] {name} (" in line) for line in timed] == names
    assert all("against NumPy by hand" in line and f"timing {min(ROUNDS, 3)} round" in line for line in timed)
    assert any("peak memory" in line for line in lines) and any("parity suite" in line for line in lines)
    assert "\r" not in bench.progress, "no live bar when stderr is not a terminal"
    assert bench.output.startswith("scratch_grad benchmarks") and "[1/" not in bench.output


def _with_a_missing_library(report, missing="mygrad"):
    """The run's report as if `missing` were not installed (it is, in the test extra)."""
    report = json.loads(json.dumps(report))
    report["implementations"][missing].update(status="not installed", detail="`import mygrad` finds no module")
    for workload in report["workloads"]:
        workload["results"][missing] = {"status": "not installed", "detail": "`import mygrad` finds no module"}
    return report


def test_a_missing_library_is_named_once_at_the_top_and_left_out_of_tables_and_chart(bench):
    from benchmarks import report as reporting
    report = _with_a_missing_library(bench.report)
    text = reporting.text_report(report)
    header, _, tables = text.partition("\n== ")
    assert "mygrad (not installed)" in header and "mygrad: not installed" in header
    assert "mygrad" not in tables
    assert "mygrad" not in reporting.ran(report) and "numpy" in reporting.ran(report)
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    figure = reporting.chart(report)
    legends = {text.get_text() for axes in figure.axes if axes.get_legend() for text in axes.get_legend().get_texts()}
    plt.close(figure)
    assert "mygrad" not in legends and {"numpy", "torch", "scratch_grad"} <= legends
    assert legends <= set(reporting.ran(report))


def test_missing_implementations_are_announced_before_any_timing():
    from benchmarks.progress import BenchProgress
    stream = io.StringIO()
    ghost = implementations.load(implementations.Implementation("ghost", "benchmarks.impl_ghost", "no_such_lib", True))
    runner._say_missing(BenchProgress(phases=1, stream=stream), [ghost])
    assert stream.getvalue() == "ghost: not installed (pip install no_such_lib): `import no_such_lib` finds no module\n"
