"""`scratch-grad mutate`: plant known classes of VJP bugs one at a time (testing/mutate.py) and report the
kill rate per op and per class.

Exit status 0 when every planted mutant is killed, 1 when one survives or none could be planted, 2 for a
bad option.
"""
import argparse
import json
import sys

from . import options


def build_parser():
    from ..testing.mutate import CLASSES
    parser = argparse.ArgumentParser(
        prog="scratch-grad mutate",
        description="Plant known classes of VJP bugs into the registry one at a time and report how many the "
                    "checks catch (kill rate per op and per class). Surviving mutants show where the suite is blind.")
    options.add_ops(parser, "only this op (repeatable; an op of your own with --import); default: the whole "
                            "registry and the engine's own mutants")
    parser.add_argument("--class", action="append", dest="classes", metavar="CLASS", choices=CLASSES,
                        help="only this mutation class (repeatable)")
    parser.add_argument("--profile", default="ci", choices=["ci", "dev", "fuzz"],
                        help="sample budget of the checks (default ci)")
    options.add_seed(parser)
    options.add_workers(parser)
    options.add_json(parser, "write the results as JSON (planted, killed, kill_rate, survivors, per_op, per_class, "
                             "mutants)")
    options.add_imports(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    options.validate(parser, args)
    from ..progress import bar
    from ..testing.mutate import format_report, run_mutation
    with bar(desc="mutants", unit="batch") as batches:
        def progress(done, total):
            batches.total = total
            batches.update(done - batches.n)

        summary = run_mutation(ops=args.ops, classes=args.classes, profile=args.profile, seed=args.seed,
                               workers=args.workers, progress=progress, imports=args.imports)
    print(format_report(summary))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)
    if not summary["planted"]:
        print("NOTHING PLANTED: no mutant applies to the ops and classes chosen, or every one was equivalent "
              "(not a pass)", file=sys.stderr)
        return 1
    return 0 if not summary["survivors"] else 1


if __name__ == "__main__":
    sys.exit(main())
