"""`scratch-grad fuzz`: a random-graph fuzzing campaign (testing/fuzz.py runs it; this parses, validates and
prints).

With --op, the op's own checks run first and a broken op is reported within seconds, by its shrunk
single-op failure; then workers fuzz random graphs containing it. Each failure is printed as it is
found ("FAILURE -> reproducer", then the oracle's message). Progress shows as it goes: a live bar on a
terminal, a status line every 5 s elsewhere. Exit status 0 when nothing failed, 1 on a failure, a
crash of the fuzzer or an empty campaign, 2 for a bad option.
"""
import argparse
import os
import sys
import time

from . import options


def build_parser():
    from ..testing.fuzz import DEFAULT_DATABASE
    parser = argparse.ArgumentParser(
        prog="scratch-grad fuzz",
        description="Random-graph fuzzing campaign: random DAGs of registry ops checked three ways "
                    "(scratch_grad vs torch vs finite differences), failures shrunk and written as reproducers. "
                    "With --op, the op's own checks first, then graphs containing it.")
    options.add_ops(parser, "check this op on its own first, then fuzz graphs containing it (repeatable); "
                            "default: graphs of the whole registry")
    parser.add_argument("--minutes", type=options.positive_float, default=5.0, help="how long to fuzz (default 5)")
    options.add_workers(parser, "all cores")
    parser.add_argument("--database", default=DEFAULT_DATABASE, metavar="DIR|URL",
                        help="hypothesis example database shared by the workers: a directory (default "
                             f"{DEFAULT_DATABASE}) or redis://HOST:PORT/DB, a Redis server that campaigns on "
                             "several machines share (needs the redis package)")
    parser.add_argument("--shrink-seconds", type=options.positive_float, metavar="S",
                        help="time allowed to shrink each failure (default: 1.5 s for an op's own failure; for a "
                             "graph, a fifth of the campaign, at least 20 s)")
    parser.add_argument("--stop-on-failure", action="store_true",
                        help="end the campaign at the first failure (after it is shrunk and written)")
    options.add_reproducers(parser)
    parser.add_argument("--max-ops", type=options.positive_int, default=None, metavar="N",
                        help="ops per graph (default: the fuzz profile's)")
    options.add_imports(parser)
    options.add_engine(parser)
    return parser


def validate(parser, args):
    """Every option, before any worker starts (the database is reached now); exits 2 on a bad one."""
    from ..testing.database import DatabaseError, open_database
    engine = options.validate(parser, args, needs=("torch", "hypothesis"))
    if engine is not None:
        missing = [name for name in args.ops or () if name not in engine.ops]
        if missing:
            parser.error(f"--engine {args.engine} does not provide {', '.join(missing)} (see its adapter's ops)")
    try:
        open_database(args.database, check=True)
    except DatabaseError as exc:
        parser.error(f"--database: {exc}")


class Status:
    """The campaign's progress: a tqdm bar over its minutes on a terminal (examples, rate, failures as its
    postfix), otherwise a plain line every 5 s."""

    def __init__(self, seconds, started):
        from ..progress import bar
        self.started = started
        self.last = 0.0
        self.printed = None         # the (examples, failures) last printed
        self.bar = bar(total=round(seconds), desc="fuzz", unit="s",
                       bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")

    def say(self, text):
        self.bar.write(text, file=sys.stdout)
        sys.stdout.flush()

    def failure(self, failure):
        if failure.kind == "crash":
            self.say(f"\nCRASH of the fuzzer: {failure.message}\n")
        else:
            self.say(f"\nFAILURE{' -> ' + failure.reproducer if failure.reproducer else ''}\n{failure.message}\n")

    def update(self, examples, failures, final=False):
        now = time.time()
        elapsed = now - self.started
        rate = examples / max(elapsed, 1e-9)
        if not self.bar.disable:
            self.bar.set_postfix_str(f"{examples} examples, {rate:.1f}/s, {failures} failure(s)", refresh=False)
            self.bar.update(min(round(elapsed), self.bar.total) - self.bar.n)
        elif (now - self.last >= 5 or final) and self.printed != (examples, failures):
            self.last, self.printed = now, (examples, failures)
            print(f"[{elapsed:6.0f} s] {examples} examples, {rate:.1f} examples/s, {failures} failure(s)", flush=True)

    def close(self):
        self.bar.close()


def report(result, campaign):
    """The closing lines; the exit status."""
    where = f"over {result.workers} worker(s)" if result.workers else "in this process"
    print(f"done: {result.examples} examples in {result.seconds:.0f} s ({result.examples / max(result.seconds, 1e-9):.1f}"
          f" examples/s {where}); {len(result.failures)} distinct failure(s)")
    if result.first_failure:
        number, seconds = result.first_failure
        print(f"first failing example: number {number} of the campaign, {seconds:.1f} s after the start")
    for failure in result.failures:
        print(f"  reproducer: {failure.reproducer}")
    for culprits, count in sorted(result.hidden.items()):
        print(f"  {count} more failing graph(s) localized to {', '.join(culprits)} not shown (reproducers in "
              f"{campaign.reproducers}/)")
    if result.crashes:
        print(f"FAILED: the fuzzer itself crashed {len(result.crashes)} time(s): " + "; ".join(result.crashes[:3]))
    if not result.checked:
        print("NOTHING CHECKED: no example ran (not a pass)")
    return 0 if result.passed else 1


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    validate(parser, args)
    from ..testing.database import describe
    from ..testing.fuzz import Campaign, run_campaign
    campaign = Campaign(ops=tuple(args.ops or ()), minutes=args.minutes, workers=args.workers or os.cpu_count() or 1,
                        database=args.database, shrink_seconds=args.shrink_seconds,
                        stop_on_failure=args.stop_on_failure, reproducers=args.reproducers, max_ops=args.max_ops,
                        imports=tuple(args.imports), engine=args.engine)
    what = f"graphs containing {', '.join(repr(n) for n in campaign.ops)}" if campaign.ops else "random graphs"
    engine = f" of engine {args.engine}" if args.engine else ""
    print(f"fuzzing {what}{engine} with {campaign.workers} worker(s) for {args.minutes:g} min; database "
          f"{describe(args.database)}; reproducers in {args.reproducers}/", flush=True)
    status = Status(60 * args.minutes, time.time())
    try:
        result = run_campaign(campaign, on_failure=status.failure, on_status=status.update, on_note=status.say)
        status.update(result.examples, len(result.failures), final=True)
    finally:
        status.close()
    return report(result, campaign)


if __name__ == "__main__":
    sys.exit(main())
