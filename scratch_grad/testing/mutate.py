"""`scratch-grad mutate`: plant known classes of VJP bugs, one at a time, and count how many the
checks catch (the kill rate). A surviving mutant shows where the suite is blind.

Mutants are planted without editing a file: a registry entry's `vjps` tuple is swapped on the
frozen dataclass (object.__setattr__) inside a context manager that restores it, and the engine's
accumulation (`engine._send`) or broadcast reduction (`engine._fit_gradient`) is patched the same
way. Graph nodes read `spec.vjps` when they are recorded, so programs run inside the context use
the mutant.

Classes (per op and input where it applies):
    sign_flip            the gradient negated
    scaled_x2            the gradient times 2
    scaled_x1.001        the gradient times 1.001 (0.1%: tests the float32 tolerances)
    ignores_g            the in-flowing gradient replaced by ones
    wrong_input          input i gets the gradient meant for another input
    operands_swapped     the VJP evaluated with the two operands exchanged
    transposed           the gradient's last two axes swapped (matmul-like ops)
    broadcast_dropped    the engine takes one slice instead of summing a broadcast axis
    broadcast_wrong_axis the engine sums a broadcast gradient over left-aligned (wrong) axes
    kink_right/kink_left the subgradient at kinks and ties taken from one side (non-smooth ops)
    overwrite_fan_out    summing the gradients of a value used several times replaced by keeping the
                         last one (engine._accumulate, every fan-out)
    overwrite_fan_out_leaf  the same at leaves only (engine._send)

A mutant is only run on samples where it changes the gradient (first or second order) compared
with the correct code, bit for bit, and where the correct code passes the checks (a sample that
already fails, a real bug, would kill every mutant for free); a mutant that changes nothing on
any sample is reported as equivalent, not as a survivor. It is killed when the checker fails on
one of its samples.
"""
import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from .. import engine
from ..errors import ShapeError

ENGINE = "(engine)"
VJP_CLASSES = ("sign_flip", "scaled_x2", "scaled_x1.001", "ignores_g", "wrong_input", "operands_swapped",
               "transposed", "kink_right", "kink_left")
ENGINE_OP_CLASSES = ("broadcast_dropped", "broadcast_wrong_axis")
ENGINE_CLASSES = ("overwrite_fan_out", "overwrite_fan_out_leaf")
CLASSES = VJP_CLASSES + ENGINE_OP_CLASSES + ENGINE_CLASSES


def _raw(x):
    return x._data if isinstance(x, engine.Variable) else np.asarray(x)


@dataclass(frozen=True)
class Mutant:
    klass: str
    op: str
    input: int = -1          # the input whose gradient is changed (-1: not input-specific)

    @property
    def label(self):
        where = f"[{self.input}]" if self.input >= 0 else ""
        return f"{self.klass}:{self.op}{where}"

    def plant(self):
        return plant(self.klass, self.op, self.input)

    def reproducer_context(self):
        setup = "from scratch_grad.testing.mutate import plant"
        return setup, f"plant({self.klass!r}, {self.op!r}, {self.input})"


# ---- VJP rewrites --------------------------------------------------------------------------------------------

def _scaled(original, factor):
    def vjp(*args, **params):
        return original(*args, **params) * factor
    return vjp


def _negated(original):
    def vjp(*args, **params):
        return -original(*args, **params)
    return vjp


def _ignoring_g(original):
    def vjp(g, out, *args, **params):
        return original(np.ones_like(_raw(g)), out, *args, **params)
    return vjp


def _swapped_operands(original, first, second):
    def vjp(g, out, *args, **params):
        args = list(args)
        args[first], args[second] = args[second], args[first]
        return original(g, out, *args, **params)
    return vjp


def _next_index(original):
    """Variadic ops: input i gets the VJP of input i+1 (wrapping)."""
    def vjp(g, out, *args, index, **params):
        return original(g, out, *args, index=(index + 1) % len(args), **params)
    return vjp


def _transposed(original):
    def vjp(*args, **params):
        result = original(*args, **params)
        if _raw(result).ndim < 2:
            return result
        from ..ops import transpose
        ndim = _raw(result).ndim
        return transpose(result, axes=tuple(range(ndim - 2)) + (ndim - 1, ndim - 2))
    return vjp


def _kink_side(spec, original, position, direction):
    """The VJP with input `position` nudged toward `direction` by 1, 2, 3... ulps (entry by entry,
    so that ties break and kinks take one side), applied only where the gradient jumps."""
    def vjp(g, out, *args, **params):
        base = original(g, out, *args, **params)
        raw_args = [_raw(a) for a in args]
        x = raw_args[position]
        if x.dtype.kind != "f" or x.size == 0:
            return base
        ulps = np.arange(1, x.size + 1).reshape(x.shape)
        nudged = x + direction * ulps * np.abs(np.spacing(x))
        moved_args = list(raw_args)
        moved_args[position] = nudged.astype(x.dtype)
        try:
            with np.errstate(all="ignore"):
                moved_out = spec.forward(*moved_args, **params)
                moved = np.asarray(original(_raw(g), moved_out, *moved_args, **params))
        except Exception:  # noqa: BLE001 - a nudge the op rejects leaves the VJP unchanged
            return base
        base_raw = _raw(base)
        if moved.shape != base_raw.shape:
            return base
        scale = max(float(np.max(np.abs(base_raw))) if base_raw.size else 0.0, 1e-30)
        jumped = ~np.isclose(moved, base_raw, rtol=1e-5, atol=1e-5 * scale)
        if not jumped.any():
            return base
        return base + np.where(jumped, moved - base_raw, 0.0).astype(base_raw.dtype)
    return vjp


def _differentiable_inputs(spec):
    return [i for i, v in enumerate(spec.vjps) if v is not None]


def _mutated_vjps(spec, klass, position):
    vjps = list(spec.vjps)
    original = vjps[position]
    if klass == "sign_flip":
        vjps[position] = _negated(original)
    elif klass == "scaled_x2":
        vjps[position] = _scaled(original, 2.0)
    elif klass == "scaled_x1.001":
        vjps[position] = _scaled(original, 1.001)
    elif klass == "ignores_g":
        vjps[position] = _ignoring_g(original)
    elif klass == "wrong_input":
        if spec.variadic:
            vjps[position] = _next_index(original)
        else:
            others = [i for i in _differentiable_inputs(spec) if i != position]
            vjps[position] = vjps[others[0]]
    elif klass == "operands_swapped":
        first, second = _differentiable_inputs(spec)[:2]
        vjps[position] = _swapped_operands(original, first, second)
    elif klass == "transposed":
        vjps[position] = _transposed(original)
    elif klass in ("kink_right", "kink_left"):
        vjps[position] = _kink_side(spec, original, position, 1.0 if klass == "kink_right" else -1.0)
    else:
        raise ValueError(f"unknown VJP mutation class {klass!r}")
    return tuple(vjps)


# ---- engine rewrites -----------------------------------------------------------------------------------------

def _broadcast_axes(shape, target):
    lead = len(shape) - len(target)
    stretched = [lead + k for k, s in enumerate(target) if s == 1 and shape[lead + k] != 1]
    return lead, stretched


def _reduce_dropped(gi, target):
    """One slice instead of a sum over every broadcast axis (a forgotten reduction)."""
    shape = _raw(gi).shape
    lead, stretched = _broadcast_axes(shape, target)
    index = tuple(0 if k < lead else slice(0, 1) if k in stretched else slice(None) for k in range(len(shape)))
    from ..ops import getitem
    return getitem(gi, index=index) if isinstance(gi, engine.Variable) else gi[index]


def _reduce_wrong_axis(gi, target):
    """Broadcast axes matched from the left instead of the right (a classic alignment bug)."""
    shape = _raw(gi).shape
    padded = tuple(target) + (1,) * (len(shape) - len(target))
    axes = tuple(k for k, (s, t) in enumerate(zip(shape, padded)) if t == 1 and s != 1)
    if any(t != 1 and t != s for s, t in zip(shape, padded)):
        raise ShapeError(f"cannot reduce {shape} to {tuple(target)} (left-aligned)")
    from ..ops import reshape, sum as total
    reduced = total(gi, axis=axes, keepdims=True) if axes else gi
    return reshape(reduced, tuple(target)) if isinstance(gi, engine.Variable) else _raw(reduced).reshape(target)


@contextlib.contextmanager
def _patched(module, name, replacement):
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


def _fit_gradient_mutant(op, reduce):
    original = engine._fit_gradient

    def fit(gi, inp, node, i, create_graph):
        target = inp._data.shape
        if node._spec.name == op and np.shape(_raw(gi)) != target:
            gi = reduce(gi, target)
        return original(gi, inp, node, i, create_graph)
    return fit


def _accumulate_overwrite(total, total_owned, g, create_graph):
    return g, False                                  # keep the last gradient instead of the sum


def _send_overwrite_at_leaves():
    def send(leaf, g, owned, create_graph):
        leaf._g, leaf._g_owned = g, False            # overwrite the leaf's gradient gathered so far
    return send


@contextlib.contextmanager
def plant(klass, op, input=-1):
    """Context manager: the mutant `klass` planted in op `op` (input `input`), restored on exit."""
    from ..ops import REGISTRY
    if klass == "overwrite_fan_out":
        with _patched(engine, "_accumulate", _accumulate_overwrite):
            yield
        return
    if klass == "overwrite_fan_out_leaf":
        with _patched(engine, "_send", _send_overwrite_at_leaves()):
            yield
        return
    if klass in ENGINE_OP_CLASSES:
        reduce = _reduce_dropped if klass == "broadcast_dropped" else _reduce_wrong_axis
        with _patched(engine, "_fit_gradient", _fit_gradient_mutant(op, reduce)):
            yield
        return
    spec = REGISTRY[op]
    original = spec.vjps
    object.__setattr__(spec, "vjps", _mutated_vjps(spec, klass, input))
    try:
        yield
    finally:
        object.__setattr__(spec, "vjps", original)


def mutants_for(spec):
    """Every mutant that applies to an op (equivalence is decided later, on samples)."""
    inputs = _differentiable_inputs(spec)
    found = []
    for position in inputs:
        for klass in ("sign_flip", "scaled_x2", "scaled_x1.001", "ignores_g"):
            found.append(Mutant(klass, spec.name, position))
        if len(inputs) >= 2 or spec.variadic:
            found.append(Mutant("wrong_input", spec.name, position))
        if len(inputs) >= 2:
            found.append(Mutant("operands_swapped", spec.name, position))
        if spec.kind in ("matmul", "nn"):
            found.append(Mutant("transposed", spec.name, position))
        if not spec.smooth:
            found.append(Mutant("kink_right", spec.name, position))
            found.append(Mutant("kink_left", spec.name, position))
    for klass in ENGINE_OP_CLASSES:
        found.append(Mutant(klass, spec.name))
    return found


def all_mutants(ops=None):
    from ..ops import REGISTRY
    names = sorted(REGISTRY) if ops is None else list(ops)
    found = [m for name in names for m in mutants_for(REGISTRY[name])]
    if ops is None:
        found += [Mutant(klass, ENGINE) for klass in ENGINE_CLASSES]
    return found


# ---- running one mutant ---------------------------------------------------------------------------------------

def _gradients(program, directions):
    """First-order gradients and (when directions is given) second-order ones, or the exception."""
    from .oracle import _scratch_second_order
    try:
        _, grads, _ = program.scratch_gradients()
        result = [np.array(g) for g in grads]
        if directions is not None:
            result += [np.array(_raw(s)) for s in _scratch_second_order(program, directions)]
        return result
    except Exception as exc:  # noqa: BLE001 - a mutant that makes backward raise changes behaviour
        return f"{type(exc).__name__}: {exc}"


def _changes(program, mutant):
    """Whether the mutant changes any gradient of this program, bit for bit."""
    wanted = program.differentiable_leaves()
    if not wanted:
        return False
    rng = np.random.default_rng(0)
    directions = None
    if program.twice_differentiable():
        directions = [rng.uniform(-1, 1, size=np.shape(program.leaves[k])) for k in wanted]
    correct = _gradients(program, directions)
    with mutant.plant():
        mutated = _gradients(program, directions)
    if isinstance(correct, str) or isinstance(mutated, str):
        return correct != mutated
    return any(a.shape != b.shape or not np.array_equal(a, b, equal_nan=True) for a, b in zip(correct, mutated))


def _op_programs(spec, samples, seed, dtypes):
    from ..ops.sampling import sample_inputs
    from .gen import RandomGen, sample_modes
    from .program import single_op_program
    for dtype in dtypes:
        for k in range(samples):
            gen = RandomGen(seed=(seed, k), dtype=dtype, **sample_modes(spec, k))
            try:
                inputs, params = sample_inputs(spec, gen)
                program = single_op_program(spec, inputs, params, cotangent_gen=gen)
            except Exception:  # noqa: BLE001 - the parity run reports broken samplers
                continue
            yield "op", program, k


def _graph_programs(require_op, count, seed, dtypes):
    from .gen import RandomGen
    from .graphs import build_graph
    for dtype in dtypes:
        for k in range(count):
            program = build_graph(RandomGen(seed=(seed, 2, k), dtype=dtype), require_op=require_op)
            if program is not None:
                yield "graph", program, k


_BASELINE = {}     # (kind, program name, dtype, k) -> whether the unmutated code passes there


def _baseline_passes(where, program, k):
    """The checks pass on this sample without the mutant (cached: samples recur across mutants)."""
    from .graphs import check_graph
    from .oracle import check_program
    key = (where, program.name, tuple(program.op_names()), str(program.dtype), k)
    if key not in _BASELINE:
        report = check_program(program, seed=k, label=program.name) if where == "op" else check_graph(program, seed=k)
        _BASELINE[key] = report.passed
    return _BASELINE[key]


def run_mutant(mutant, budget, seed=0, dtypes=("float64", "float32")):
    """Run the checks on a mutant until one fails. Returns a result dict (plain data)."""
    from ..ops import REGISTRY
    from .graphs import check_graph
    from .oracle import check_program
    started = time.perf_counter()
    sources = []
    if mutant.op != ENGINE:
        sources.append(_op_programs(REGISTRY[mutant.op], budget.op_examples, seed, dtypes))
        sources.append(_graph_programs(mutant.op, budget.mutant_graphs, seed, dtypes))
    else:
        sources.append(_graph_programs(None, budget.graph_examples, seed, dtypes))
    distinguishing = checked = baseline_failures = 0
    for source in sources:
        for where, program, k in source:
            checked += 1
            if not _changes(program, mutant):
                continue
            if not _baseline_passes(where, program, k):
                baseline_failures += 1      # the correct code already fails here: proves nothing
                continue
            distinguishing += 1
            with mutant.plant():
                if where == "op":
                    report = check_program(program, seed=k, label=program.name)
                else:
                    report = check_graph(program, seed=k)
            if not report.passed:
                failure = report.failures()[0]
                return {"mutant": mutant.label, "class": mutant.klass, "op": mutant.op, "input": mutant.input,
                        "status": "killed", "seconds": time.perf_counter() - started, "samples": checked,
                        "distinguishing": distinguishing, "baseline_failures": baseline_failures,
                        "detected_by": f"{where}: {failure.check}", "classification": failure.classification}
    status = "survived" if distinguishing else "equivalent"
    return {"mutant": mutant.label, "class": mutant.klass, "op": mutant.op, "input": mutant.input, "status": status,
            "seconds": time.perf_counter() - started, "samples": checked, "distinguishing": distinguishing,
            "baseline_failures": baseline_failures, "detected_by": "", "classification": ""}


@dataclass(frozen=True)
class MutationBudget:
    op_examples: int       # op samples per dtype
    mutant_graphs: int     # graphs containing the op per dtype, after the op samples
    graph_examples: int    # graphs per dtype for engine mutants


def budget_for(profile):
    from .profiles import BUDGETS
    b = BUDGETS[profile]
    return MutationBudget(op_examples=b.op_examples, mutant_graphs=max(10, b.op_examples // 2),
                          graph_examples=b.graph_examples)


def _run_batch(args):
    import torch
    torch.set_num_threads(1)
    mutants, budget, seed, dtypes = args
    return [run_mutant(m, budget, seed, dtypes) for m in mutants]


def run_mutation(ops=None, classes=None, profile="ci", seed=0, workers=None, dtypes=("float64", "float32"),
                 progress=None):
    """Plant every applicable mutant and return the summary dict (the JSON of `scratch-grad mutate`)."""
    budget = budget_for(profile)
    mutants = [m for m in all_mutants(ops) if classes is None or m.klass in classes]
    workers = workers or min(2, os.cpu_count() or 1)
    started = time.perf_counter()
    batches = [mutants[k::max(1, workers * 4)] for k in range(max(1, workers * 4))]
    batches = [b for b in batches if b]
    results = []
    if workers == 1:
        for done, batch in enumerate(batches, 1):
            results += _run_batch((batch, budget, seed, dtypes))
            if progress:
                progress(done, len(batches))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for done, batch_result in enumerate(pool.map(_run_batch, [(b, budget, seed, dtypes) for b in batches]), 1):
                results += batch_result
                if progress:
                    progress(done, len(batches))
    return summarize(results, profile, time.perf_counter() - started)


def summarize(results, profile="ci", seconds=0.0):
    results = sorted(results, key=lambda r: (r["op"], r["class"], r["input"]))
    planted = [r for r in results if r["status"] != "equivalent"]
    killed = [r for r in planted if r["status"] == "killed"]

    def rate(group):
        counted = [r for r in group if r["status"] != "equivalent"]
        done = sum(r["status"] == "killed" for r in counted)
        return {"planted": len(counted), "killed": done, "kill_rate": done / len(counted) if counted else None,
                "equivalent": len(group) - len(counted)}

    per_op, per_class = {}, {}
    for r in results:
        per_op.setdefault(r["op"], []).append(r)
        per_class.setdefault(r["class"], []).append(r)
    detection = [r["seconds"] for r in killed]
    return {"planted": len(planted), "killed": len(killed),
            "kill_rate": len(killed) / len(planted) if planted else None,
            "survivors": [r for r in planted if r["status"] == "survived"],
            "equivalent": [r["mutant"] for r in results if r["status"] == "equivalent"],
            "profile": profile, "seconds": seconds,
            "median_seconds_to_detection": float(np.median(detection)) if detection else None,
            "max_seconds_to_detection": float(np.max(detection)) if detection else None,
            "per_op": {op: rate(group) for op, group in sorted(per_op.items())},
            "per_class": {klass: rate(group) for klass, group in sorted(per_class.items())},
            "mutants": results}


def format_report(summary):
    lines = [f"{'mutation class':<24}{'planted':>8}{'killed':>8}{'kill rate':>11}{'equivalent':>12}"]
    for klass, stats in summary["per_class"].items():
        kill_rate = "-" if stats["kill_rate"] is None else f"{100 * stats['kill_rate']:.1f}%"
        lines.append(f"{klass:<24}{stats['planted']:>8}{stats['killed']:>8}{kill_rate:>11}{stats['equivalent']:>12}")
    lines.append("")
    lines.append("killed/planted per op:")
    cells = [f"{op} {s['killed']}/{s['planted']}" for op, s in summary["per_op"].items()]
    width = max((len(c) for c in cells), default=0) + 2
    for start in range(0, len(cells), 4):
        lines.append("  " + "".join(f"{c:<{width}}" for c in cells[start:start + 4]).rstrip())
    weak = {op: s for op, s in summary["per_op"].items() if s["kill_rate"] is not None and s["kill_rate"] < 1}
    if weak:
        lines.append("")
        lines.append("ops with surviving mutants: " + ", ".join(
            f"{op} ({s['killed']}/{s['planted']})" for op, s in weak.items()))
    if summary["survivors"]:
        lines.append("")
        lines.append("SURVIVORS (the suite is blind here):")
        for r in summary["survivors"]:
            lines.append(f"  {r['mutant']}: changed the gradient on {r['distinguishing']} of {r['samples']} "
                         "samples, no check failed")
    stale = [m for m in summary["equivalent"] if m.split(":")[0] in ENGINE_CLASSES]
    if stale:
        lines.append("")
        lines.append("WARNING: engine mutants changed nothing (" + ", ".join(stale) + "): the engine no longer "
                     "calls the patched function; update scratch_grad/testing/mutate.py")
    kill_rate = "-" if summary["kill_rate"] is None else f"{100 * summary['kill_rate']:.1f}%"
    lines.append("")
    median = summary["median_seconds_to_detection"]
    lines.append(f"kill rate {kill_rate}: {summary['killed']} of {summary['planted']} planted mutants killed "
                 f"({len(summary['equivalent'])} equivalent ones not counted), profile '{summary['profile']}', "
                 f"{summary['seconds']:.1f} s" + (f", median time to detection {1000 * median:.0f} ms"
                                                 if median is not None else ""))
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="scratch-grad mutate",
        description="Plant known classes of VJP bugs into the registry one at a time and report how many the "
                    "checks catch (kill rate per op and per class). Surviving mutants show where the suite is blind.")
    parser.add_argument("--op", action="append", dest="ops", metavar="NAME", help="only this op (repeatable)")
    parser.add_argument("--class", action="append", dest="classes", metavar="CLASS", choices=CLASSES,
                        help="only this mutation class (repeatable)")
    parser.add_argument("--profile", default="ci", choices=["ci", "dev", "fuzz"],
                        help="sample budget of the checks (default ci)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: min(2, cores))")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON (planted, killed, kill_rate, "
                                                       "survivors, per_op, per_class, mutants)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        import torch  # noqa: F401 - the reference the checks compare with
    except ImportError:
        print("scratch-grad mutate needs torch (the reference): pip install 'scratch_grad[test]'", file=sys.stderr)
        return 2
    from ..ops import REGISTRY
    if args.ops:
        unknown = [n for n in args.ops if n not in REGISTRY]
        if unknown:
            print(f"scratch-grad mutate: unknown op(s) {', '.join(unknown)}", file=sys.stderr)
            return 2

    def progress(done, total):
        if sys.stderr.isatty():
            print(f"\r{done}/{total} batches", end="", file=sys.stderr, flush=True)

    summary = run_mutation(ops=args.ops, classes=args.classes, profile=args.profile, seed=args.seed,
                           workers=args.workers, progress=progress)
    if sys.stderr.isatty():
        print("\r", end="", file=sys.stderr)
    print(format_report(summary))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)
    return 0 if not summary["survivors"] else 1


if __name__ == "__main__":
    sys.exit(main())
