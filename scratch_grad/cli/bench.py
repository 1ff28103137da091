"""`scratch-grad bench`: scratch_grad timed side by side with NumPy by hand, torch and optional competitors.

The benchmarks are not installed with the package: they are the repository's `benchmarks/` directory,
found from the current directory (as `--import` finds a module), so the command runs from a checkout's
root; anywhere else it says so and exits 2. `python -m benchmarks.runner` is the same command.
"""
import argparse
import importlib
import sys

from . import options

NEEDS_A_CHECKOUT = ("the benchmarks are not installed with the package: they are the benchmarks/ directory of a "
                    "checkout of the repository. Run this command from the checkout's root (where benchmarks/ and "
                    "scratch_grad/ are), or there: python -m benchmarks.runner")


def load_runner():
    """benchmarks.runner from the current directory (or the path), or None when it cannot be found."""
    from ..testing.imports import search_current_directory
    search_current_directory()
    try:
        return importlib.import_module("benchmarks.runner")
    except ModuleNotFoundError as exc:
        if exc.name in ("benchmarks", "benchmarks.runner"):
            return None
        raise


def comma_list(text):
    return tuple(item.strip() for item in text.split(",") if item.strip())


def build_parser(workload_groups):
    parser = argparse.ArgumentParser(
        prog="scratch-grad bench",
        description="Time scratch_grad side by side with NumPy by hand, torch eager and (when installed) HIPS "
                    "autograd, MyGrad and JAX, after checking that all compute the same loss and gradients. "
                    "Run from a checkout's root (benchmarks/ is not installed with the package).")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, chains up to 1e4 ops (~30 s)")
    options.add_json(parser, "write the full results as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG chart (needs matplotlib)")
    parser.add_argument("--threads", type=options.positive_int, default=1, metavar="N",
                        help="threads for every library: BLAS/OpenMP env vars, threadpoolctl, torch (default 1)")
    parser.add_argument("--repeats", type=options.positive_int, metavar="N",
                        help="timing rounds (default 5 quick, 31 full; chains at most 7)")
    parser.add_argument("--chain-budget", type=options.positive_float, metavar="SECONDS",
                        help="skip a chain length whose projected single run is longer (default 1 quick, 15 full)")
    parser.add_argument("--malloc-mmap-threshold", type=options.non_negative_int, metavar="BYTES",
                        help="glibc mmap threshold applied in-process with mallopt (default 4194304 unless "
                             "MALLOC_MMAP_THRESHOLD_ is set; 0 keeps glibc's dynamic default)")
    parser.add_argument("--workloads", type=comma_list, default=workload_groups, metavar="LIST",
                        help=f"comma-separated subset of {','.join(workload_groups)} (default: all)")
    parser.add_argument("--implementations", type=comma_list, metavar="LIST",
                        help="comma-separated implementation labels (numpy, the reference, is always kept)")
    parser.add_argument("--baseline", action="append", metavar="REF", default=[],
                        help="also time scratch_grad as committed at git REF (e.g. HEAD, main~3), labelled "
                             "scratch_grad@REF: a change to the engine measured side by side in one run")
    return parser


def validate(parser, args, workload_groups):
    options.validate(parser, args, needs=())
    unknown = [name for name in args.workloads if name not in workload_groups]
    if unknown or not args.workloads:
        parser.error(f"--workloads {','.join(args.workloads)}: choose among {','.join(workload_groups)}")
    from benchmarks.baseline import BaselineError, _git, label_for
    from benchmarks.implementations import IMPLEMENTATIONS
    for ref in args.baseline:
        try:
            _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        except BaselineError as exc:
            parser.error(f"--baseline {ref}: not a commit of this checkout ({exc})")
    if args.implementations is not None:
        known = [spec.label for spec in IMPLEMENTATIONS] + [label_for(ref) for ref in args.baseline]
        unknown = [label for label in args.implementations if label not in known]
        if unknown or not args.implementations:
            parser.error(f"--implementations {','.join(args.implementations)}: choose among {','.join(known)}")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install 'scratch_grad[plot]'")


def main(argv=None):
    runner = load_runner()
    if runner is None:
        print(f"scratch-grad bench: error: {NEEDS_A_CHECKOUT}", file=sys.stderr)
        return 2
    parser = build_parser(runner.WORKLOAD_GROUPS)
    args = parser.parse_args(argv)
    validate(parser, args, runner.WORKLOAD_GROUPS)
    return runner.execute(args)


if __name__ == "__main__":
    sys.exit(main())
