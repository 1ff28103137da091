"""The fuzz campaign behind `scratch-grad fuzz` (cli/fuzz.py parses, validates and prints; this runs it).

    result = run_campaign(Campaign(ops=("softsign",), minutes=1, imports=("my_ops",)), on_failure=show)

With ops given, their own checks come first, in this process: hypothesis on each op's sampler
(OWN_EXAMPLES examples per dtype, shrinking bounded to a few seconds), so a broken op is reported
within seconds by its simplest evidence, a shrunk single-op failure. Then worker processes fuzz
random graphs in chunks of CHUNK examples (each graph built around one of the ops, when given),
alternating dtypes, with the ops' own checks again every third chunk, until the deadline. The
workers share one hypothesis example database (a directory, or a Redis server that campaigns on
several machines share: database.py): a failure found by one is saved, shrunk and replayed first by
every later run that opens it.

Each distinct failure is reported once (distinct: the op, or for a graph the ops its failure is
localized to, with the dtype and the failing checks: parity's signature), with one standalone
reproducer named by it. With ops given, a failing graph counts only when its failure is localized
to one of them (the op fails alone on its inputs there): a graph that fails because of another op,
or of no op alone, is not theirs, and is passed over (`scratch-grad fuzz` without --op, and parity's
"(engine)" row, report those). Failing graphs localized to the same ops are shown at most
MAX_GRAPH_FAILURES times, then only counted. When every op given has failed its own checks, the
campaign ends there: graphs containing a broken op would only repeat its failure (they shrink to
the op alone), so the verdict is in within seconds; an op that passed goes on to the graphs.
Shrinking is bounded, and hypothesis' own warnings and reports (the "spent more than five minutes
working to shrink ... PLEASE REPORT THIS" warning, seeds, blobs) never reach the user: the campaign
reports its failures itself.
"""
import contextlib
import multiprocessing
import os
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field

CHUNK = 40                  # examples per hypothesis run in a worker; the deadline is checked between runs
OWN_EXAMPLES = 50           # an op's own examples per dtype before any graph
OWN_SHRINK_SECONDS = 1.5    # an op's own failure: one op's example reaches its smallest form early in shrinking;
#                             hypothesis' later passes rarely improve it and take many times longer
MIN_GRAPH_SHRINK_SECONDS = 10.0
MAX_GRAPH_FAILURES = 2      # failing graphs shown per set of ops they are localized to
DEFAULT_DATABASE = os.path.join(".hypothesis", "examples")
DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Campaign:
    """What to fuzz, for how long and where the results go (worker processes get a copy)."""
    ops: tuple = ()                 # every graph contains one of them, and their own checks run first
    minutes: float = 5.0
    workers: int = 1
    database: str = DEFAULT_DATABASE
    shrink_seconds: float = None    # per failure; default: OWN_SHRINK_SECONDS for an op's own failure, a
    #                                 fifth of the campaign (at least 20 s) past the deadline for a graph
    stop_on_failure: bool = False
    reproducers: str = "reproducers"
    max_ops: int = None             # ops per graph (default: the fuzz profile's)
    imports: tuple = ()             # modules (or .py paths) registering more ops, imported in every process
    engine: str = None              # an engine spec (testing/engines.load_engine) checked instead of scratch_grad


@dataclass
class Failure:
    kind: str                       # "op" (an op's own check), "graph", or "crash" (the fuzzer itself)
    dtype: str = ""
    culprits: tuple = ()            # the op, or the ops a graph is localized to ("(engine)" when none alone fails)
    signature: str = ""
    steps: int = 0
    reproducer: str = ""
    message: str = ""


@dataclass
class CampaignResult:
    examples: int = 0
    seconds: float = 0.0
    workers: int = 0                                # worker processes started (none after a broken op)
    failures: list = field(default_factory=list)    # shown, in the order found: an op's own failure first
    hidden: Counter = field(default_factory=Counter)    # failing graphs not shown, by the ops they blame
    crashes: list = field(default_factory=list)     # the fuzzer's own errors, and workers that died
    first_failure: tuple = None                     # (example number, seconds after the start)

    @property
    def checked(self):
        return self.examples > 0

    @property
    def passed(self):
        """No failure, no crash, and something was checked: an empty campaign is never a pass."""
        return self.checked and not self.failures and not self.crashes


# ---- hypothesis, bounded and quiet -----------------------------------------------------------------------------

@contextlib.contextmanager
def bounded_shrinking(seconds):
    """hypothesis stops shrinking a failure after MAX_SHRINKING_SECONDS (300 s, a module constant read
    when shrinking starts): lower it for the block."""
    from hypothesis.internal.conjecture import engine
    previous = getattr(engine, "MAX_SHRINKING_SECONDS", None)
    if previous is not None:
        engine.MAX_SHRINKING_SECONDS = max(0.5, float(seconds))
    try:
        yield
    finally:
        if previous is not None:
            engine.MAX_SHRINKING_SECONDS = previous


@contextlib.contextmanager
def quiet_hypothesis():
    """hypothesis' warnings (HypothesisWarning) and reports (the slow-shrinking warning, seeds, blobs) kept
    from the user for the block, with NumPy's floating-point RuntimeWarnings (overflow in a drawn forward:
    the oracle judges the values themselves); the properties also run with verbosity quiet."""
    from hypothesis.errors import HypothesisWarning
    from hypothesis.reporting import with_reporter
    with warnings.catch_warnings(), with_reporter(lambda text: None):
        warnings.simplefilter("ignore", HypothesisWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


# ---- one process's checks --------------------------------------------------------------------------------------

class _Checker:
    """Runs the campaign's hypothesis properties in one process (the main one for the ops' own checks, each
    worker for its chunks), counting examples in the campaign's shared counter."""

    def __init__(self, campaign, counter, first_failure):
        import torch

        from .database import open_database
        from .imports import load_all
        from .strategies import budget, register_profiles
        torch.set_num_threads(1)            # tiny tensors: one thread per process
        load_all(campaign.imports)
        os.environ.setdefault("HYPOTHESIS_PROFILE", "fuzz")
        register_profiles()
        self.campaign = campaign
        self.counter, self.first_failure = counter, first_failure
        self.database = open_database(campaign.database, check=False)      # the CLI checked it
        self.adapter = None
        if campaign.engine is not None:
            from .engines import load_engine
            self.adapter = load_engine(campaign.engine)
        self.dtypes = tuple(self.adapter.capabilities.dtypes) if self.adapter is not None else DTYPES
        self.max_ops = campaign.max_ops or budget("fuzz").max_ops
        self.localized = (None, ())     # (report, culprits) of the last failing graph localized

    def _on_report(self, report):
        """Count the example; with ops given, a failing graph that is not theirs (localized to other ops, or
        to no op alone) is rejected: it is not an example of the property, which the shrinker keeps to."""
        if not report.passed and report.label == "graph" and self.campaign.ops:
            if not set(self._culprits(report)) & set(self.campaign.ops):
                self._count(passed=True)
                from hypothesis import reject
                reject()
        self._count(report.passed)

    def _count(self, passed):
        with self.counter.get_lock():
            self.counter.value += 1
            if not passed and self.first_failure[0].value == 0:    # the campaign's first failing example
                self.first_failure[0].value = self.counter.value
                self.first_failure[1].value = time.time()

    def _culprits(self, report):
        """The op of an op's own failure; the ops a failing graph is localized to (testing/graphs.localize:
        those that fail alone on their inputs there), "(engine)" when none does. Kept for the report."""
        if report.label != "graph":
            return (report.label,)
        if self.localized[0] is not report:
            from .graphs import localize
            from .parity import ENGINE_ROW
            self.localized = (report, tuple(localize(report.program, engine=self.adapter) or [ENGINE_ROW]))
        return self.localized[1]

    def _write(self, report):
        """The reproducer of a failure's final (shrunk) replay: one file per distinct failure."""
        from .parity import _reproducer
        return _reproducer(report, self.campaign.reproducers, self._culprits(report) if report.label == "graph" else ())

    def _failure(self, kind, report):
        from .parity import _signature
        culprits = self._culprits(report)
        message = report.message()
        if kind == "graph":
            message += f"\n  localized to: {', '.join(culprits)}"
        return Failure(kind, report.program.dtype, culprits,
                       _signature(report, culprits if kind == "graph" else ()), len(report.program.steps),
                       report.reproducer, message)

    def run(self, kind, name, dtype, phases, examples, shrink_seconds):
        """One hypothesis run of an op's own check (kind "op") or of graphs built around `name` (None: any
        graph); a Failure, or None when it passed or had nothing to replay."""
        import unittest

        from hypothesis import Verbosity
        from hypothesis.errors import Unsatisfiable

        from ..ops import REGISTRY
        from .oracle import CheckFailure
        from .strategies import graph_property, op_property
        settings = dict(max_examples=examples, database=self.database, phases=phases, derandomize=False,
                        deadline=None, verbosity=Verbosity.quiet)
        hooks = {"on_report": self._on_report, "engine": self.adapter, "write": self._write}
        if kind == "op":
            test = op_property(REGISTRY[name], dtype, example_kwargs=hooks, **settings)
        else:
            test = graph_property(dtype, require_op=name, max_ops=self.max_ops, example_kwargs=hooks, **settings)
        with quiet_hypothesis(), bounded_shrinking(shrink_seconds):
            try:
                test()
            except (unittest.SkipTest, Unsatisfiable):     # a replay-only run with nothing saved under its
                return None                                 # key; every failing graph another op's
            except CheckFailure as failure:
                return self._failure(kind, failure.report)
        return None

    def replay(self, ops, shrink_seconds, own=True):
        """Replay what the database holds (failures saved by earlier runs, here or on other machines sharing
        it) for the campaign's properties (the ops' own checks with own=True, graphs built around each op or
        any graph), drawing nothing new: the Failures found."""
        from hypothesis import Phase
        replay_only = (Phase.explicit, Phase.reuse, Phase.shrink)
        properties = ([("op", name) for name in ops] if own else []) + [("graph", name) for name in ops or (None,)]
        found = [self.run(kind, name, dtype, replay_only, CHUNK, shrink_seconds)
                 for kind, name in properties for dtype in self.dtypes]
        return [failure for failure in found if failure is not None]


def _crash(where, exc):
    return Failure("crash", message=f"{where}: {type(exc).__name__}: {exc}")


def _graph_shrink_seconds(campaign, deadline):
    """--shrink-seconds, else until a fifth of the campaign (at least 20 s) past the deadline, and at least
    MIN_GRAPH_SHRINK_SECONDS: a failure found late is still shrunk."""
    if campaign.shrink_seconds is not None:
        return campaign.shrink_seconds
    return max(MIN_GRAPH_SHRINK_SECONDS, deadline + max(20.0, 12 * campaign.minutes) - time.time())


def _worker(index, campaign, ops, deadline, shared, replay):
    """A worker process: replay the database (unless the main process did: replay is then whether its
    replay was clean), then chunks until the deadline (at least one). `ops`: the ops every graph is built
    around (in turn), whose own checks also run every third chunk; none: any graph."""
    from hypothesis import Phase
    counter, first_failure, queue = shared
    try:
        checker = _Checker(campaign, counter, first_failure)
    except Exception as exc:  # noqa: BLE001 - a worker that cannot start is reported, not hidden
        queue.put(_crash(f"worker {index} could not start", exc))
        return

    def run(kind, name, dtype, phases):
        """False if the run failed; raises on a crash of the fuzzer itself."""
        failure = checker.run(kind, name, dtype, phases, CHUNK, _graph_shrink_seconds(campaign, deadline))
        if failure is not None:
            queue.put(failure)
        return failure is None

    names = ops or (None,)
    try:
        if replay is None:      # first, before drawing anything new
            found = checker.replay(ops, _graph_shrink_seconds(campaign, deadline), own=False)
            for failure in found:
                queue.put(failure)
            replay = not found
        round_number = index
        # every worker runs at least one chunk, however slow its start (importing torch can take longer than a
        # short campaign): a campaign never ends with no graph checked
        while time.time() < deadline or round_number == index:
            dtype = checker.dtypes[round_number % len(checker.dtypes)]
            if ops and round_number % 3 == 2:
                kind, name = "op", ops[(round_number // 3) % len(ops)]
            else:
                kind, name = "graph", names[round_number % len(names)]
            # reuse: a failure another worker or machine saved meanwhile is replayed at the next chunk; after this
            # worker has seen one, no more (the database would replay it first forever)
            phases = tuple(Phase) if replay else tuple(p for p in Phase if p != Phase.reuse)
            replay = run(kind, name, dtype, phases) and replay
            round_number += 1
    except Exception as exc:  # noqa: BLE001 - a crash of the fuzzer itself is reported, not hidden
        queue.put(_crash(f"worker {index}", exc))


# ---- the campaign ----------------------------------------------------------------------------------------------

class _Findings:
    """The campaign's failures as the user sees them: each distinct one once, graphs capped per culprits."""

    def __init__(self, result, on_failure):
        self.result, self.on_failure = result, on_failure
        self.signatures = set()
        self.graphs_shown = Counter()

    def offer(self, failure):
        if failure.kind == "crash":
            self.result.crashes.append(failure.message)
            self.on_failure(failure)
            return
        if failure.signature in self.signatures:
            return              # another worker replayed the same saved failure
        self.signatures.add(failure.signature)
        if failure.kind == "graph":
            if self.graphs_shown[failure.culprits] >= MAX_GRAPH_FAILURES:
                self.result.hidden[failure.culprits] += 1
                return
            self.graphs_shown[failure.culprits] += 1
        self.result.failures.append(failure)
        self.on_failure(failure)


def _first_checks(campaign, checker, findings, on_note):
    """In this process, before any worker: replay the database for the ops' own checks and graphs, then the
    ops' own checks. Returns (the ops that failed on their own, whether the replay was clean). An op that
    fails in one dtype is not checked in the next: its simplest evidence is in."""
    from hypothesis import Phase
    shrink = campaign.shrink_seconds if campaign.shrink_seconds is not None else OWN_SHRINK_SECONDS
    replayed = checker.replay(campaign.ops, shrink)
    for failure in replayed:
        findings.offer(failure)
    failed = {failure.culprits[0] for failure in replayed if failure.kind == "op"}
    for name in campaign.ops:
        if name in failed or (findings.result.failures and campaign.stop_on_failure):
            continue
        on_note(f"checking '{name}' on its own samples first ({OWN_EXAMPLES} per dtype)")
        for dtype in checker.dtypes:
            failure = checker.run("op", name, dtype, tuple(Phase), OWN_EXAMPLES, shrink)
            if failure is not None:
                findings.offer(failure)
                failed.add(name)
                break
    return failed, not replayed


def run_campaign(campaign, on_failure=None, on_status=None, on_note=None):
    """Run the campaign; call on_failure(Failure) for each failure shown as it is found, on_status(examples,
    failures) every half second and on_note(text) for what happens next. Returns a CampaignResult."""
    on_failure = on_failure or (lambda failure: None)
    on_status = on_status or (lambda examples, failures: None)
    on_note = on_note or (lambda text: None)
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    first_failure = (context.Value("q", 0), context.Value("d", 0.0))    # example number, time
    queue = context.Queue()
    started = time.time()
    result = CampaignResult()
    findings = _Findings(result, on_failure)
    failed, replay = set(), None         # None: the workers replay the database themselves
    interrupted = False
    if campaign.ops:
        try:
            checker = _Checker(campaign, counter, first_failure)
            failed, replay = _first_checks(campaign, checker, findings, on_note)
        except KeyboardInterrupt:
            on_note("interrupted")
            interrupted = True
        on_status(counter.value, len(result.failures))
    passing = tuple(name for name in campaign.ops if name not in failed)
    processes = []
    if failed and not passing:
        on_note(f"{', '.join(sorted(failed))}: failed on its own checks, so no graphs (each would only repeat the "
                "failure); fix it and fuzz again")
    elif not interrupted and not (result.failures and campaign.stop_on_failure):
        deadline = started + 60 * campaign.minutes
        processes = [context.Process(target=_worker, args=(k, campaign, passing, deadline,
                                                          (counter, first_failure, queue), replay), daemon=True)
                     for k in range(campaign.workers)]
        for process in processes:
            process.start()
    stopped = set()
    try:
        while any(p.is_alive() for p in processes):
            time.sleep(0.5)
            while not queue.empty():
                findings.offer(queue.get())
            on_status(counter.value, len(result.failures))
            if result.failures and campaign.stop_on_failure:
                on_note("stopping at the first failure (--stop-on-failure)")
                break
    except KeyboardInterrupt:
        on_note("interrupted")
    for process in processes:
        if process.is_alive():
            stopped.add(process.pid)
            process.terminate()
    for process in processes:
        process.join(timeout=10)
    while not queue.empty():
        findings.offer(queue.get())
    for k, process in enumerate(processes):
        if process.pid not in stopped and process.exitcode not in (0, None):
            findings.offer(Failure("crash", message=f"worker {k} died with exit code {process.exitcode}"))
    result.workers = len(processes)
    result.examples = counter.value
    result.seconds = time.time() - started
    if first_failure[0].value:
        result.first_failure = (first_failure[0].value, first_failure[1].value - started)
    return result
