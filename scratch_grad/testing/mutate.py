"""Mutation testing behind `scratch-grad mutate` (cli/mutate.py): plant known classes of VJP bugs, one at a time, and count how many the
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

Conditional classes (testing/planted.py: each shows only under one condition, per op and input):
    at_zero, at_tie, at_inf  NaN / a doubled gradient where the input is 0, ties, or is +-inf
    on_empty, on_0d          ZeroDivisionError on an empty input, AxisError on a 0-d input
    negative_axis            negative axes counted from the front (ops with an axis param)
    double_backward_raw      under create_graph the VJP drops to raw arrays (second order loses terms)
    double_backward_frozen   under create_graph the VJP reads its inputs as raw arrays (loses the x terms)
    alias_returns_g          the result written into the in-flowing g, and g returned
    alias_mutates_g          g modified in place after the result was computed
    dtype_float64            a float32 VJP returns float64
    keyword_ignored          the VJP called without one keyword param (one mutant per keyword: std's ddof)
    scalar_mishandled        a Python-number input (x ** 3's exponent) taken off by one by the VJP
    vjp_raises               ValueError on every call
    vjp_raises_low_rank      IndexError on inputs of fewer than 2 axes
    vjp_raises_create_graph  TypeError under create_graph

Compiler classes (sg.compile's generated code, killed by the compiled = eager comparisons):
    compiled_inplace_fan_out  fan-out summed in place into the first gradient, which may be the
                              cotangent eager code handed to the compiled call
    compiled_shared_gradient  one gradient buffer returned for two inputs of a compiled call, which
                              the engine then accumulates into in place

A mutant is only run on samples where it changes behaviour compared with the correct code and
where the correct code passes the checks (a sample that already fails, a real bug, would kill
every mutant for free); a mutant that changes nothing on any sample is reported as equivalent, not
as a survivor. Behaviour is: the gradients (first and second order, bit for bit but for changes
below ROUNDING_ULPS units in the last place of a gradient's largest entry) or the exception
raised, the program's arrays changed in place (constants, cotangents), and each call of the
mutated VJP as observed directly (the kinds of call: its result's dtype and shape, whether g or
an input changed during the call). For a conditional class, the conditions that hold at each op's
VJP calls are learnt once per sample from the correct code (planted.probe): where the mutant's
never does, it cannot change anything and is not run. It is killed when the checker fails on one of its samples; an exception that escapes the checker
(instead of being reported) is not a kill: the mutant is listed as a survivor, with the exception.
"""
import contextlib
import os
import time
from dataclasses import dataclass, replace

import numpy as np

from .. import engine
from ..errors import ShapeError
from . import planted as conditional
from .faults import CheckerError, checker_error, describe, raised_by_checker

ENGINE = "(engine)"
VJP_CLASSES = ("sign_flip", "scaled_x2", "scaled_x1.001", "ignores_g", "wrong_input", "operands_swapped",
               "transposed", "kink_right", "kink_left")
ENGINE_OP_CLASSES = ("broadcast_dropped", "broadcast_wrong_axis")
ENGINE_CLASSES = ("overwrite_fan_out", "overwrite_fan_out_leaf")
CONDITIONAL_CLASSES = conditional.CLASSES
COMPILER_CLASSES = ("compiled_inplace_fan_out", "compiled_shared_gradient")
CLASSES = VJP_CLASSES + ENGINE_OP_CLASSES + ENGINE_CLASSES + CONDITIONAL_CLASSES + COMPILER_CLASSES


def _array(x):
    """The ndarray behind a Variable, or x as an array (Python numbers among a VJP's arguments)."""
    return np.asarray(engine.raw(x))


@dataclass(frozen=True)
class Mutant:
    klass: str
    op: str
    input: int = -1          # the input whose gradient is changed (-1: not input-specific)
    detail: str = ""         # keyword_ignored: the keyword

    @property
    def label(self):
        where = f"[{self.input}]" if self.input >= 0 else ""
        detail = f"({self.detail})" if self.detail else ""
        return f"{self.klass}:{self.op}{where}{detail}"

    @classmethod
    def from_result(cls, result):
        """The mutant of one entry of run_mutation's `mutants` list."""
        return cls(result["class"], result["op"], result["input"], result.get("detail", ""))

    def plant(self):
        return plant(self.klass, self.op, self.input, self.detail)

    @property
    def trigger(self):
        """The condition (planted.triggers) some VJP call of the op's input (of any input, for input -1)
        must meet for the mutant to change anything; None when it may change anything anywhere."""
        if self.klass in CONDITIONAL_CLASSES:
            return conditional.trigger_of(self.klass, self.detail)
        if self.klass in ENGINE_OP_CLASSES:
            return conditional.BROADCAST      # the engine reduces only results of another shape
        return None


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
        return original(np.ones_like(_array(g)), out, *args, **params)
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
        if _array(result).ndim < 2:
            return result
        from ..ops import transpose
        ndim = _array(result).ndim
        return transpose(result, axes=tuple(range(ndim - 2)) + (ndim - 1, ndim - 2))
    return vjp


def _kink_side(spec, original, position, direction):
    """The VJP with input `position` nudged toward `direction` by 1, 2, 3... ulps (entry by entry,
    so that ties break and kinks take one side), applied only where the gradient jumps."""
    def vjp(g, out, *args, **params):
        base = original(g, out, *args, **params)
        raw_args = [_array(a) for a in args]
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
                moved = np.asarray(original(_array(g), moved_out, *moved_args, **params))
        except Exception:  # noqa: BLE001 - a nudge the op rejects leaves the VJP unchanged
            return base
        base_raw = _array(base)
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


def _mutated_vjps(spec, klass, position, detail=""):
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
    elif klass in CONDITIONAL_CLASSES:
        vjps[position] = conditional.conditional(spec, klass, position, original, detail)
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
    shape = _array(gi).shape
    lead, stretched = _broadcast_axes(shape, target)
    index = tuple(0 if k < lead else slice(0, 1) if k in stretched else slice(None) for k in range(len(shape)))
    from ..ops import getitem
    return getitem(gi, index=index) if isinstance(gi, engine.Variable) else gi[index]


def _reduce_wrong_axis(gi, target):
    """Broadcast axes matched from the left instead of the right (a classic alignment bug)."""
    shape = _array(gi).shape
    padded = tuple(target) + (1,) * (len(shape) - len(target))
    axes = tuple(k for k, (s, t) in enumerate(zip(shape, padded)) if t == 1 and s != 1)
    if any(t != 1 and t != s for s, t in zip(shape, padded)):
        raise ShapeError(f"cannot reduce {shape} to {tuple(target)} (left-aligned)")
    from ..ops import reshape, sum as total
    reduced = total(gi, axis=axes, keepdims=True) if axes else gi
    return reshape(reduced, tuple(target)) if isinstance(gi, engine.Variable) else _array(reduced).reshape(target)


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
        if node._spec.name == op and np.shape(_array(gi)) != target:
            gi = reduce(gi, target)
        return original(gi, inp, node, i, create_graph)
    return fit


def _accumulate_overwrite(total, total_owned, g, create_graph):
    return g, False                                  # keep the last gradient instead of the sum


def _send_overwrite_at_leaves():
    def send(leaf, g, owned, create_graph):
        leaf._g, leaf._g_owned = g, False            # overwrite the leaf's gradient gathered so far
    return send


_COMPILER_TEMPLATES = {
    # fan-out summed in place into the first gradient: when that is the g eager code handed the compiled
    # node (a VJP that returns g, as add's), eager code's buffer changes under it
    "compiled_inplace_fan_out": ("_ACCUMULATE", "{name} += t          # fan-out, in place (planted)"),
    # one buffer returned for two inputs: the engine takes each as its own and accumulates into it
    "compiled_shared_gradient": ("_DEALIAS", "pass                  # {name} may be {other} (planted)"),
}


@contextlib.contextmanager
def plant(klass, op, input=-1, detail=""):
    """Context manager: the mutant `klass` planted in op `op` (input `input`; `detail`: the keyword of a
    keyword_ignored mutant), restored on exit."""
    from ..ops import REGISTRY
    if klass in _COMPILER_TEMPLATES:
        from ..compiler import codegen     # where the generated code's templates live
        name, template = _COMPILER_TEMPLATES[klass]
        with _patched(codegen, name, template):
            yield
        return
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
    object.__setattr__(spec, "vjps", _mutated_vjps(spec, klass, input, detail))
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
        found += [Mutant(klass, spec.name, position, detail) for klass, detail in conditional.applicable(spec, position)]
    for klass in ENGINE_OP_CLASSES:
        found.append(Mutant(klass, spec.name))
    return found


def all_mutants(ops=None):
    from ..ops import REGISTRY
    names = sorted(REGISTRY) if ops is None else list(ops)
    found = [m for name in names for m in mutants_for(REGISTRY[name])]
    if ops is None:
        found += [Mutant(klass, ENGINE) for klass in ENGINE_CLASSES + COMPILER_CLASSES]
    return found


# ---- the samples a mutant runs on, and what the correct code does there ------------------------------------------

class _Sample:
    """One program the mutants of an op run on, and what the correct code does there, learnt once per
    process (the same samples serve every mutant of the op, and engine mutants share theirs)."""
    __slots__ = ("where", "k", "program", "triggers", "behaviour", "passes")

    def __init__(self, where, k, program):
        self.where, self.k, self.program = where, k, program
        self.triggers = None       # {(op, input): the conditions that held at its VJP calls}
        self.behaviour = {}        # observed (op, input), None or "compiled" -> the correct code's behaviour
        self.passes = {}           # "check" or "compiled" -> the checks pass on the correct code


_SAMPLES = {}      # (kind, op, dtype, seed, k) -> _Sample, or None when the sampler could not draw one


def _fresh(program):
    """A copy of the program whose arrays a run may change in place without touching the cached one."""
    def copy(values):
        return [v.copy() if isinstance(v, np.ndarray) else v for v in values]
    return replace(program, leaves=copy(program.leaves), constants=copy(program.constants),
                   cotangents=copy(program.cotangents), meta=dict(program.meta))


def _op_sample(spec, dtype, seed, k):
    from ..ops.sampling import sample_inputs
    from .gen import RandomGen, sample_modes
    from .program import single_op_program
    gen = RandomGen(seed=(seed, k), dtype=dtype, **sample_modes(spec, k))
    try:
        inputs, params = sample_inputs(spec, gen)
        return _Sample("op", k, single_op_program(spec, inputs, params, cotangent_gen=gen))
    except Exception:  # noqa: BLE001 - the parity run reports broken samplers
        return None


def _graph_sample(require_op, dtype, seed, k):
    from .gen import RandomGen
    from .graphs import build_graph
    program = build_graph(RandomGen(seed=(seed, 2, k), dtype=dtype), require_op=require_op)
    return None if program is None else _Sample("graph", k, program)


def _samples(mutant, budget, seed, dtypes):
    from ..ops import REGISTRY
    if mutant.op != ENGINE:
        kinds = [("op", budget.op_examples), ("graph", budget.mutant_graphs)]
    else:
        kinds = [("graph", budget.graph_examples)]
    for kind, count in kinds:
        for dtype in dtypes:
            for k in range(count):
                key = (kind, mutant.op, dtype, seed, k)
                if key not in _SAMPLES:
                    _SAMPLES[key] = (_op_sample(REGISTRY[mutant.op], dtype, seed, k) if kind == "op" else
                                     _graph_sample(None if mutant.op == ENGINE else mutant.op, dtype, seed, k))
                if _SAMPLES[key] is not None:
                    yield _SAMPLES[key]


def _same(a, b):
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        return False
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


# a gradient change this small, in units in the last place of its largest entry, is rounding: far below any
# tolerance a checker can use (the error model allows the rounding of every op on the path), and above the
# few ulps by which a tiny term added in (a doubled 1e-16) moves a float32 second order
ROUNDING_ULPS = 16


def _within_rounding(a, b, ulps):
    """a and b equal up to `ulps` units in the last place of their largest finite entry (same shape, dtype,
    NaN and infinity positions): a mutant whose only effect on a sample is below the result's resolution
    (doubling a 1e-16 entry of a gradient of size 10, or the same second order summed in another order)
    changes nothing a checker could see."""
    if a.shape != b.shape or a.dtype != b.dtype or a.dtype.kind != "f":
        return False
    special = ~np.isfinite(a) | ~np.isfinite(b)
    if not np.array_equal(a[special], b[special], equal_nan=True):
        return False
    finite = ~special
    if not finite.any():
        return True
    scale = max(float(np.max(np.abs(a[finite]))), float(np.max(np.abs(b[finite]))))
    return bool(np.all(np.abs(a[finite].astype(np.float64) - b[finite]) <= ulps * np.spacing(a.dtype.type(scale))))


def _differ(a, b, ulps=0):
    """Whether two behaviours (nested lists of arrays, strings, numbers) differ: arrays bit for bit, or
    by more than `ulps` units in the last place (_within_rounding)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return True
        return not (_same(a, b) or (ulps and _within_rounding(a, b, ulps)))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) != len(b) or any(_differ(x, y, ulps) for x, y in zip(a, b))
    return a != b


def _run_program(program):
    """The gradients (first order, and second order when every op is twice differentiable), or the
    exception the code under check raised, as 'Type: message'."""
    from .analytic import scratch_second_order
    wanted = program.differentiable_leaves()
    try:
        _, grads, _ = program.scratch_gradients()
        result = [np.array(g) for g in grads]
        if program.twice_differentiable() and wanted:
            rng = np.random.default_rng(0)
            directions = [rng.uniform(-1, 1, size=np.shape(program.leaves[k])) for k in wanted]
            result += [np.array(_array(s)) for s in scratch_second_order(program, directions)]
        return result
    except Exception as exc:  # noqa: BLE001 - a mutant that makes backward raise changes behaviour
        if raised_by_checker(exc):
            raise checker_error(exc, "scratch-grad mutate, running a program") from exc
        return f"{type(exc).__name__}: {exc}"


def _observation(g, args, result, arrays, before):
    """One VJP call as a direct check of the VJP protocol sees it (values are compared in the gradients):
    the result's dtype and shape, and which of g and the inputs changed during the call. Returning g
    itself or a view of it is allowed (the engine never accumulates into a buffer it does not own), so
    it is not a change: only writing into one is."""
    value = _array(result)
    return (str(np.asarray(value).dtype), np.shape(value), tuple(not _same(a, b) for a, b in zip(arrays, before)))


def _observer(vjp, calls):
    def observed(g, out, *args, **params):
        arrays = [a for a in (g, *args) if type(a) is np.ndarray]
        before = [a.copy() for a in arrays]
        result = vjp(g, out, *args, **params)
        calls.append(_observation(g, args, result, arrays, before))
        return result
    return observed


@contextlib.contextmanager
def _observing(observe, calls):
    """Every call of the VJP of (op, input) `observe` appended to `calls` as an _observation."""
    if observe is None:
        yield
        return
    from ..ops import REGISTRY
    op, position = observe
    spec = REGISTRY[op]
    original = spec.vjps
    vjps = list(original)
    vjps[position] = _observer(original[position], calls)
    object.__setattr__(spec, "vjps", tuple(vjps))
    try:
        yield
    finally:
        object.__setattr__(spec, "vjps", original)


def _arrays(program):
    return [v for v in program.constants + program.cotangents if isinstance(v, np.ndarray)]


def _behaviour(program, observe):
    """[the gradients or the exception, the observed VJP calls, which of the program's constants and
    cotangents changed in place] of one run of the program. observe: (op, input) whose VJP calls are
    observed, None, or "compiled" (the compiled = eager comparisons' runs instead)."""
    fresh = _fresh(program)
    if observe == "compiled":
        from .compiled import compiled_behaviour
        outcome, calls = compiled_behaviour(fresh), []
    else:
        calls = []
        with _observing(observe, calls):
            outcome = _run_program(fresh)
    changed = [k for k, (a, b) in enumerate(zip(_arrays(program), _arrays(fresh))) if not _same(a, b)]
    # the kinds of call seen, not their number: a mutant may change how many nodes a create_graph
    # backward records (and so calls) without changing any value
    return [outcome, sorted(set(calls), key=repr), changed]


def _observed(mutant):
    if mutant.klass in COMPILER_CLASSES:
        return "compiled"
    if mutant.op == ENGINE or mutant.input < 0:
        return None
    return (mutant.op, mutant.input)


def _changes(mutant, sample):
    """Whether the mutant changes what this sample does (see the module docstring)."""
    observe = _observed(mutant)
    if observe not in sample.behaviour:
        sample.behaviour[observe] = _behaviour(sample.program, observe)
    with mutant.plant():
        mutated = _behaviour(sample.program, observe)
    # the compiled = eager comparisons are bit for bit: there one bit is a change
    return _differ(sample.behaviour[observe], mutated, 0 if observe == "compiled" else ROUNDING_ULPS)


def _can_change(mutant, sample):
    """False when the mutant's condition never holds on the sample (learnt once from the correct code)."""
    trigger = mutant.trigger
    if trigger is None:
        return True
    if sample.triggers is None:
        record = {}
        with conditional.probe(record):
            _run_program(_fresh(sample.program))
        sample.triggers = record
    if mutant.input < 0:                          # any input of the op
        return any(trigger in seen for (op, _), seen in sample.triggers.items() if op == mutant.op)
    return trigger in sample.triggers.get((mutant.op, mutant.input), ())


def _check(mutant, sample):
    """(detected_by, classification) of the first failure the checks report on the sample, or None."""
    program = _fresh(sample.program)
    if mutant.klass in COMPILER_CLASSES:
        from .compiled import compare_compiled, compare_mixed
        problems = compare_mixed(program, seed=sample.k) + compare_compiled(_fresh(sample.program))
        return ("compiled: " + problems[0], "sg.compile differs from eager mode") if problems else None
    from .graphs import check_graph
    from .oracle import check_program
    if sample.where == "op":
        report = check_program(program, seed=sample.k, label=program.name)
    else:
        report = check_graph(program, seed=sample.k)
    if report.passed:
        return None
    failure = report.failures()[0]
    return f"{sample.where}: {failure.check}", failure.classification


def _baseline_passes(mutant, sample):
    """The checks pass on this sample without the mutant (a sample that already fails proves nothing)."""
    kind = "compiled" if mutant.klass in COMPILER_CLASSES else "check"
    if kind not in sample.passes:
        sample.passes[kind] = _check(mutant, sample) is None
    return sample.passes[kind]


def run_mutant(mutant, budget, seed=0, dtypes=("float64", "float32")):
    """Run the checks on a mutant until one fails. Returns a result dict (plain data)."""
    started = time.perf_counter()
    distinguishing = checked = baseline_failures = 0
    detected_by = classification = crash = ""
    try:
        for sample in _samples(mutant, budget, seed, dtypes):
            checked += 1
            if not sample.program.differentiable_leaves() or not _can_change(mutant, sample):
                continue
            if not _changes(mutant, sample):
                continue
            if not _baseline_passes(mutant, sample):
                baseline_failures += 1      # the correct code already fails here: proves nothing
                continue
            distinguishing += 1
            with mutant.plant():
                found = _check(mutant, sample)
            if found:
                detected_by, classification = found
                break
    except Exception as exc:  # noqa: BLE001 - an exception that escaped the checker is no kill: reported
        origin = "the checker's own code" if isinstance(exc, CheckerError) or raised_by_checker(exc) else "op code"
        crash = f"an exception from {origin} escaped the checks instead of being reported: {describe(exc)}"
        distinguishing = max(distinguishing, 1)
    status = "killed" if detected_by else "survived" if distinguishing else "equivalent"
    return {"mutant": mutant.label, "class": mutant.klass, "op": mutant.op, "input": mutant.input,
            "detail": mutant.detail, "status": status, "seconds": time.perf_counter() - started, "samples": checked,
            "distinguishing": distinguishing, "baseline_failures": baseline_failures, "detected_by": detected_by,
            "classification": classification, "crash": crash}


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


def _batches(mutants, count):
    """`count` batches of about equal size, each op's mutants in one of them: a worker learns an op's
    samples once (building them, probing them, checking the correct code there) for all its mutants."""
    by_op = {}
    for mutant in mutants:
        by_op.setdefault(mutant.op, []).append(mutant)
    batches = [[] for _ in range(count)]
    for group in sorted(by_op.values(), key=len, reverse=True):
        min(batches, key=len).extend(group)
    return [batch for batch in batches if batch]


def _run_batch(args):
    import torch

    from .imports import load_all
    torch.set_num_threads(1)
    mutants, budget, seed, dtypes, imports = args
    load_all(imports)           # modules that register more ops (a fresh worker has only ours)
    return [run_mutant(m, budget, seed, dtypes) for m in mutants]


def run_mutation(ops=None, classes=None, profile="ci", seed=0, workers=None, dtypes=("float64", "float32"),
                 progress=None, imports=()):
    """Plant every applicable mutant and return the summary dict (the JSON of `scratch-grad mutate`).
    `imports`: modules (or .py paths) that register more ops, imported here and in every worker."""
    from .imports import load_all
    load_all(imports)
    imports = tuple(imports)
    budget = budget_for(profile)
    mutants = [m for m in all_mutants(ops) if classes is None or m.klass in classes]
    workers = workers or min(2, os.cpu_count() or 1)
    started = time.perf_counter()
    batches = _batches(mutants, max(1, workers * 4))
    results = []
    if workers == 1:
        for done, batch in enumerate(batches, 1):
            results += _run_batch((batch, budget, seed, dtypes, imports))
            if progress:
                progress(done, len(batches))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = [(batch, budget, seed, dtypes, imports) for batch in batches]
            for done, batch_result in enumerate(pool.map(_run_batch, jobs), 1):
                results += batch_result
                if progress:
                    progress(done, len(batches))
    return summarize(results, profile, time.perf_counter() - started)


def summarize(results, profile="ci", seconds=0.0):
    results = sorted(results, key=lambda r: (r["op"], r["class"], r["input"], r.get("detail", "")))
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
            if r.get("crash"):
                lines.append(f"  {r['mutant']}: {r['crash']}")
            else:
                lines.append(f"  {r['mutant']}: changed behaviour on {r['distinguishing']} of {r['samples']} "
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
