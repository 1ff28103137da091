"""The `scratch-grad` command line: one module per subcommand, sharing one option layer (options.py).

    scratch-grad parity   check every registry op three ways (the main job)       cli/parity.py
    scratch-grad fuzz     a random-graph fuzzing campaign                          cli/fuzz.py
    scratch-grad mutate   plant VJP bugs and report the checker's kill rate        cli/mutate.py
    scratch-grad train    the founding experiments                                 cli/train.py
    scratch-grad bench    scratch_grad side by side with NumPy by hand and torch   cli/bench.py
    scratch-grad ops      the op registry, as a table or JSON                      cli/ops.py

Each module has `build_parser()` and `main(argv) -> exit code` (argparse's exits included: `main` returns
2 for a bad option, never raises SystemExit); it parses, validates every option before
any work (options.validate), calls the library (scratch_grad.testing, scratch_grad.experiments, benchmarks/)
and prints. Also `python -m scratch_grad` and `python -m scratch_grad.cli`. A new subcommand is one module
here and one line in SUBCOMMANDS.
"""
import importlib
import sys

# subcommand -> help; the module scratch_grad.cli.<subcommand> has main(argv) -> exit code
SUBCOMMANDS = {
    "parity": "check every registry op three ways (the main job)",
    "fuzz": "random-graph fuzzing campaign (an op's own checks first with --op)",
    "mutate": "plant VJP bugs and report the checker's kill rate",
    "train": "train on MNIST, the random toy set or the regression set",
    "bench": "time scratch_grad side by side with NumPy by hand and torch (needs a checkout)",
    "ops": "list the op registry (--json for JSON)",
}


def usage():
    lines = ["usage: scratch-grad {" + ",".join(SUBCOMMANDS) + "} [options]", ""]
    lines += [f"  {name:<8} {text}" for name, text in SUBCOMMANDS.items()]
    lines += ["", "scratch-grad COMMAND --help for a command's options"]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(usage(), file=sys.stderr)
        print(f"\nscratch-grad: error: unknown command {command!r}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"{__name__}.{command}")
    try:
        return int(module.main(rest) or 0)
    except SystemExit as exit:      # argparse's --help (0) and its errors (2): returned, as every other status
        return exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)


__all__ = ["SUBCOMMANDS", "main"]
