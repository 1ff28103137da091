"""`scratch-grad parity`: the whole registry through the three-way oracle, as a table.

Exit status 0 when every cell passes, 1 otherwise. Deterministic for a given --seed.
"""
import argparse
import json
import sys


def build_parser():
    parser = argparse.ArgumentParser(
        prog="scratch-grad parity",
        description="Check every registry op three ways (scratch_grad vs torch.autograd vs finite differences): "
                    "forward values, VJPs, second order where declared, and random graphs containing the op.")
    parser.add_argument("--op", action="append", dest="ops", metavar="NAME",
                        help="check only this op (repeatable); default: the whole registry")
    parser.add_argument("--samples", type=int, default=40,
                        help="draws of each op's sampler per dtype (default 40; a quarter at edges, a third at kinks for "
                             "non-smooth ops)")
    parser.add_argument("--graphs", type=int, default=1200, help="random graphs per dtype (default 1200)")
    parser.add_argument("--dtype", action="append", dest="dtypes", choices=["float64", "float32"],
                        help="dtype to check (repeatable; default both)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw (default 0)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: min(2, cores))")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--reproducers", metavar="DIR", default="reproducers",
                        help="where failing checks write standalone reproducer scripts (default ./reproducers)")
    parser.add_argument("--import", action="append", dest="imports", default=[], metavar="MODULE",
                        help="import this module first (and in every worker): one that registers your own ops")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line and failures")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        import torch  # noqa: F401 - the reference
    except ImportError:
        print("scratch-grad parity needs torch (the reference): pip install 'scratch_grad[test]'", file=sys.stderr)
        return 2
    import importlib

    from ..ops import REGISTRY
    from .parity import format_table, run_parity, summary_line, to_json
    for module in args.imports:
        importlib.import_module(module)
    if args.ops:
        unknown = [n for n in args.ops if n not in REGISTRY]
        if unknown:
            print(f"scratch-grad parity: unknown op(s) {', '.join(unknown)}; see `scratch-grad ops`", file=sys.stderr)
            return 2

    def progress(done, total):
        if sys.stderr.isatty():
            print(f"\r{done}/{total} tasks", end="", file=sys.stderr, flush=True)

    result = run_parity(ops=args.ops, samples=args.samples, graphs=args.graphs,
                        dtypes=tuple(args.dtypes or ("float64", "float32")), seed=args.seed, workers=args.workers,
                        reproducer_dir=args.reproducers, progress=None if args.quiet else progress,
                        imports=args.imports)
    if sys.stderr.isatty() and not args.quiet:
        print("\r", end="", file=sys.stderr)
    if not args.quiet:
        print(format_table(result))
        print()
    for name in result.failed_ops:
        for message in result.rows[name].failures:
            print(message)
            print()
    print(summary_line(result))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(to_json(result), handle, indent=2)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
