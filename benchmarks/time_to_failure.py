"""Time to the first failure of a planted bug, as a user meets it: `parity --op` and `fuzz --op` on an op of
their own, brought in with --import from a module in a fresh directory.

    python -m benchmarks.time_to_failure [--repeats 3] [--json PATH]

Writes a module (a softsign whose VJP forgets the square of its denominator, and a correct one) into a
temporary directory and runs, there, in a subprocess each (so imports and process start are counted, as a
user waits for them):

    scratch-grad parity --import user_ops --op softsign_planted      the planted bug
    scratch-grad fuzz --import user_ops --op softsign_planted --minutes 1
    scratch-grad parity --import user_ops --op softsign_correct      a correct op: the time to its pass

and records the seconds to the first line that reports the failure (fuzz: "FAILURE ...", printed as soon
as the op's own shrunk failure is in; parity: the first line of its table or messages saying FAIL) and to
the exit, with the exit status and the load average (the machine is shared: read the numbers with it).
Goals (issue 15): parity --op within 15 s, the first fuzz failure within 10 s.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULE = "user_ops"
SOURCE = textwrap.dedent('''
    import numpy as np
    import torch

    import scratch_grad as sg
    from scratch_grad.ops.registry import REAL, OpSpec, register


    def softsign(x):
        return x / (1 + np.abs(x))


    def _planted_vjp(g, out, x):
        return g / (1 + abs(x))                     # the bug: d/dx softsign = 1 / (1 + |x|) ** 2


    def _correct_vjp(g, out, x):
        return g / (1 + abs(x)) ** 2


    register(OpSpec("softsign_planted", softsign, (_planted_vjp,), torch.nn.functional.softsign, (REAL,),
                    "elementwise"))
    register(OpSpec("softsign_correct", softsign, (_correct_vjp,), torch.nn.functional.softsign, (REAL,),
                    "elementwise"))
''')
COMMANDS = {
    "parity --op (planted bug)": (["parity", "--import", MODULE, "--op", "softsign_planted", "--quiet"], 1),
    "fuzz --op (planted bug)": (["fuzz", "--import", MODULE, "--op", "softsign_planted", "--minutes", "1"], 1),
    "parity --op (correct op)": (["parity", "--import", MODULE, "--op", "softsign_correct", "--quiet"], 0),
}


def first_failure_line(line):
    return line.startswith("FAILURE") or "FAIL" in line.split() or line.startswith("gradient check failed")


def timed(argv, directory):
    """(seconds to the first failure line or None, seconds to exit, exit status) of one command."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    started = time.perf_counter()
    first = None
    with subprocess.Popen([sys.executable, "-m", "scratch_grad", *argv], cwd=directory, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as process:
        for line in process.stdout:
            if first is None and first_failure_line(line):
                first = time.perf_counter() - started
        status = process.wait()
    return first, time.perf_counter() - started, status


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.time_to_failure", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, metavar="N", help="runs of each command (default 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the runs as JSON")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats: expected a positive integer")
    runs = []
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, MODULE + ".py").write_text(SOURCE)
        for repeat in range(args.repeats):
            for name, (command, expected) in COMMANDS.items():
                load = os.getloadavg()[0]
                first, total, status = timed(command, directory)
                runs.append({"command": name, "argv": command, "first_failure_seconds": first,
                             "exit_seconds": total, "status": status, "expected_status": expected,
                             "load_average": load})
                shown = "-" if first is None else f"{first:.1f} s"
                print(f"{name:<28} first failure {shown:>8}   exit {total:5.1f} s (status {status}, expected "
                      f"{expected})   load {load:.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "cpu_count": os.cpu_count()}, indent=2) + "\n")
    wrong = [run for run in runs if run["status"] != run["expected_status"]]
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
