"""The `scratch-grad` command line: parity (the main job), fuzz, mutate, train, bench, ops."""
import argparse
import importlib
import sys

# subcommand -> (module, help); each module has main(argv) -> exit code
SUBCOMMANDS = {
    "parity": ("scratch_grad.testing.parity_cli", "check every registry op three ways (the main job)"),
    "fuzz": ("scratch_grad.testing.fuzz_cli", "long random-graph fuzzing campaign"),
    "mutate": ("scratch_grad.testing.mutate", "plant VJP bugs and report the checker's kill rate"),
    "train": ("scratch_grad.nn.train_cli", "train on MNIST, the random toy set or the regression set"),
    "bench": ("benchmarks.runner", "time scratch_grad side by side with NumPy by hand and torch"),
    "ops": ("scratch_grad.cli", "list the op registry"),
}


def list_ops(argv):
    from . import REGISTRY
    parser = argparse.ArgumentParser(prog="scratch-grad ops", description="List the registered ops.")
    parser.parse_args(argv)
    print(f"{'op':<18}{'kind':<13}{'inputs':<8}{'smooth':<8}{'2nd order':<10}domain / kink rule")
    for name, spec in sorted(REGISTRY.items()):
        domains = ", ".join(d.description for d in spec.domain)
        rule = f"; {spec.kink_rule}" if spec.kink_rule else ""
        arity = "n" if spec.variadic else str(spec.arity)
        print(f"{name:<18}{spec.kind:<13}{arity:<8}{'yes' if spec.smooth else 'no':<8}"
              f"{'yes' if spec.twice_differentiable else 'no':<10}{domains}{rule}")
    print(f"{len(REGISTRY)} ops")
    return 0


def _import_bench():
    try:
        return importlib.import_module("benchmarks.runner")
    except ModuleNotFoundError:
        # benchmarks/ sits beside the package in a clone; it is not installed with it
        from pathlib import Path
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        return importlib.import_module("benchmarks.runner")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        print("usage: scratch-grad {" + ",".join(SUBCOMMANDS) + "} [options]\n")
        for name, (_, text) in SUBCOMMANDS.items():
            print(f"  {name:<8} {text}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nscratch-grad: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    command, rest = argv[0], argv[1:]
    if command == "ops":
        return list_ops(rest)
    module = _import_bench() if command == "bench" else importlib.import_module(SUBCOMMANDS[command][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
