"""The parity run behind `scratch-grad parity`: every registry op, three ways, plus random graphs.

Work is split into tasks (one op in one dtype; a batch of random graphs) that run in worker
processes; each returns plain data that is merged into one table: op x (forward, VJP vs torch,
VJP vs FD, second order, random graphs containing the op, compiled=eager), each cell the worst
error relative to its tolerance over all the draws, and pass/fail. A check the oracle adds later
(a name not in COLUMNS) gets a column of its own.

Each row also keeps the same cells per dtype (`OpRow.matrix`: (column, dtype) -> Cell), and every
cell keeps the evidence of its worst draw (`Evidence`: the oracle's Finding, the failure message,
the reproducer and its source): `to_json` writes them, and `report_html` / `report_plot` draw the
op x check x dtype matrix from that JSON.
"""
import dataclasses
import datetime
import math
import os
import platform
import subprocess
import textwrap
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .oracle import WARNINGS as WARNING_CLASSES

COLUMNS = ("forward", "vjp_torch", "vjp_fd", "second", "graphs", "compiled")
COLUMN_TITLES = {"forward": "forward", "vjp_torch": "VJP vs torch", "vjp_fd": "VJP vs FD",
                 "second": "2nd order", "graphs": "random graphs", "compiled": "compiled=eager"}
ENGINE_ROW = "(engine)"       # graph failures that no op explains on its own
COMPILED_EVERY = 4            # every 4th sample of each op is also compiled (all random graphs are)
MAX_FAILURES = 3              # failure messages (and reproducers) kept per op and task
MAX_GRAPH_FAILURES = 2        # failing graphs shown per op (the smallest), after its own failures
FOCUSED_GRAPHS = 30           # random graphs per dtype and per op under `parity --op` (each contains the op)


@dataclass
class Evidence:
    """The draw behind a cell's number: where it was, the oracle's Finding (any of its fields),
    and for a failure the message and the standalone reproducer with its source."""
    ratio: float                       # the ratio the cell counts (warnings count 0)
    passed: bool
    where: str                         # "sample 3", "random graph 17"
    classification: str = ""
    finding: object = None             # a testing.oracle.Finding, or None (compiled=eager has none)
    message: str = ""
    reproducer: str = ""
    reproducer_source: str = ""

    def rank(self):
        """Failures first, then the larger ratio (NaN as the largest)."""
        return (not self.passed, math.inf if math.isnan(self.ratio) else self.ratio)


@dataclass
class Cell:
    worst: float = 0.0
    passed: bool = True
    count: int = 0
    classifications: Counter = field(default_factory=Counter)
    evidence: Evidence = None

    def add(self, ratio, passed, classification=None, evidence=None):
        if not np.isnan(ratio):
            self.worst = max(self.worst, float(ratio))
        self.passed = self.passed and bool(passed)
        self.count += 1
        if classification:
            self.classifications[classification] += 1
        return self.offer(evidence)

    def offer(self, evidence):
        """Keep `evidence` if it is worse than the cell's; True if it was kept."""
        if evidence is None or (self.evidence is not None and evidence.rank() <= self.evidence.rank()):
            return False
        self.evidence = evidence
        return True

    def merge(self, other):
        self.worst = max(self.worst, other.worst)
        self.passed = self.passed and other.passed
        self.count += other.count
        self.classifications.update(other.classifications)
        self.offer(other.evidence)


@dataclass
class OpRow:
    cells: dict = field(default_factory=dict)        # column -> Cell, over all dtypes (the table)
    matrix: dict = field(default_factory=dict)       # (column, dtype) -> Cell (the HTML report)
    notes: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)     # the op's own failures (single-op checks) first
    graph_failures: list = field(default_factory=list)   # (steps, message) of the smallest failing graphs
    not_provided: Counter = field(default_factory=Counter)   # --engine: what the engine lacks, and how often

    def messages(self):
        """The evidence to print, simplest first: the op's own failures, then a few minimal graphs."""
        return [message for _, message, _ in self.failures] + [message for _, message in self.graph_failures]

    def keeps(self, size, key=None):
        """Whether an own failure of this size (reproducer.size) would be printed: among the MAX_FAILURES
        smallest, and the smallest of its kind (`key`: its signature)."""
        same = [s for s, _, k in self.failures if key is not None and k == key]
        if same:
            return size < same[0]
        return len(self.failures) < MAX_FAILURES or size < self.failures[-1][0]

    def add_failure(self, message, size=(0, 0), key=None):
        """Keep the MAX_FAILURES smallest of the op's own distinct failures (one per key), smallest first (a
        broken entry counts as smallest: it is printed whatever the samples)."""
        if not self.keeps(size, key):
            return
        self.failures = [entry for entry in self.failures if key is None or entry[2] != key]
        self.failures.append((size, message, key))
        self.failures.sort(key=lambda entry: entry[0])
        del self.failures[MAX_FAILURES:]

    def cell(self, column):
        return self.cells.setdefault(column, Cell())

    def add(self, column, dtype, ratio, passed, classification=None, evidence=None):
        """Count one draw in the column's cell and in its (column, dtype) cell; True if `evidence`
        became the worst of the (column, dtype) cell."""
        self.cell(column).add(ratio, passed, classification, evidence)
        return self.matrix.setdefault((column, dtype), Cell()).add(ratio, passed, classification, evidence)

    @property
    def passed(self):
        return all(c.passed for c in self.cells.values())


def _column(check):
    return "second" if check.startswith("second") else check


def _counted_ratio(finding):
    """The ratio a cell reports: warnings (FD noise, kinks, a wrong reference) are counted in the
    notes instead, since their ratio against a meaningless reference says nothing."""
    return finding.ratio if (finding.classification == "agree" or not finding.passed) else 0.0


def _record(row, report, dtype, where):
    """Fold one CheckReport of a single op into its row, check by check. Returns the evidence that
    became the worst of its cell and failed (it gets the report's message and reproducer)."""
    adopted = []
    for finding in report.findings:
        evidence = Evidence(_counted_ratio(finding), finding.passed, where, finding.classification, finding)
        if row.add(_column(finding.check), dtype, evidence.ratio, finding.passed, finding.classification, evidence) \
                and not finding.passed:
            adopted.append(evidence)
    for note in report.notes():
        row.notes[_short_note(note)] += 1
    return adopted


def _graph_evidence(report, where):
    """A graph's worst finding (failures first) as the evidence of the ops it contains."""
    findings = [(Evidence(_counted_ratio(f), f.passed, where, f.classification, f)) for f in report.findings]
    return max(findings, key=Evidence.rank, default=Evidence(0.0, True, where))


def _record_graph(row, worst, culprits, name, dtype):
    """Fold a graph's worst evidence into the graph column of one op it contains. A failing graph
    counts against the op only if localize() found the op failing on its own inputs there; for the
    other ops of that graph it counts 0 (as a warning does), since its error is another op's.
    Returns the op's evidence if it failed and became the worst of its cell (as _record)."""
    if culprits and name not in culprits:
        evidence = dataclasses.replace(worst, ratio=0.0, passed=True,
                                       classification=f"graph failed, localized to {', '.join(culprits)}")
    else:
        evidence = worst
    adopted = row.add("graphs", dtype, evidence.ratio, evidence.passed, evidence.classification, evidence)
    return [evidence] if adopted and not evidence.passed else []


def _blamed(names, problems):
    """The ops a compiled comparison's problems count against: an op that raised (named in the problem,
    in either mode) only; a difference between the modes, every op of the program."""
    import re
    raised = {match for problem in problems for match in re.findall(r"raised op '([^']+)'", problem)}
    if raised and all("raised op '" in problem for problem in problems):
        return [name for name in names if name in raised] or list(names)
    return list(names)


def _record_compiled(rows, names, problems, where, dtype):
    """sg.compile against eager mode on one program (testing/compiled.py): bit for bit, so a cell is
    0 (equal) or inf; a mismatch counts against every op of the program (an op that raised, against
    that op alone) and is reported with it."""
    classification = "differs from eager mode" if problems else "bit for bit"
    message = f"sg.compile differs from eager mode on {where}: " + "; ".join(problems[:3]) if problems else ""
    blamed = set(_blamed(names, problems)) if problems else set()
    for name in names:
        if problems and name not in blamed:
            rows.setdefault(name, OpRow()).add("compiled", dtype, 0.0, True, "another op raised",
                                               Evidence(0.0, True, where, "another op raised"))
            continue
        row = rows.setdefault(name, OpRow())
        evidence = Evidence(np.inf if problems else 0.0, not problems, where, classification, message=message)
        row.add("compiled", dtype, evidence.ratio, evidence.passed, classification, evidence)
        if problems:    # after the op's own checks' failures: those are the simpler evidence
            row.add_failure(message, (math.inf, 0), key=message)


def _short_note(note):
    for prefix in WARNING_CLASSES:
        if note.startswith(prefix):
            return prefix
    return note


def _signature(report, culprits=()):
    """What makes two failures the same failure: the op (or, for a graph, the ops blamed), the dtype,
    and the first failing kind of check (forward, VJP, 2nd order, JVP, invariants), with whether it
    raised. One reproducer is written per signature (the smallest program seen), so a VJP bug that fails
    forty samples, with or without its second order and forward mode, writes one script, not forty."""
    import hashlib
    from .findings import CHECKS
    order = {check: k for k, check in enumerate(CHECKS)}
    failures = sorted(report.failures(), key=lambda f: order.get(f.check, len(order)))
    first = failures[0] if failures else None
    kind = "" if first is None else first.check.split("_")[0] + (" raised" if "raised" in first.classification else "")
    who = ",".join(culprits) if culprits else ",".join(report.program.op_names())
    text = f"{report.label}|{who}|{report.program.dtype}|{kind}"
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _reproducer(report, directory, culprits=()):
    """The reproducer of a failing report, one file per distinct failure (named by its signature); a
    failure already written keeps the smallest program seen for it."""
    if directory is None:
        return ""
    from . import reproducer
    stem = f"{report.label if report.label != 'graph' else 'graph-' + '-'.join(culprits or ['engine'])}-" \
           f"{report.program.dtype}-{_signature(report, culprits)}"
    path = os.path.join(str(directory), stem + ".py")
    size = reproducer.size(report.program)
    if os.path.exists(path) and reproducer.written_size(path) <= size:
        return path
    return reproducer.write(report.program, report, directory=directory, stem=stem, hashed=False)


def _attach(evidence_list, report, message, reproducer_dir):
    """Give failing evidence its report's message and reproducer: the path and the script's source,
    read from the file the run wrote (rendered in memory when no directory was given)."""
    if not evidence_list:
        return
    if not report.reproducer and reproducer_dir is not None:
        report.reproducer = _reproducer(report, reproducer_dir)
    if report.reproducer:
        with open(report.reproducer) as handle:
            source = handle.read()
    else:
        from . import reproducer
        source = reproducer.render(report.program, report)
    for evidence in evidence_list:
        evidence.message = message or report.message()
        evidence.reproducer = report.reproducer
        evidence.reproducer_source = source


# ---- tasks (run in workers; return plain data) --------------------------------------------------------------

_ENGINES = {}


def _engine(spec):
    """The adapter for an engine spec string (None: scratch_grad itself), loaded once per process."""
    if spec is None:
        return None
    if spec not in _ENGINES:
        from .engines import load_engine
        _ENGINES[spec] = load_engine(spec)
    return _ENGINES[spec]


def _draws(spec, dtype, samples, seed):
    """(where, inputs, params, gen) of one op's checks in one dtype: its regression examples first
    (OpSpec.examples: inputs that once exposed a bug), then `samples` draws of its sampler (a third
    of a non-smooth op's at kinks, a quarter at edges); gen is None for the examples. A sampler
    that raises yields the exception instead of inputs."""
    from ..ops.sampling import sample_inputs
    from .gen import RandomGen, sample_modes
    from .oracle import example_inputs
    for k, (inputs, params) in enumerate(example_inputs(spec, dtype)):
        yield f"example {k}", inputs, params, None
    for k in range(samples):
        gen = RandomGen(seed=(seed, k), dtype=dtype, **sample_modes(spec, k))
        try:
            inputs, params = sample_inputs(spec, gen)
        except Exception as exc:  # noqa: BLE001 - a broken sampler is a failure of the op's entry
            yield f"sample {k}", exc, None, gen
            return
        yield f"sample {k}", inputs, params, gen


def _entry_failure(row, name, dtype, where, what, exc):
    message = f"op '{name}' ({dtype}), {where}: {what}: {type(exc).__name__}: {exc}"
    row.add("forward", dtype, np.inf, False, what, Evidence(np.inf, False, where, what, message=message))
    row.add_failure(message)


def _op_task(name, dtype, samples, seed, reproducer_dir, engine=None):
    from ..errors import NotProvidedError
    from ..ops import REGISTRY
    from .compiled import compare_compiled
    from .faults import raised_by_checker
    from .oracle import check_sample
    from . import reproducer
    from .program import single_op_program
    spec = REGISTRY[name]
    row = OpRow()
    started = time.perf_counter()
    checks = 0
    adapter = _engine(engine)
    for k, (where, inputs, params, gen) in enumerate(_draws(spec, dtype, samples, seed)):
        if isinstance(inputs, Exception):
            _entry_failure(row, name, dtype, where, "its sampler raised", inputs)
            break
        try:
            report = check_sample(spec, inputs, params, cotangent_gen=gen, seed=k, engine=adapter)
        except NotProvidedError as exc:     # the engine lacks the op, or this call form or dtype of it
            row.not_provided[str(exc)] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - both scratch_grad and torch refuse the drawn input
            if raised_by_checker(exc):
                raise
            _entry_failure(row, name, dtype, where, "its sampler drew an input scratch_grad and torch both refuse",
                           exc)
            continue
        checks += 1
        adopted = _record(row, report, dtype, where)
        size = reproducer.size(report.program)
        key = _signature(report) if not report.passed else None
        if not report.passed and (row.keeps(size, key) or adopted):
            report.reproducer = _reproducer(report, reproducer_dir)
            row.add_failure(report.message(), size, key)
            message = report.message()
            _attach(adopted, report, message, reproducer_dir)
        if k % COMPILED_EVERY == 0 and adapter is None:
            program = single_op_program(spec, inputs, params, rng=np.random.default_rng(k))
            if program.differentiable_leaves():
                _record_compiled({name: row}, [name], compare_compiled(program, second_order=False),
                                 f"{where} ({dtype})", dtype)
    return {"kind": "op", "name": name, "dtype": dtype, "row": row, "seconds": time.perf_counter() - started,
            "checks": checks}


def _graph_task(dtype, start, stop, seed, max_ops, reproducer_dir, engine=None, focus=()):
    """Random graphs start..stop; with `focus` (parity --op), graph k is built around focus[k % n], so
    every graph contains an op under check."""
    from ..ops import REGISTRY
    from .compiled import compare_compiled, compare_mixed
    from .gen import RandomGen
    from .graphs import build_graph, check_graph, localize
    adapter = _engine(engine)
    registry = REGISTRY if adapter is None else {n: REGISTRY[n] for n in REGISTRY if n in adapter.ops}
    rows = {}
    notes = Counter()
    graphs = steps = 0
    started = time.perf_counter()
    for k in range(start, stop):
        gen = RandomGen(seed=(seed, 1, k), dtype=dtype)
        require = focus[k % len(focus)] if focus else None
        program = build_graph(gen, max_ops=max_ops, registry=registry, require_op=require)
        if program is None:
            continue
        graphs += 1
        steps += len(program.steps)
        report = check_graph(program, seed=k, engine=adapter)
        notes.update(_short_note(n) for n in report.notes())
        culprits = []
        where = f"random graph {k}"
        message = ""
        if not report.passed:
            culprits = localize(program, seed=k, engine=adapter) or [ENGINE_ROW]
            report.reproducer = _reproducer(report, reproducer_dir, culprits)
            message = report.message() + f"\n  localized to: {', '.join(culprits)}"
        worst = _graph_evidence(report, where)
        for name in program.op_names():
            adopted = _record_graph(rows.setdefault(name, OpRow()), worst, culprits, name, dtype)
            _attach(adopted, report, message, reproducer_dir)
        if adapter is None:                   # sg.compile is scratch_grad's own
            _record_compiled(rows, program.op_names(), compare_compiled(program), f"{where} ({dtype})", dtype)
            _record_compiled(rows, program.op_names(), compare_mixed(program, seed=k),
                             f"{where} ({dtype}) with compiled calls inside", dtype)
        for name in culprits:
            row = rows.setdefault(name, OpRow())
            if name == ENGINE_ROW:
                evidence = dataclasses.replace(worst, ratio=np.inf, passed=False)
                if row.add("graphs", dtype, np.inf, False, evidence.classification, evidence):
                    _attach([evidence], report, message, reproducer_dir)
            row.graph_failures.append((len(program.steps), message))
            row.graph_failures.sort(key=lambda pair: pair[0])          # the smallest graphs first
            del row.graph_failures[MAX_GRAPH_FAILURES:]
    return {"kind": "graphs", "dtype": dtype, "rows": rows, "graphs": graphs, "steps": steps, "notes": notes,
            "seconds": time.perf_counter() - started}


def _run_task(task):
    import torch

    from .imports import load_all
    torch.set_num_threads(1)
    kind, args, imports = task
    load_all(imports)               # modules that register more ops (a fresh worker has only ours)
    return _op_task(*args) if kind == "op" else _graph_task(*args)


# ---- the run ----------------------------------------------------------------------------------------------

@dataclass
class ParityResult:
    rows: dict
    graph_notes: Counter
    dtypes: tuple
    op_checks: int
    graphs: int
    graph_steps: int
    seconds: float
    workers: int
    settings: dict = field(default_factory=dict)     # the run's arguments
    versions: dict = field(default_factory=dict)     # python, numpy, torch, scratch_grad
    started: str = ""                                # ISO time, UTC
    engine: str = "scratch_grad"                     # the engine whose answers were checked

    @property
    def failed_ops(self):
        return sorted(name for name, row in self.rows.items() if not row.passed)

    @property
    def not_provided(self):
        """Ops the engine lacks entirely (never checked)."""
        return sorted(name for name, row in self.rows.items() if row.not_provided and not row.cells)

    @property
    def checked(self):
        """Whether anything was checked at all: an empty run is never a pass."""
        return self.op_checks > 0 or self.graphs > 0

    @property
    def passed(self):
        return self.checked and not self.failed_ops


def run_parity(ops=None, samples=40, graphs=None, dtypes=("float64", "float32"), seed=0, workers=None,
               max_ops=None, reproducer_dir=None, progress=None, imports=(), engine=None):
    """Check `ops` (default: the whole registry) and `graphs` random graphs per dtype (default 1200; with
    `ops` given, FOCUSED_GRAPHS per op, each built around one of them). `imports`: modules (or .py
    paths) that register more ops, imported here and in every worker process. `engine`: an engine spec
    (testing/engines.load_engine: a built-in name or "module:attr") to check instead of scratch_grad;
    the ops it lacks are reported as not provided."""
    from ..ops import REGISTRY
    from .graphs import MAX_OPS
    from .imports import load_all
    load_all(imports)
    names = sorted(REGISTRY) if ops is None else list(ops)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise KeyError(f"not in the registry: {', '.join(unknown)}")
    adapter = _engine(engine)
    if adapter is not None:
        missing = [n for n in names if n not in adapter.ops]
        names = [n for n in names if n in adapter.ops]
    else:
        missing = []
    if graphs is None:
        graphs = 1200 if ops is None else FOCUSED_GRAPHS * len(names)
    focus = tuple(names) if ops is not None else ()
    workers = workers or min(2, os.cpu_count() or 1)
    imports = tuple(imports)
    tasks = [("op", (name, dtype, samples, seed, reproducer_dir, engine), imports)
             for name in names for dtype in dtypes]
    chunk = 25 if not focus else 10
    for dtype in dtypes:
        for start in range(0, graphs if names else 0, chunk):
            tasks.append(("graphs", (dtype, start, min(start + chunk, graphs), seed, max_ops or MAX_OPS,
                                     reproducer_dir, engine, focus), imports))
    # graph batches are the longest tasks: start them first so the pool finishes evenly; but under
    # --op the op's own checks first: they give the simplest evidence soonest
    tasks.sort(key=lambda t: (t[0] != "graphs") if not focus else (t[0] != "op"))
    settings = {"ops": "all" if ops is None else list(names), "samples": samples, "graphs": graphs,
                "dtypes": list(dtypes), "seed": seed, "workers": workers, "max_ops": max_ops or MAX_OPS,
                "imports": list(imports), "reproducer_dir": reproducer_dir, "engine": engine or "scratch_grad"}
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if progress is not None:
        progress(0, len(tasks))
    started = time.perf_counter()
    rows = {name: OpRow() for name in names}
    for name in missing:
        rows[name] = OpRow(not_provided=Counter({f"engine '{engine}' does not provide op '{name}'": 1}))
    op_checks = graph_count = graph_steps = 0
    graph_notes = Counter()
    if workers == 1:
        results = map(_run_task, tasks)
        pool = None
    else:
        import multiprocessing
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        results = pool.map(_run_task, tasks)
    try:
        for done, result in enumerate(results, 1):
            if result["kind"] == "op":
                row = rows.setdefault(result["name"], OpRow())
                _merge(row, result["row"])
                op_checks += result["checks"]
            else:
                graph_count += result["graphs"]
                graph_notes.update(result["notes"])
                graph_steps += result["steps"]
                for name, partial in result["rows"].items():
                    if ops is not None and name not in rows and name != ENGINE_ROW:
                        continue
                    _merge(rows.setdefault(name, OpRow()), partial)
            if progress is not None:
                progress(done, len(tasks))
    finally:
        if pool is not None:
            pool.shutdown()
    return ParityResult(rows, graph_notes, tuple(dtypes), op_checks, graph_count, graph_steps,
                        time.perf_counter() - started, workers, settings, versions(), started_at,
                        engine=adapter.name if adapter is not None else "scratch_grad")


def versions():
    """Versions of what the run used (scratch_grad with its git commit when run from a checkout)."""
    import torch

    from .. import __version__
    found = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
             "scratch_grad": __version__}
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                                timeout=5, cwd=os.path.dirname(os.path.abspath(__file__)))
        if commit.returncode == 0 and commit.stdout.strip():
            found["scratch_grad"] += f" (git {commit.stdout.strip()})"
    except (OSError, subprocess.SubprocessError):
        pass
    found["platform"] = platform.platform()
    return found


def _merge(row, partial):
    row.graph_failures = sorted(row.graph_failures + partial.graph_failures, key=lambda pair: pair[0])
    del row.graph_failures[MAX_GRAPH_FAILURES:]
    row.not_provided.update(partial.not_provided)
    for column, cell in partial.cells.items():
        row.cell(column).merge(cell)
    for key, cell in partial.matrix.items():
        row.matrix.setdefault(key, Cell()).merge(cell)
    row.notes.update(partial.notes)
    for size, message, key in partial.failures:
        row.add_failure(message, size, key)


# ---- output -----------------------------------------------------------------------------------------------

def format_cell(cell):
    if cell is None or cell.count == 0:
        return "-"
    status = "pass" if cell.passed else "FAIL"
    worst = "inf" if not np.isfinite(cell.worst) else f"{cell.worst:.2g}"
    return f"{status} {worst}"


def columns(result):
    """The table's columns: COLUMNS, then any check the oracle added (in the order first seen)."""
    extra = []
    for row in result.rows.values():
        extra += [c for c in row.cells if c not in COLUMNS and c not in extra]
    return list(COLUMNS) + extra


def column_title(column):
    """The table's title of a column; a check added to the oracle uses the oracle's title for it."""
    from .oracle import CHECK_TITLES
    return COLUMN_TITLES.get(column) or CHECK_TITLES.get(column) or column.replace("_", " ")


LEGEND = ("each cell: pass or FAIL, then the worst error over all its draws as a multiple of its tolerance "
          "(below 1 passes; 'inf' where a result was missing, NaN, or raised); '-' not checked; random graphs "
          "(n): how many graphs contained the op (a graph another op was blamed for counts 0 here); "
          "compiled=eager is bit for bit (0 or inf); high precision 'none': the op has no mpmath definition "
          "(entry field mp); notes: passing verdicts worth knowing (finite-difference "
          "noise, kinks, torch imprecise where the high-precision reference confirms scratch_grad)")


def format_table(result):
    names = sorted((n for n in result.rows if n not in result.not_provided), key=lambda n: (n == ENGINE_ROW, n))
    shown = columns(result)
    width = max([len(n) for n in names] + [4]) + 2
    widths = {column: max(15, len(column_title(column))) for column in shown}
    header = f"{'op':<{width}}" + " ".join(f"{column_title(c):<{widths[c]}}" for c in shown) + " notes (warnings)"
    lines = [header, "-" * len(header)]
    for name in names:
        row = result.rows[name]
        cells = []
        for column in shown:
            text = format_cell(row.cells.get(column))
            if column.endswith("_mp") and text == "-" and not _high_precision(name) and name != ENGINE_ROW:
                text = "none"           # no mpmath definition: never covered by the fourth reference
            if column == "graphs" and column in row.cells:
                text += f" ({row.cells[column].count})"
            cells.append(f"{text:<{widths[column]}}")
        notes = ", ".join(f"{note} x{count}" for note, count in sorted(row.notes.items()))
        if row.not_provided:
            notes = ", ".join(filter(None, [notes, f"not provided x{sum(row.not_provided.values())}"]))
        lines.append(f"{name:<{width}}" + " ".join(cells) + " " + notes)
    if result.not_provided:
        lines.append(f"not provided by {result.engine}: {', '.join(result.not_provided)}")
    lines.append("")
    lines += textwrap.wrap(LEGEND, width=min(len(header), 110))
    return "\n".join(lines)


def summary_line(result):
    n_ops = len([n for n in result.rows if n != ENGINE_ROW])
    failed = result.failed_ops
    warnings = Counter(result.graph_notes)
    for row in result.rows.values():
        warnings.update(row.notes)
    mean_steps = result.graph_steps / result.graphs if result.graphs else 0
    n_ops -= len(result.not_provided)
    engine = f"engine {result.engine}: " if result.engine != "scratch_grad" else ""
    text = (f"{engine}{n_ops} ops x {len(result.dtypes)} dtypes ({', '.join(result.dtypes)}): {result.op_checks} op "
            f"checks + {result.graphs} random graphs (mean {mean_steps:.1f} ops) in {result.seconds:.1f} s on "
            f"{result.workers} worker(s): ")
    if not result.checked:
        text += "NOTHING CHECKED (no op check and no graph ran: not a pass)"
    else:
        text += "ALL PASS" if not failed else f"{len(failed)} FAILED ({', '.join(failed)})"
    if result.engine == "scratch_grad":
        text += f" (each graph and every {COMPILED_EVERY}th op check also run through sg.compile: bit for bit as eager)"
    if result.not_provided:
        text += f"; not provided by {result.engine}: {len(result.not_provided)} ops"
    if warnings:
        text += "; warnings (not failures): " + ", ".join(f"{k} x{v}" for k, v in sorted(warnings.items()))
    return text


def json_safe(value):
    """A JSON-ready copy: dataclasses as dicts of their fields (whatever fields they have), tuples as
    lists, NumPy scalars and arrays as Python numbers and lists, NaN and infinities as the strings
    "nan", "inf", "-inf" (JSON has no such numbers; float() reads them back)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _cell_json(cell):
    return {"status": "pass" if cell.passed else "fail", "worst_ratio": json_safe(cell.worst), "checks": cell.count,
            "classifications": dict(cell.classifications), "evidence": json_safe(cell.evidence)}


def _high_precision(name):
    """Whether the op has a high-precision (mpmath) definition: the table says so per op."""
    from ..ops import REGISTRY
    from .high_precision import covers
    return name in REGISTRY and covers(REGISTRY[name])


def to_json(result):
    """The run as JSON-ready data. Per op: `cells` (per column over all dtypes, as the table) and
    `matrix` ({column: {dtype: cell}}, each cell with the evidence of its worst draw: the oracle's
    Finding with all its fields, and for a failure its message, reproducer path and source)."""
    ops = {}
    for name, row in sorted(result.rows.items()):
        matrix = {}
        for (column, dtype), cell in row.matrix.items():
            matrix.setdefault(column, {})[dtype] = _cell_json(cell)
        ops[name] = {"passed": row.passed,
                     "cells": {column: {"status": "pass" if cell.passed else "fail",
                                        "worst_ratio": cell.worst if np.isfinite(cell.worst) else None,
                                        "checks": cell.count}
                               for column, cell in row.cells.items()},
                     "matrix": matrix, "notes": dict(row.notes), "failures": row.messages(),
                     "not_provided": dict(row.not_provided), "high_precision": _high_precision(name)}
    shown = columns(result)
    return {"passed": result.passed, "failed_ops": result.failed_ops, "dtypes": list(result.dtypes),
            "engine": result.engine, "not_provided": result.not_provided, "checked": result.checked,
            "op_checks": result.op_checks, "graphs": result.graphs,
            "mean_graph_ops": result.graph_steps / result.graphs if result.graphs else 0.0,
            "graph_notes": dict(result.graph_notes), "seconds": result.seconds, "workers": result.workers,
            "summary": summary_line(result), "columns": shown,
            "column_titles": {column: column_title(column) for column in shown},
            "settings": json_safe(result.settings), "versions": dict(result.versions), "started": result.started,
            "ops": ops}
