"""A user's own op, checked as the user checks it: a module in a fresh directory, the documented commands run
from there in a subprocess, through a launcher that stands in for the `scratch-grad` console script (so the
current directory is not on sys.path unless --import puts it there), with scratch_grad found through
PYTHONPATH=<this checkout> only. One module has a planted bug (softsign's VJP without the square of its
denominator), the other the correct op; and the pytest plugin on the same modules in a fresh project."""
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOFTSIGN = '''
    import numpy as np
    import torch

    from scratch_grad.ops.registry import REAL, OpSpec, register


    def softsign(x):
        return x / (1 + np.abs(x))


    def softsign_vjp(g, out, x):
        return {gradient}


    register(OpSpec("{name}", softsign, (softsign_vjp,), torch.nn.functional.softsign, (REAL,), "elementwise"))
'''
PLANTED = SOFTSIGN.format(name="softsign_planted", gradient="g / (1 + abs(x))       # the bug: no square")
CORRECT = SOFTSIGN.format(name="softsign_ok", gradient="g / (1 + abs(x)) ** 2")
LAUNCHER = "import sys\nfrom scratch_grad.cli import main\nif __name__ == '__main__':\n    sys.exit(main())\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    directory = tmp_path_factory.mktemp("my_project")
    (directory / "planted_ops.py").write_text(textwrap.dedent(PLANTED))
    (directory / "good_ops.py").write_text(textwrap.dedent(CORRECT))
    bin_directory = tmp_path_factory.mktemp("bin")
    (bin_directory / "scratch-grad").write_text(LAUNCHER)
    return directory, bin_directory / "scratch-grad"


def environment():
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HYPOTHESIS", "SCRATCH_GRAD"))}
    env["PYTHONPATH"] = str(REPO)
    return env


def scratch_grad(project, *argv, timeout=300):
    directory, launcher = project
    return subprocess.run([sys.executable, str(launcher), *argv], cwd=directory, env=environment(),
                          capture_output=True, text=True, timeout=timeout)


def failure_blocks(output):
    return re.findall(r"^gradient check failed: (.*)$", output, re.MULTILINE)


def test_parity_finds_the_planted_bug_and_its_reproducer_fails_from_anywhere(project, tmp_path):
    done = scratch_grad(project, "parity", "--import", "planted_ops", "--op", "softsign_planted", "--samples", "6",
                        "--graphs", "4", "--workers", "1", "--reproducers", "found")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert failure_blocks(done.stdout)[0] == "op 'softsign_planted', dtype float64"     # the op alone, first
    assert "1 FAILED (softsign_planted)" in done.stdout.splitlines()[-1]
    scripts = sorted((project[0] / "found").glob("softsign_planted-float64-*.py"))
    assert scripts and str(project[0]) not in scripts[0].read_text()    # no absolute path of this machine
    elsewhere = subprocess.run([sys.executable, str(scripts[0])], cwd=tmp_path, env=environment(),
                               capture_output=True, text=True, timeout=300)
    assert elsewhere.returncode == 1, elsewhere.stdout[-2000:] + elsewhere.stderr[-2000:]


def test_parity_passes_the_correct_op_imported_by_path(project):
    done = scratch_grad(project, "parity", "--import", "./good_ops.py", "--op", "softsign_ok", "--samples", "6",
                        "--graphs", "4", "--workers", "1", "--reproducers", "found")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ALL PASS" in done.stdout.splitlines()[-1]


def test_fuzz_reports_the_shrunk_single_op_failure_first_and_stops_there(project):
    done = scratch_grad(project, "fuzz", "--import", "planted_ops", "--op", "softsign_planted", "--minutes", "1",
                        "--workers", "1", "--database", "db", "--reproducers", "fuzzed")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    first = re.search(r"^FAILURE -> (\S+)\n(.*?)\n\n", done.stdout, re.MULTILINE | re.DOTALL)
    assert first and first.group(2).startswith("gradient check failed: op 'softsign_planted'"), output[-3000:]
    assert "shape ()" in first.group(2)     # shrunk: the smallest input that shows the bug is a 0-d array
    assert "failed on its own checks, so no graphs" in done.stdout
    assert [p.name for p in (project[0] / "fuzzed").iterdir()] == [Path(first.group(1)).name]   # one reproducer
    assert "Hypothesis" not in output and "PLEASE REPORT" not in output and "Traceback" not in output


def test_ops_json_and_mutate_read_the_imported_op(project):
    listed = scratch_grad(project, "ops", "--import", "planted_ops", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    (entry,) = [op for op in json.loads(listed.stdout) if op["name"] == "softsign_planted"]
    assert entry["module"] == "planted_ops" and entry["arity"] == 1 and entry["kind"] == "elementwise"
    mutated = scratch_grad(project, "mutate", "--import", "good_ops", "--op", "softsign_ok", "--workers", "1")
    assert re.search(r"^kill rate \d+\.\d%: \d+ of \d+ planted mutants killed", mutated.stdout, re.MULTILINE), \
        mutated.stdout[-2000:] + mutated.stderr[-2000:]
    assert "softsign_ok" in mutated.stdout and mutated.returncode == (1 if "SURVIVORS" in mutated.stdout else 0)


def test_bench_outside_a_checkout_says_it_needs_one(project, tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "scratch_grad").symlink_to(REPO / "scratch_grad")     # the package without benchmarks/
    done = subprocess.run([sys.executable, str(project[1]), "bench", "--quick"], cwd=project[0],
                          env=dict(environment(), PYTHONPATH=str(tmp_path / "site")), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "checkout" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_the_pytest_plugin_fails_the_planted_op_and_passes_the_correct_one(project, tmp_path):
    """A fresh project: the two op modules and a one-line conftest; the plugin's items for both ops."""
    for name in ("planted_ops.py", "good_ops.py"):
        (tmp_path / name).write_text((project[0] / name).read_text())
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["scratch_grad.testing.pytest_plugin"]\n')
    done = subprocess.run([sys.executable, "-m", "pytest", "--sg-import", "planted_ops", "--sg-import", "good_ops.py",
                           "-k", "float64", "-p", "no:cacheprovider", "-p", "no:xdist", "-q"],
                          cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-4000:]
    failed = sorted(re.findall(r"^FAILED (\S+)", done.stdout, re.MULTILINE))
    assert failed == ["planted_ops.py::softsign_planted::graphs[float64]",
                      "planted_ops.py::softsign_planted::own[float64]"], output[-4000:]
    assert "2 failed, 2 passed" in done.stdout.splitlines()[-1]
    assert "gradient check failed: op 'softsign_planted', dtype float64" in done.stdout     # the oracle's message
    assert "standalone reproducer: reproducers/" in done.stdout


def readme_snippet():
    """The README's "check your own op" module, exactly as printed there."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- own-op -->\n```python\n(.*?)```", text, re.DOTALL)
    assert block, "README.md lost its <!-- own-op --> example"
    return block.group(1)


def test_the_readme_example_op_passes_and_its_documented_bug_fails_as_shown(tmp_path, project):
    """The README's my_ops.py, run with the README's command from a fresh directory: the correct op passes;
    the bug the README describes (the square dropped) fails with the README's first lines."""
    snippet = readme_snippet()
    assert "return g / (1 + abs(x)) ** 2" in snippet
    launcher = project[1]
    for name, source, code in (("good", snippet, 0),
                               ("bad", snippet.replace("return g / (1 + abs(x)) ** 2", "return g / (1 + abs(x))"), 1)):
        directory = tmp_path / name
        directory.mkdir()
        (directory / "my_ops.py").write_text(source)
        done = subprocess.run([sys.executable, str(launcher), "parity", "--import", "my_ops", "--op", "softsign",
                               "--samples", "8", "--graphs", "6", "--workers", "1"],
                              cwd=directory, env=environment(), capture_output=True, text=True, timeout=300)
        assert done.returncode == code, done.stdout[-3000:] + done.stderr[-3000:]
        if code:
            assert failure_blocks(done.stdout)[0] == "op 'softsign', dtype float64"
            assert ("VJP vs torch: input 0, shape (), dtype float64: engine bug (scratch_grad disagrees with torch "
                    "and finite differences)") in done.stdout
            assert "standalone reproducer: reproducers/softsign-float64-" in done.stdout
        else:
            assert "ALL PASS" in done.stdout.splitlines()[-1]
