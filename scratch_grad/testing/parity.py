"""The parity run behind `scratch-grad parity`: every registry op, three ways, plus random graphs.

Work is split into tasks (one op in one dtype; a batch of random graphs) that run in worker
processes; each returns plain data that is merged into one table: op x (forward, VJP vs torch,
VJP vs FD, second order, random graphs containing the op), each cell the worst error relative to
its tolerance over all the draws, and pass/fail.
"""
import os
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


@dataclass
class Cell:
    worst: float = 0.0
    passed: bool = True
    count: int = 0

    def add(self, ratio, passed):
        if not np.isnan(ratio):
            self.worst = max(self.worst, float(ratio))
        self.passed = self.passed and bool(passed)
        self.count += 1

    def merge(self, other):
        self.worst = max(self.worst, other.worst)
        self.passed = self.passed and other.passed
        self.count += other.count


@dataclass
class OpRow:
    cells: dict = field(default_factory=dict)
    notes: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)

    def cell(self, column):
        return self.cells.setdefault(column, Cell())

    @property
    def passed(self):
        return all(c.passed for c in self.cells.values())


def _column(check):
    return "second" if check.startswith("second") else check


def _counted_ratio(finding):
    """The ratio a cell reports: warnings (FD noise, kinks, a wrong reference) are counted in the
    notes instead, since their ratio against a meaningless reference says nothing."""
    return finding.ratio if (finding.classification == "agree" or not finding.passed) else 0.0


def _record(row, report):
    """Fold one CheckReport of a single op into its row, check by check."""
    for finding in report.findings:
        row.cell(_column(finding.check)).add(_counted_ratio(finding), finding.passed)
    for note in report.notes():
        row.notes[_short_note(note)] += 1


def _record_graph(row, report, guilty):
    """Fold a graph's report into the graph column of one op it contains; a failing graph counts
    against the op only if localize() found the op failing on its own inputs there."""
    worst = max((_counted_ratio(f) for f in report.findings), default=0.0)
    row.cell("graphs").add(worst, report.passed or not guilty)


def _record_compiled(rows, names, problems, where):
    """sg.compile against eager mode on one program (testing/compiled.py): bit for bit, so a cell is
    0 (equal) or inf; a mismatch counts against every op of the program and is reported with it."""
    for name in names:
        row = rows.setdefault(name, OpRow())
        row.cell("compiled").add(np.inf if problems else 0.0, not problems)
        if problems and len(row.failures) < 3:
            row.failures.append(f"sg.compile differs from eager mode on {where}: " + "; ".join(problems[:3]))


def _short_note(note):
    for prefix in WARNING_CLASSES:
        if note.startswith(prefix):
            return prefix
    return note


def _reproducer(report, directory):
    if directory is None:
        return ""
    from . import reproducer
    return reproducer.write(report.program, report, directory=directory)


# ---- tasks (run in workers; return plain data) --------------------------------------------------------------

def _op_task(name, dtype, samples, seed, reproducer_dir):
    from ..ops import REGISTRY
    from ..ops.sampling import sample_inputs
    from .compiled import compare_compiled
    from .gen import RandomGen, sample_modes
    from .oracle import check_sample
    from .program import single_op_program
    spec = REGISTRY[name]
    row = OpRow()
    started = time.perf_counter()
    for k in range(samples):
        gen = RandomGen(seed=(seed, k), dtype=dtype, **sample_modes(spec, k))
        try:
            inputs, params = sample_inputs(spec, gen)
        except Exception as exc:  # noqa: BLE001 - a broken sampler is a failure of the op's entry
            row.cell("forward").add(np.inf, False)
            row.failures.append(f"op '{name}' ({dtype}): its sampler raised {type(exc).__name__}: {exc}")
            break
        report = check_sample(spec, inputs, params, cotangent_gen=gen, seed=k)
        _record(row, report)
        if not report.passed and len(row.failures) < 3:
            report.reproducer = _reproducer(report, reproducer_dir)
            row.failures.append(report.message())
        if k % COMPILED_EVERY == 0:
            program = single_op_program(spec, inputs, params, rng=np.random.default_rng(k))
            if program.differentiable_leaves():
                _record_compiled({name: row}, [name], compare_compiled(program, second_order=False),
                                 f"sample {k} ({dtype})")
    return {"kind": "op", "name": name, "dtype": dtype, "row": row, "seconds": time.perf_counter() - started,
            "checks": samples}


def _graph_task(dtype, start, stop, seed, max_ops, reproducer_dir):
    from .compiled import compare_compiled
    from .gen import RandomGen
    from .graphs import build_graph, check_graph, localize
    rows = {}
    notes = Counter()
    graphs = steps = 0
    started = time.perf_counter()
    for k in range(start, stop):
        gen = RandomGen(seed=(seed, 1, k), dtype=dtype)
        program = build_graph(gen, max_ops=max_ops)
        if program is None:
            continue
        graphs += 1
        steps += len(program.steps)
        report = check_graph(program, seed=k)
        notes.update(_short_note(n) for n in report.notes())
        culprits = []
        if not report.passed:
            culprits = localize(program, seed=k) or [ENGINE_ROW]
            report.reproducer = _reproducer(report, reproducer_dir)
        for name in program.op_names():
            _record_graph(rows.setdefault(name, OpRow()), report, name in culprits)
        _record_compiled(rows, program.op_names(), compare_compiled(program), f"random graph {k} ({dtype})")
        for name in culprits:
            row = rows.setdefault(name, OpRow())
            if name == ENGINE_ROW:
                row.cell("graphs").add(np.inf, False)
            if len(row.failures) < 3:
                row.failures.append(report.message() + f"\n  localized to: {', '.join(culprits)}")
    return {"kind": "graphs", "dtype": dtype, "rows": rows, "graphs": graphs, "steps": steps, "notes": notes,
            "seconds": time.perf_counter() - started}


def _run_task(task):
    import importlib

    import torch
    torch.set_num_threads(1)
    kind, args, imports = task
    for module in imports:          # modules that register more ops (a fresh worker has only ours)
        importlib.import_module(module)
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

    @property
    def failed_ops(self):
        return sorted(name for name, row in self.rows.items() if not row.passed)

    @property
    def passed(self):
        return not self.failed_ops


def run_parity(ops=None, samples=40, graphs=1200, dtypes=("float64", "float32"), seed=0, workers=None,
               max_ops=None, reproducer_dir=None, progress=None, imports=()):
    """Check `ops` (default: the whole registry) and `graphs` random graphs per dtype. `imports`:
    modules that register more ops, imported here and in every worker process."""
    import importlib

    from ..ops import REGISTRY
    from .graphs import MAX_OPS
    for module in imports:
        importlib.import_module(module)
    names = sorted(REGISTRY) if ops is None else list(ops)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise KeyError(f"not in the registry: {', '.join(unknown)}")
    workers = workers or min(2, os.cpu_count() or 1)
    imports = tuple(imports)
    tasks = [("op", (name, dtype, samples, seed, reproducer_dir), imports) for name in names for dtype in dtypes]
    chunk = 25
    for dtype in dtypes:
        for start in range(0, graphs, chunk):
            tasks.append(("graphs", (dtype, start, min(start + chunk, graphs), seed, max_ops or MAX_OPS,
                                     reproducer_dir), imports))
    # graph batches are the longest tasks: start them first so the pool finishes evenly
    tasks.sort(key=lambda t: t[0] != "graphs")
    started = time.perf_counter()
    rows = {name: OpRow() for name in names}
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
                        time.perf_counter() - started, workers)


def _merge(row, partial):
    for column, cell in partial.cells.items():
        row.cell(column).merge(cell)
    row.notes.update(partial.notes)
    row.failures.extend(partial.failures[:max(0, 3 - len(row.failures))])


# ---- output -----------------------------------------------------------------------------------------------

def format_cell(cell):
    if cell is None or cell.count == 0:
        return "-"
    status = "pass" if cell.passed else "FAIL"
    worst = "inf" if not np.isfinite(cell.worst) else f"{cell.worst:.2g}"
    return f"{status} {worst}"


def format_table(result):
    names = sorted(result.rows, key=lambda n: (n == ENGINE_ROW, n))
    width = max([len(n) for n in names] + [4]) + 2
    header = f"{'op':<{width}}" + " ".join(f"{COLUMN_TITLES[c]:<15}" for c in COLUMNS) + " notes (warnings)"
    lines = [header, "-" * len(header)]
    for name in names:
        row = result.rows[name]
        cells = []
        for column in COLUMNS:
            text = format_cell(row.cells.get(column))
            if column == "graphs" and column in row.cells:
                text += f" ({row.cells[column].count})"
            cells.append(f"{text:<15}")
        notes = ", ".join(f"{note} x{count}" for note, count in sorted(row.notes.items()))
        lines.append(f"{name:<{width}}" + " ".join(cells) + " " + notes)
    return "\n".join(lines)


def summary_line(result):
    n_ops = len([n for n in result.rows if n != ENGINE_ROW])
    failed = result.failed_ops
    warnings = Counter(result.graph_notes)
    for row in result.rows.values():
        warnings.update(row.notes)
    mean_steps = result.graph_steps / result.graphs if result.graphs else 0
    text = (f"{n_ops} ops x {len(result.dtypes)} dtypes ({', '.join(result.dtypes)}): {result.op_checks} op checks "
            f"+ {result.graphs} random graphs (mean {mean_steps:.1f} ops) in {result.seconds:.1f} s on "
            f"{result.workers} worker(s): ")
    text += "ALL PASS" if not failed else f"{len(failed)} FAILED ({', '.join(failed)})"
    text += f" (each graph and every {COMPILED_EVERY}th op check also run through sg.compile: bit for bit as eager)"
    if warnings:
        text += "; warnings (not failures): " + ", ".join(f"{k} x{v}" for k, v in sorted(warnings.items()))
    return text


def to_json(result):
    ops = {}
    for name, row in sorted(result.rows.items()):
        ops[name] = {"passed": row.passed,
                     "cells": {column: {"status": "pass" if cell.passed else "fail",
                                        "worst_ratio": cell.worst if np.isfinite(cell.worst) else None,
                                        "checks": cell.count}
                               for column, cell in row.cells.items()},
                     "notes": dict(row.notes), "failures": row.failures}
    return {"passed": result.passed, "failed_ops": result.failed_ops, "dtypes": list(result.dtypes),
            "op_checks": result.op_checks, "graphs": result.graphs,
            "mean_graph_ops": result.graph_steps / result.graphs if result.graphs else 0.0,
            "graph_notes": dict(result.graph_notes), "seconds": result.seconds, "workers": result.workers,
            "summary": summary_line(result), "ops": ops}
