"""The shared option layer of `scratch-grad` (scratch_grad/cli/options.py): every bad value of every
subcommand exits 2 with a message naming it, before any work and without a traceback; an empty run and a
campaign whose workers all crashed are never a pass; `ops --json` lists the registry."""
import json
import sys

import pytest

from scratch_grad.cli import SUBCOMMANDS, main as cli
from scratch_grad.ops import REGISTRY


def refused(argv, capsys):
    """The message of a refused command line (exit status 2, nothing run, no traceback)."""
    code = cli(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, out, err)
    assert "Traceback" not in err and not out.strip(), (argv, out, err)
    return err


@pytest.mark.parametrize("argv, message", [
    (["parity", "--samples", "-1"], "--samples: expected a non-negative integer, got -1"),
    (["parity", "--graphs", "-5"], "--graphs: expected a non-negative integer"),
    (["parity", "--samples", "0", "--graphs", "0"], "nothing to check"),
    (["parity", "--workers", "0"], "--workers: expected a positive integer, got 0"),
    (["parity", "--workers", "-3"], "--workers: expected a positive integer, got -3"),
    (["parity", "--seed", "-1"], "--seed: expected a non-negative integer, got -1"),
    (["parity", "--json", "/no/such/dir/x.json"], "--json /no/such/dir/x.json: directory /no/such/dir does not exist"),
    (["parity", "--html", "/no/such/dir/x.html"], "--html"),
    (["parity", "--op", "no_such_op"], "--op no_such_op: unknown op"),
    (["parity", "--op", "tahn"], "did you mean tan, tanh?"),
    (["parity", "--engine", "no_such_engine"], "--engine no_such_engine"),
    (["parity", "--import", "no_such_module_xyz"], "--import no_such_module_xyz: cannot import"),
    (["parity", "--import", "missing/ops.py"], "--import missing/ops.py: cannot import 'missing/ops.py': no such file"),
    (["fuzz", "--minutes", "-1"], "--minutes: expected a positive finite number, got -1"),
    (["fuzz", "--minutes", "0"], "--minutes: expected a positive finite number, got 0"),
    (["fuzz", "--minutes", "inf"], "--minutes: expected a positive finite number"),
    (["fuzz", "--workers", "0"], "--workers: expected a positive integer"),
    (["fuzz", "--shrink-seconds", "0"], "--shrink-seconds"),
    (["fuzz", "--max-ops", "0"], "--max-ops"),
    (["fuzz", "--op", "no_such_op"], "unknown op"),
    (["fuzz", "--engine", "student", "--op", "max_pool2d"], "does not provide max_pool2d"),
    (["mutate", "--workers", "-3"], "--workers: expected a positive integer"),
    (["mutate", "--seed", "-1"], "--seed: expected a non-negative integer"),
    (["mutate", "--json", "/no/such/dir/m.json"], "directory /no/such/dir does not exist"),
    (["mutate", "--op", "no_such_op"], "unknown op"),
    (["ops", "--json", "/no/such/dir/ops.json"], "directory /no/such/dir does not exist"),
    (["ops", "--import", "no_such_module_xyz"], "cannot import"),
    (["train", "--task", "random", "--seed", "-1"], "--seed: expected a non-negative integer"),
    (["train", "--task", "random", "--json", "/no/such/dir/t.json"], "does not exist"),
    (["bench", "--threads", "0"], "--threads: expected a positive integer"),
    (["bench", "--repeats", "-2"], "--repeats: expected a positive integer"),
    (["bench", "--workloads", "mlp,nonsense"], "--workloads mlp,nonsense: choose among"),
    (["bench", "--implementations", "numpy,nonsense"], "--implementations numpy,nonsense: choose among"),
    (["bench", "--baseline", "no-such-ref-xyz"], "--baseline no-such-ref-xyz: not a commit"),
    (["bench", "--json", "/no/such/dir/b.json"], "does not exist"),
])
def test_a_bad_option_exits_2_with_a_message_before_any_work(argv, message, capsys):
    assert message in refused(argv, capsys)


def test_an_unknown_command_exits_2_and_help_exits_0(capsys):
    assert cli(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert cli(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SUBCOMMANDS)
    assert cli(["parity", "--help"]) == 0        # argparse's exit, returned


def test_reproducers_must_be_a_directory_that_can_be_made(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    assert "exists and is not a directory" in refused(["parity", "--reproducers", str(tmp_path / "a_file")], capsys)
    assert "cannot create it" in refused(["fuzz", "--reproducers", str(tmp_path / "a_file" / "sub")], capsys)
    # a directory that can be made is checked by making it, and removed again: nothing is left behind
    from scratch_grad.cli.options import directory_problem
    assert directory_problem(str(tmp_path / "new" / "dir")) is None
    assert not (tmp_path / "new").exists()


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A directory holding op modules, made the current one; sys.path and sys.modules restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    names = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - names:
        del sys.modules[name]


def test_a_module_that_fails_to_import_exits_2_naming_the_error(user_module, capsys):
    (user_module / "raising_ops.py").write_text("raise ZeroDivisionError('a bug in the op module')\n")
    (user_module / "broken_import.py").write_text("import no_such_dependency_xyz\n")
    message = refused(["parity", "--import", "raising_ops"], capsys)
    assert "importing 'raising_ops' failed: ZeroDivisionError: a bug in the op module" in message
    message = refused(["ops", "--import", "./broken_import.py"], capsys)
    assert "No module named 'no_such_dependency_xyz'" in message


def test_an_empty_run_is_not_a_pass(capsys):
    # the example engine lacks max_pool2d: nothing is checked, which is a failure, not ALL PASS
    assert cli(["parity", "--engine", "student", "--op", "max_pool2d", "--samples", "2", "--graphs", "0",
                "--workers", "1", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "NOTHING CHECKED" in out and "ALL PASS" not in out
    # no mutant of the classes asked for applies to the op: nothing planted is not a pass either
    assert cli(["mutate", "--op", "exp", "--class", "kink_right", "--workers", "1"]) == 1
    assert "NOTHING PLANTED" in capsys.readouterr().err


def test_a_campaign_whose_workers_all_crash_fails(user_module, capsys):
    """The module imports in the command's process (its options are valid) and raises in every worker."""
    (user_module / "worker_bomb.py").write_text(
        "import multiprocessing\n"
        "if multiprocessing.parent_process() is not None:\n"
        "    raise RuntimeError('this module refuses to load in a worker')\n")
    code = cli(["fuzz", "--import", "worker_bomb", "--minutes", "0.05", "--workers", "1",
                "--database", str(user_module / "db"), "--reproducers", str(user_module / "reproducers")])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "CRASH of the fuzzer" in out and "refuses to load in a worker" in out
    assert "FAILED: the fuzzer itself crashed" in out and "NOTHING CHECKED" in out


def test_ops_lists_the_registry_as_json_with_the_imported_ops(user_module, capsys):
    (user_module / "cube_ops.py").write_text(
        "import numpy as np\n"
        "from scratch_grad.ops.registry import REAL, OpSpec, register\n"
        "from scratch_grad.ops.sampling import Real\n"
        "register(OpSpec('cube_scaled', lambda x, scale=1.0: scale * x ** 3,\n"
        "                (lambda g, out, x, scale=1.0: g * 3 * scale * x ** 2,),\n"
        "                lambda x, scale=1.0: scale * x ** 3, (REAL,), 'elementwise', params={'scale': Real(-2, 2)}))\n")
    try:
        assert cli(["ops", "--import", "cube_ops", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
    finally:
        REGISTRY.pop("cube_scaled", None)
    by_name = {op["name"]: op for op in listed}
    assert set(by_name) >= set(REGISTRY) | {"cube_scaled"}
    cube = by_name["cube_scaled"]
    assert cube["module"] == "cube_ops" and cube["kind"] == "elementwise" and cube["arity"] == 1
    assert cube["params"] == {"scale": {"type": "Real", "low": -2, "high": 2, "edges": []}}
    assert cube["domains"][0]["low"] == "-inf" and cube["twice_differentiable"] is True
    relu = by_name["relu"]
    assert relu["module"] == "scratch_grad.ops.elementwise" and relu["smooth"] is False and relu["kink_rule"]
    assert by_name["concatenate"]["arity"] is None and by_name["concatenate"]["variadic"] is True
