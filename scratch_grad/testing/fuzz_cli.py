"""`scratch-grad fuzz`: a long random-graph campaign in several processes.

Each worker runs hypothesis (profile `fuzz`) in chunks of examples, alternating float64 and
float32, sharing one example database directory, so a failure found by one worker is saved,
shrunk to a minimal graph and replayed first by every later run. Failures are written as
standalone reproducer scripts. Progress (examples and examples per second) is printed as it goes.
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
    parser.add_argument("--database", default=os.path.join(".hypothesis", "examples"),
                        help="hypothesis example database shared by the workers (default .hypothesis/examples)")
    parser.add_argument("--reproducers", default="reproducers", help="where reproducers go (default ./reproducers)")
    parser.add_argument("--max-ops", type=int, default=None, help="ops per graph (default: the fuzz profile's)")
    parser.add_argument("--import", action="append", dest="imports", default=[], metavar="MODULE",
                        help="import this module first (in every worker): one that registers your own ops")
    return parser


def _limit_shrinking(seconds):
    """Shrinking may run past the deadline by a fifth of the campaign (at least 20 s), no more.
    hypothesis caps shrinking at MAX_SHRINKING_SECONDS (300 s); lower it when that exists."""
    from hypothesis.internal.conjecture import engine
    if hasattr(engine, "MAX_SHRINKING_SECONDS"):
        engine.MAX_SHRINKING_SECONDS = max(5, int(seconds))


def _worker(index, args, deadline, counter, failures):
    import importlib

    import torch
    torch.set_num_threads(1)
    for module in args.imports:
        importlib.import_module(module)
    from hypothesis import Phase
    from hypothesis.database import DirectoryBasedExampleDatabase
    from ..ops import REGISTRY
    from .oracle import CheckFailure
    from .strategies import budget, graph_property, op_property, register_profiles
    os.environ.setdefault("HYPOTHESIS_PROFILE", "fuzz")
    register_profiles()
    database = DirectoryBasedExampleDatabase(args.database)
    seen = set()
    replay = True

    def count(report):
        with counter.get_lock():
            counter.value += 1

    dtypes = ("float64", "float32")
    round_number = index
    while time.time() < deadline:
        dtype = dtypes[round_number % 2]
        phases = tuple(Phase) if replay else tuple(p for p in Phase if p != Phase.reuse)
        common = dict(max_examples=CHUNK, database=database, phases=phases, derandomize=False, deadline=None)
        hooks = {"on_report": count, "directory": args.reproducers}
        _limit_shrinking(deadline + max(20.0, 12 * args.minutes) - time.time())
        if args.op and round_number % 3 == 2:
            test = op_property(REGISTRY[args.op], dtype, example_kwargs=hooks, **common)
        else:
            test = graph_property(dtype, require_op=args.op, max_ops=args.max_ops or budget("fuzz").max_ops,
                                  example_kwargs=hooks, **common)
        try:
            test()
        except CheckFailure as failure:
            path = failure.report.reproducer
            if path not in seen:
                seen.add(path)
                failures.put((path, failure.report.message()))
            replay = False          # the database would replay this one first forever
        except Exception as exc:  # noqa: BLE001 - a crash of the fuzzer itself is reported, not hidden
            failures.put(("", f"worker {index}: {type(exc).__name__}: {exc}"))
            replay = False
        round_number += 1


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        import hypothesis  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        print(f"scratch-grad fuzz needs hypothesis and torch ({exc}): pip install 'scratch_grad[test]'",
              file=sys.stderr)
        return 2
    import importlib

    from ..ops import REGISTRY
    for module in args.imports:
        importlib.import_module(module)
    if args.op and args.op not in REGISTRY:
        print(f"scratch-grad fuzz: unknown op {args.op!r}; see `scratch-grad ops`", file=sys.stderr)
        return 2
    workers = args.workers or os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    failures = context.Queue()
    started = time.time()
    deadline = started + 60 * args.minutes
    processes = [context.Process(target=_worker, args=(k, args, deadline, counter, failures), daemon=True)
                 for k in range(workers)]
    for process in processes:
        process.start()
    found = []
    what = f"graphs containing '{args.op}'" if args.op else "random graphs"
    print(f"fuzzing {what} with {workers} worker(s) for {args.minutes:g} min; database {args.database}; "
          f"reproducers in {args.reproducers}/", flush=True)
    last = 0.0
    try:
        while any(p.is_alive() for p in processes):
            time.sleep(0.5)
            while not failures.empty():
                path, message = failures.get()
                found.append((path, message))
                print(f"\nFAILURE{' -> ' + path if path else ''}\n{message}\n", flush=True)
            now = time.time()
            if now - last >= 5 or not any(p.is_alive() for p in processes):
                last = now
                elapsed = now - started
                print(f"[{elapsed:6.0f} s] {counter.value} examples, {counter.value / max(elapsed, 1e-9):.1f} "
                      f"examples/s, {len(found)} failure(s)", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted", flush=True)
        for process in processes:
            process.terminate()
    for process in processes:
        process.join(timeout=10)
    while not failures.empty():
        found.append(failures.get())
    elapsed = time.time() - started
    print(f"done: {counter.value} examples in {elapsed:.0f} s ({counter.value / max(elapsed, 1e-9):.1f} examples/s "
          f"over {workers} worker(s)); {len(found)} distinct failure(s)")
    for path, _ in found:
        if path:
            print(f"  reproducer: {path}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
