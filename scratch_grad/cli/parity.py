"""`scratch-grad parity`: the registry through the three-way oracle, as a table (testing/parity.py runs it).

Exit status 0 when every cell passes, 1 when one fails or nothing was checked, 2 for a bad option.
Deterministic for a given --seed.
"""
import argparse
import json
import os
import sys

from . import options


def build_parser():
    parser = argparse.ArgumentParser(
        prog="scratch-grad parity",
        description="Check every registry op three ways (scratch_grad vs torch.autograd vs finite differences): "
                    "forward values, VJPs, second order where declared, and random graphs containing the op.")
    options.add_ops(parser, "check only this op (repeatable; its own samples first, then random graphs built "
                            "around it); default: the whole registry")
    parser.add_argument("--samples", type=options.non_negative_int, default=40,
                        help="draws of each op's sampler per dtype (default 40; a quarter at edges, a third at kinks for "
                             "non-smooth ops)")
    parser.add_argument("--graphs", type=options.non_negative_int, default=None,
                        help="random graphs per dtype (default 1200; with --op, 30 per op, each containing it)")
    parser.add_argument("--dtype", action="append", dest="dtypes", choices=["float64", "float32"],
                        help="dtype to check (repeatable; default both)")
    options.add_seed(parser)
    options.add_workers(parser)
    options.add_json(parser)
    parser.add_argument("--html", metavar="PATH",
                        help="also write a self-contained HTML report: the op x check x dtype matrix coloured by "
                             "worst error over tolerance, each cell opening on its evidence, reproducers inline")
    parser.add_argument("--plot", metavar="PATH", help="also write the matrix as a PNG heatmap (needs matplotlib)")
    options.add_reproducers(parser)
    options.add_imports(parser)
    options.add_engine(parser)
    parser.add_argument("--quiet", action="store_true", help="print only the summary line and failures")
    return parser


def validate(parser, args):
    """Every option, before any work; exits 2 with a message on a bad one."""
    if args.samples == 0 and args.graphs == 0:
        parser.error("--samples 0 --graphs 0: nothing to check (an empty run is not a pass)")
    options.validate(parser, args)
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install 'scratch_grad[plot]'")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    validate(parser, args)
    from ..progress import bar
    from ..testing.parity import format_table, run_parity, summary_line, to_json
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
        from ..testing import report_html
        report_html.write(data, os.path.expanduser(args.html))
        print(f"HTML report written to {args.html}")
    if args.plot:
        from ..testing import report_plot
        report_plot.write(data, os.path.expanduser(args.plot))
        print(f"heatmap written to {args.plot}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
