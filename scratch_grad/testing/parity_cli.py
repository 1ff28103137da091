"""`scratch-grad parity`: the whole registry through the three-way oracle, as a table.

Exit status 0 when every cell passes, 1 otherwise. Deterministic for a given --seed.
"""
import argparse
import json
import os
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
    parser.add_argument("--graphs", type=int, default=None,
                        help="random graphs per dtype (default 1200; with --op, 30 per op, each containing it)")
    parser.add_argument("--dtype", action="append", dest="dtypes", choices=["float64", "float32"],
                        help="dtype to check (repeatable; default both)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw (default 0)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: min(2, cores))")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--html", metavar="PATH",
                        help="also write a self-contained HTML report: the op x check x dtype matrix coloured by "
                             "worst error over tolerance, each cell opening on its evidence, reproducers inline")
    parser.add_argument("--plot", metavar="PATH", help="also write the matrix as a PNG heatmap (needs matplotlib)")
    parser.add_argument("--reproducers", metavar="DIR", default="reproducers",
                        help="where failing checks write standalone reproducer scripts (default ./reproducers)")
    parser.add_argument("--import", action="append", dest="imports", default=[], metavar="MODULE_OR_PATH",
                        help="import this module (from the current directory) or .py file first, and in every "
                             "worker: one that registers your own ops")
    parser.add_argument("--engine", metavar="NAME_OR_MODULE:ATTR", default=None,
                        help="check another engine through its adapter: torch, autograd, mygrad, jax, student, or "
                             "module:attr (see scratch_grad.testing.engines); default scratch_grad")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line and failures")
    return parser


def output_path_problem(path):
    """Why `path` cannot be written (None if it can): checked before a run of minutes starts."""
    full = os.path.abspath(os.path.expanduser(path))
    directory = os.path.dirname(full)
    if os.path.isdir(full):
        return f"{path} is a directory"
    if not os.path.isdir(directory):
        return f"directory {directory} does not exist"
    if not os.access(directory, os.W_OK):
        return f"directory {directory} is not writable"
    return None


def validate(parser, args):
    """Bad output options exit 2 with a message before any work."""
    for flag, path in (("--json", args.json), ("--html", args.html), ("--plot", args.plot)):
        problem = path is not None and output_path_problem(path)
        if problem:
            parser.error(f"{flag} {path}: {problem}")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install 'scratch_grad[plot]'")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    validate(parser, args)
    try:
        import torch  # noqa: F401 - the reference
    except ImportError:
        print("scratch-grad parity needs torch (the reference): pip install 'scratch_grad[test]'", file=sys.stderr)
        return 2
    from ..ops import REGISTRY
    from .imports import load_all
    from .parity import format_table, run_parity, summary_line, to_json
    try:
        load_all(args.imports)
    except ImportError as exc:
        print(f"scratch-grad parity: --import: {exc}", file=sys.stderr)
        return 2
    if args.engine:
        from .engines import load_engine
        try:
            load_engine(args.engine)
        except Exception as exc:  # noqa: BLE001 - any failure to load the adapter is a bad option
            print(f"scratch-grad parity: --engine: {exc}", file=sys.stderr)
            return 2
    if args.ops:
        unknown = [n for n in args.ops if n not in REGISTRY]
        if unknown:
            print(f"scratch-grad parity: unknown op(s) {', '.join(unknown)}; see `scratch-grad ops`", file=sys.stderr)
            return 2

    from ..progress import bar
    with bar(desc="parity", unit="task", enabled=False if args.quiet else None) as tasks:
        def progress(done, total):
            tasks.total = total
            tasks.update(done - tasks.n)

        result = run_parity(ops=args.ops, samples=args.samples, graphs=args.graphs,
                            dtypes=tuple(args.dtypes or ("float64", "float32")), seed=args.seed,
                            workers=args.workers, reproducer_dir=args.reproducers, progress=progress,
                            imports=args.imports, engine=args.engine)
    if not args.quiet:
        print(format_table(result))
        print()
    for name in result.failed_ops:
        for message in result.rows[name].messages():
            print(message)
            print()
    print(summary_line(result))
    if args.json or args.html or args.plot:
        data = to_json(result)
    if args.json:
        with open(os.path.expanduser(args.json), "w") as handle:
            json.dump(data, handle, indent=2)
    if args.html:
        from . import report_html
        report_html.write(data, os.path.expanduser(args.html))
        print(f"HTML report written to {args.html}")
    if args.plot:
        from . import report_plot
        report_plot.write(data, os.path.expanduser(args.plot))
        print(f"heatmap written to {args.plot}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
