"""`scratch-grad fuzz`: a long random-graph campaign in several processes.

Each worker runs hypothesis (profile `fuzz`) in chunks of examples, alternating float64 and
float32, sharing one example database (a directory, or a Redis server that workers on several
machines share: testing/database.py), so a failure found by one worker is saved, shrunk to a
minimal graph and replayed first by every later run, here or on another machine. Failures are
written as standalone reproducer scripts. Progress (examples and examples per second) shows as it
goes: a live bar on a terminal, a status line every 5 s elsewhere.
"""
import argparse
import multiprocessing
import os
import sys
import time

CHUNK = 40     # examples per hypothesis run; the deadline is checked between runs


def build_parser():
    parser = argparse.ArgumentParser(
        prog="scratch-grad fuzz",
        description="Long random-graph fuzzing campaign: random DAGs of registry ops checked three ways "
                    "(scratch_grad vs torch vs finite differences), failures shrunk and written as reproducers.")
    parser.add_argument("--op", metavar="NAME", help="every graph contains this op (and its own checks run too)")
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to fuzz (default 5)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--database", default=os.path.join(".hypothesis", "examples"), metavar="DIR|URL",
                        help="hypothesis example database shared by the workers: a directory (default "
                             ".hypothesis/examples) or redis://HOST:PORT/DB, a Redis server that campaigns on "
                             "several machines share (needs the redis package)")
    parser.add_argument("--shrink-seconds", type=float, metavar="S",
                        help="time allowed to shrink each failure (default: a fifth of the campaign, at least 20 s)")
    parser.add_argument("--stop-on-failure", action="store_true",
                        help="end the campaign at the first failure (after it is shrunk and written)")
    parser.add_argument("--reproducers", default="reproducers", help="where reproducers go (default ./reproducers)")
    parser.add_argument("--max-ops", type=int, default=None, help="ops per graph (default: the fuzz profile's)")
    parser.add_argument("--import", action="append", dest="imports", default=[], metavar="MODULE",
                        help="import this module first (in every worker): one that registers your own ops")
    return parser


def _limit_shrinking(seconds):
    """hypothesis caps shrinking at MAX_SHRINKING_SECONDS (300 s); lower it when that exists."""
    from hypothesis.internal.conjecture import engine
    if hasattr(engine, "MAX_SHRINKING_SECONDS"):
        engine.MAX_SHRINKING_SECONDS = max(1, int(seconds))


def _worker(index, args, deadline, counter, failures, first_failure):
    import importlib
    import unittest

    import torch
    torch.set_num_threads(1)
    for module in args.imports:
        importlib.import_module(module)
    from hypothesis import Phase
    from ..ops import REGISTRY
    from .database import open_database
    from .oracle import CheckFailure
    from .strategies import budget, graph_property, op_property, register_profiles
    os.environ.setdefault("HYPOTHESIS_PROFILE", "fuzz")
    register_profiles()
    database = open_database(args.database, check=False)     # main() checked it
    seen = set()

    def count(report):
        with counter.get_lock():
            counter.value += 1
            if not report.passed and first_failure[0].value == 0:    # the campaign's first failing example
                first_failure[0].value = counter.value
                first_failure[1].value = time.time()

    def run(kind, dtype, phases):
        """One hypothesis run of CHUNK examples; False if it failed (or crashed)."""
        common = dict(max_examples=CHUNK, database=database, phases=phases, derandomize=False, deadline=None)
        hooks = {"on_report": count, "directory": args.reproducers}
        # shrinking may run past the deadline by a fifth of the campaign (at least 20 s), or --shrink-seconds
        _limit_shrinking(args.shrink_seconds if args.shrink_seconds is not None
                         else deadline + max(20.0, 12 * args.minutes) - time.time())
        if kind == "op":
            test = op_property(REGISTRY[args.op], dtype, example_kwargs=hooks, **common)
        else:
            test = graph_property(dtype, require_op=args.op, max_ops=args.max_ops or budget("fuzz").max_ops,
                                  example_kwargs=hooks, **common)
        try:
            test()
        except unittest.SkipTest:       # a replay-only run with nothing saved under its key
            pass
        except CheckFailure as failure:
            path = failure.report.reproducer
            if path not in seen:
                seen.add(path)
                failures.put((path, failure.report.message()))
            return False
        except Exception as exc:  # noqa: BLE001 - a crash of the fuzzer itself is reported, not hidden
            failures.put(("", f"worker {index}: {type(exc).__name__}: {exc}"))
            return False
        return True

    dtypes = ("float64", "float32")
    kinds = ("graph", "op") if args.op else ("graph",)
    # First, before drawing anything new, replay what the database holds (failures saved by earlier
    # runs, here or on other machines sharing it) for every property this worker runs.
    replay_only = (Phase.explicit, Phase.reuse, Phase.shrink)
    replay = all([run(kind, dtype, replay_only) for kind in kinds for dtype in dtypes])
    round_number = index
    # every worker runs at least one chunk, however slow its start (importing torch can take longer
    # than a short campaign): a campaign never ends with no example run
    while time.time() < deadline or round_number == index:
        dtype = dtypes[round_number % 2]
        kind = "op" if args.op and round_number % 3 == 2 else "graph"
        # reuse: a failure another worker or machine saved meanwhile is replayed at the next chunk; after
        # this worker has seen one, no more (the database would replay it first forever)
        phases = tuple(Phase) if replay else tuple(p for p in Phase if p != Phase.reuse)
        replay = run(kind, dtype, phases) and replay
        round_number += 1


def _validate(parser, args):
    """Bad options exit 2 with a message before any worker starts (the database is reached now)."""
    from .database import DatabaseError, open_database
    if not args.minutes > 0:
        parser.error(f"--minutes {args.minutes:g}: expected a positive number")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers {args.workers}: expected a positive integer")
    if args.shrink_seconds is not None and not args.shrink_seconds > 0:
        parser.error(f"--shrink-seconds {args.shrink_seconds:g}: expected a positive number")
    try:
        open_database(args.database, check=True)
    except DatabaseError as exc:
        parser.error(f"--database: {exc}")


class _Status:
    """The campaign's progress: a tqdm bar over its minutes on a terminal (examples, rate, failures
    as its postfix), otherwise a plain line every 5 s."""

    def __init__(self, seconds, started):
        from ..progress import bar
        self.started = started
        self.last = 0.0
        self.bar = bar(total=round(seconds), desc="fuzz", unit="s",
                       bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")

    def say(self, text):
        self.bar.write(text, file=sys.stdout)

    def update(self, examples, failures, final=False):
        now = time.time()
        elapsed = now - self.started
        rate = examples / max(elapsed, 1e-9)
        if not self.bar.disable:
            self.bar.set_postfix_str(f"{examples} examples, {rate:.1f}/s, {failures} failure(s)", refresh=False)
            self.bar.update(min(round(elapsed), self.bar.total) - self.bar.n)
        elif now - self.last >= 5 or final:
            self.last = now
            print(f"[{elapsed:6.0f} s] {examples} examples, {rate:.1f} examples/s, {failures} failure(s)", flush=True)

    def close(self):
        self.bar.close()


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        import hypothesis  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        print(f"scratch-grad fuzz needs hypothesis and torch ({exc}): pip install 'scratch_grad[test]'",
              file=sys.stderr)
        return 2
    import importlib

    from ..ops import REGISTRY
    from .database import describe
    _validate(parser, args)
    for module in args.imports:
        importlib.import_module(module)
    if args.op and args.op not in REGISTRY:
        print(f"scratch-grad fuzz: unknown op {args.op!r}; see `scratch-grad ops`", file=sys.stderr)
        return 2
    workers = args.workers or os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    first_failure = (context.Value("q", 0), context.Value("d", 0.0))    # example number, time
    failures = context.Queue()
    started = time.time()
    deadline = started + 60 * args.minutes
    processes = [context.Process(target=_worker, args=(k, args, deadline, counter, failures, first_failure),
                                 daemon=True)
                 for k in range(workers)]
    for process in processes:
        process.start()
    found = []
    what = f"graphs containing '{args.op}'" if args.op else "random graphs"
    print(f"fuzzing {what} with {workers} worker(s) for {args.minutes:g} min; database {describe(args.database)}; "
          f"reproducers in {args.reproducers}/", flush=True)
    status = _Status(60 * args.minutes, started)
    try:
        while any(p.is_alive() for p in processes):
            time.sleep(0.5)
            while not failures.empty():
                path, message = failures.get()
                if path and path in (known for known, _ in found):
                    continue        # another worker replayed the same saved failure
                found.append((path, message))
                status.say(f"\nFAILURE{' -> ' + path if path else ''}\n{message}\n")
            status.update(counter.value, len(found))
            if found and args.stop_on_failure:
                status.say("stopping at the first failure (--stop-on-failure)")
                break
    except KeyboardInterrupt:
        status.say("\ninterrupted")
    status.update(counter.value, len(found), final=True)
    status.close()
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)
    while not failures.empty():
        path, message = failures.get()
        if not path or path not in (known for known, _ in found):
            found.append((path, message))
    elapsed = time.time() - started
    print(f"done: {counter.value} examples in {elapsed:.0f} s ({counter.value / max(elapsed, 1e-9):.1f} examples/s "
          f"over {workers} worker(s)); {len(found)} distinct failure(s)")
    if first_failure[0].value:
        print(f"first failing example: number {first_failure[0].value} of the campaign, "
              f"{first_failure[1].value - started:.1f} s after the start")
    for path, _ in found:
        if path:
            print(f"  reproducer: {path}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
