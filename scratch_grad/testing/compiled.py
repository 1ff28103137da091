"""Compiled vs eager: a program run through `sg.compile` must give what the eager engine gives, bit for bit.

The compiler's claim (scratch_grad/compiler/) is that its generated code calls the same forwards and
VJPs in the same order as eager mode, so values and gradients are equal, not merely close. This checks
it on any Program (one op, a random graph): the program becomes a function of its leaves returning
L = sum_k <output_k, cotangent_k>, which is called eagerly and compiled,

- at the trace (the first call) and at a replay on other leaf values (same shapes: no new trace),
  comparing L and dL/dleaf bit for bit, and raising the same error class when eager raises;
- for programs with an odd number of steps, through has_aux=True, returning every other step's value
  beside L (the compiled forward must keep those, and compute steps L does not need), compared too;
- for twice-differentiable programs, the gradient of <dL/dleaf, w> (double backward, which a compiled
  node does by re-running its trace eagerly), to a tight tolerance.

`compare_mixed` compiles only parts of a program: runs of its steps become compiled calls inside the
otherwise eager program (`choose_segments`), reading leaves and intermediates that eager steps read
too, before and after the call, and compares with the all-eager run the same way. Buffers cross the
boundary there (gradients the call hands to eager code, which accumulates into them in place; the
gradient eager code hands to the call), so `with_boundary_uses` adds the eager reads and joins that
make each crossing happen on every graph.

An exception from the code under check (an op's forward or VJP, the engine, the compiler) is a
reported problem, naming the op where the traceback shows it, in either mode; only a clear
scratch_grad error raised alike by both modes is agreement. An exception from this checker's own
code is raised as a `faults.CheckerError`.

Every registry op reaches it through the random graphs, so an op added to the registry is compiled
and compared with no test to write.
"""
import numpy as np

from ..compiler import compile as compile_function
from ..engine import Variable, apply, grad
from ..errors import ScratchGradError
from ..ops import REGISTRY
from ..trace import CONST, LEAF, STEP, Ref, Step
from .faults import checker_error, describe, fault_op, raised_by_checker
from .program import Program

REPLAY_SHIFT = 0.125     # the replay's leaves: the traced ones plus this (same shapes, other values)


def program_function(program, aux_steps=None):
    """fn(*leaves) -> the scalar Variable L of `program` (None when no output depends on a leaf); with
    aux_steps, (L, [the values of those steps that are Variables])."""
    def fn(*leaves):
        values = program.evaluate(_apply, leaves)
        total = None
        for k, cotangent in zip(program.outputs, program.cotangents):
            if isinstance(values[k], Variable):
                term = (values[k] * cotangent).sum()
                total = term if total is None else total + term
        if aux_steps is None or total is None:
            return total
        return total, [values[k] for k in aux_steps if isinstance(values[k], Variable)]
    fn.__name__ = program.name or "program"
    return fn


def _apply(step, args, params):
    return apply(step.spec, args, params)


def _run(fn, leaves, flags):
    """(L, gradients, aux values, exception) of fn on new Variables made from `leaves`. An exception
    from the code under check (an op, the engine, sg.compile) is returned; one from the checker's own
    code is raised as a CheckerBug."""
    variables = [Variable(v, requires_grad=flag) for v, flag in zip(leaves, flags)]
    wanted = [v for v in variables if v.requires_grad]
    try:
        out, aux = fn(*variables), []
        if isinstance(out, tuple):
            out, aux = out
        if out is None or not out.requires_grad:
            return out, [], aux, None
        return out, list(grad(out, wanted, allow_unused=True)), aux, None
    except Exception as error:  # noqa: BLE001 - judged by where it was raised
        if raised_by_checker(error):
            raise checker_error(error, "the compiled = eager comparison") from error
        return None, None, None, error


def _second_order(fn, leaves, flags, directions):
    variables = [Variable(v, requires_grad=flag) for v, flag in zip(leaves, flags)]
    wanted = [v for v in variables if v.requires_grad]
    out = fn(*variables)
    first = grad(out[0] if isinstance(out, tuple) else out, wanted, create_graph=True, allow_unused=True)
    total = None
    for g, w in zip(first, directions):
        if isinstance(g, Variable) and g.requires_grad:
            term = (g * w).sum()
            total = term if total is None else total + term
    if total is None:
        return [None] * len(wanted)
    return list(grad(total, wanted, allow_unused=True))


def _guarded_second_order(fn, leaves, flags, directions):
    """(gradients of <dL/dleaf, w>, None) or (None, the exception of the code under check)."""
    try:
        return _second_order(fn, leaves, flags, directions), None
    except Exception as error:  # noqa: BLE001 - judged by where it was raised
        if raised_by_checker(error):
            raise checker_error(error, "the compiled = eager comparison (second order)") from error
        return None, error


def _same(a, b):
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(getattr(a, "_data", a)), np.asarray(getattr(b, "_data", b))
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def _where(a, b):
    a, b = np.asarray(getattr(a, "_data", a)), np.asarray(getattr(b, "_data", b))
    if a.shape != b.shape or a.dtype != b.dtype:
        return f"eager {a.shape} {a.dtype}, compiled {b.shape} {b.dtype}"
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).ravel()
    both_nan = (np.isnan(a) & np.isnan(b)).ravel()
    diff[np.isnan(diff)] = np.inf
    diff[both_nan] = 0
    flat = int(np.argmax(diff))
    k = tuple(int(i) for i in np.unravel_index(flat, a.shape))
    return f"largest difference {diff[flat]:.3e} at {k}: eager {a[k]!r}, compiled {b[k]!r}"


def _error_problems(call, eager_error, error):
    """What the exceptions of one call say. Any exception of an op other than a clear scratch_grad error
    is a finding in either mode (a VJP that raises IndexError is an engine bug, compiled or not); a clear
    error (a DomainError...) is right when both modes raise the same class."""
    problems = []
    for mode, exc in (("eager", eager_error), ("compiled", error)):
        if exc is not None and not isinstance(exc, ScratchGradError):
            problems.append(f"{call}: {mode} mode raised {_described(exc)}")
    if not problems and type(eager_error) is not type(error):
        problems.append(f"{call}: eager raised {_named(eager_error)}, compiled raised {_named(error)}")
    return problems


def _described(exc):
    """'op NAME: Type: message (at file:line in function)', the op when the traceback shows it."""
    op = fault_op(exc)
    return (f"op '{op}': " if op else "") + describe(exc)


def _named(exc):
    return "nothing" if exc is None else f"{type(exc).__name__}: {exc}"


def _replay_leaves(program):
    return [v + np.asarray(REPLAY_SHIFT, v.dtype) if v.dtype.kind == "f" else v for v in program.leaves]


def _compare_calls(fn, other, program, flags, label=""):
    """The differences between fn (eager) and other (compiled, wholly or in part) at the trace and at a
    replay on other leaf values: L, the aux values, the gradients, and the exceptions."""
    problems = []
    for call, leaves in (("trace", program.leaves), ("replay", _replay_leaves(program))):
        call = f"{label}{call}"
        eager_out, eager_grads, eager_aux, eager_error = _run(fn, leaves, flags)
        out, grads, aux, error = _run(other, leaves, flags)
        if eager_error is not None or error is not None:
            problems += _error_problems(call, eager_error, error)
            continue
        if eager_out is None:
            if out is not None:
                problems.append(f"{call}: eager returned no output, compiled returned {out!r}")
            continue
        if not _same(eager_out, out):
            problems.append(f"{call}: L differs: {_where(eager_out, out)}")
        if len(aux) != len(eager_aux):
            problems.append(f"{call}: {len(eager_aux)} eager aux values, {len(aux)} compiled")
        for k, (a, b) in enumerate(zip(eager_aux, aux)):
            if not _same(a, b) or b.requires_grad:
                detail = "it requires grad" if _same(a, b) else _where(a, b)
                problems.append(f"{call}: aux value {k} (a step's value returned beside L) differs: {detail}")
        if len(grads) != len(eager_grads):
            problems.append(f"{call}: {len(eager_grads)} eager gradients, {len(grads)} compiled")
            continue
        for k, (a, b) in enumerate(zip(eager_grads, grads)):
            if not _same(a, b):
                detail = "one is None" if a is None or b is None else _where(a, b)
                problems.append(f"{call}: gradient of leaf {k} differs: {detail}")
    return problems


def compare_compiled(program, second_order=None, seed=0):
    """The ways `sg.compile(program_function(program))` differs from the eager function: a list of
    sentences naming the call (trace or replay), the quantity and where (empty when they agree)."""
    aux_steps = list(range(0, len(program.steps), 2)) if len(program.steps) % 2 else None
    fn = program_function(program, aux_steps)
    compiled = compile_function(fn, has_aux=aux_steps is not None)
    flags = list(program.requires_grad)
    problems = _compare_calls(fn, compiled, program, flags)
    if compiled.trace_count > 1:
        problems.append(f"the replay on new values of the same shapes traced again ({compiled.trace_count} traces)")
    if second_order is None:
        second_order = program.twice_differentiable()
    if second_order and not problems:
        problems += _compare_second_order(fn, compiled, program, flags, seed)
    return problems


def _compare_second_order(fn, compiled, program, flags, seed, label=""):
    rng = np.random.default_rng(seed)
    directions = [rng.uniform(-1, 1, v.shape).astype(v.dtype) for v, f in zip(program.leaves, flags) if f]
    eager, eager_error = _guarded_second_order(fn, program.leaves, flags, directions)
    if isinstance(eager_error, ScratchGradError):
        return []                    # eager mode cannot differentiate this twice here: nothing to compare
    ours, error = _guarded_second_order(compiled, program.leaves, flags, directions)
    if eager_error is not None or error is not None:
        return _error_problems(f"{label}second order", eager_error, error)
    problems = []
    for k, (a, b) in enumerate(zip(eager, ours)):
        if a is None or b is None:
            if (a is None) != (b is None):
                problems.append(f"{label}second order: gradient of leaf {k}: one is None")
            continue
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        tolerance = 1e-12 if program.leaves[0].dtype == np.float64 else 1e-5
        scale = max(float(np.max(np.abs(a), initial=0.0)), 1.0)
        if a.shape != b.shape or not np.allclose(a, b, rtol=tolerance, atol=tolerance * scale, equal_nan=True):
            problems.append(f"{label}second order: gradient of leaf {k} differs: {_where(a, b)}")
    return problems


# ---- mixed: compiled sub-functions inside an eager program ---------------------------------------------------

class Segment:
    """Steps start..stop-1 of a program run as one compiled function: its arguments are the values it reads
    from outside (leaves and earlier steps, in the order first read; constants are captured), its one
    result is the value of step `exit`, the only step of the segment read outside it."""
    __slots__ = ("start", "stop", "inputs", "exit")

    def __init__(self, start, stop, inputs, exit):
        self.start, self.stop, self.inputs, self.exit = start, stop, inputs, exit

    def __repr__(self):
        return f"Segment(steps {self.start}..{self.stop - 1}, reads {self.inputs}, returns step {self.exit})"


def _uses(program):
    """{(kind, index): [the steps that read it, once per argument]} for leaves and steps."""
    uses = {}
    for j, step in enumerate(program.steps):
        for ref in step.args:
            if ref.kind != CONST:
                uses.setdefault((ref.kind, ref.index), []).append(j)
    return uses


def _live(program):
    """Per step: whether its value depends on a leaf."""
    live = []
    for step in program.steps:
        live.append(any(r.kind == LEAF or (r.kind == STEP and live[r.index]) for r in step.args))
    return live


def candidate_segments(program):
    """Every run of contiguous steps that can be one compiled call inside the eager program, bit for bit.

    It must have one exit (sg.compile returns one differentiable value), read at least one value that
    depends on a leaf, and keep eager mode's summation order: a value read by several of its steps is
    summed inside the compiled backward first, so it must not also be read after the segment (eager
    backprop would add those later readers' gradients first: the same sum in another order)."""
    steps, outputs = program.steps, set(program.outputs)
    uses = _uses(program)
    live = _live(program)
    found = []
    for start in range(len(steps)):
        for stop in range(start + 1, len(steps) + 1):
            exits = [j for j in range(start, stop) if j in outputs or any(u >= stop for u in uses.get((STEP, j), ()))]
            if len(exits) != 1:
                continue
            inputs = []
            for j in range(start, stop):
                for ref in steps[j].args:
                    key = (ref.kind, ref.index)
                    if ref.kind != CONST and not (ref.kind == STEP and ref.index >= start) and key not in inputs:
                        inputs.append(key)
            if not any(kind == LEAF or live[index] for kind, index in inputs):
                continue
            reordered = False
            for key in inputs:
                inside = [u for u in uses[key] if start <= u < stop]
                after = any(u >= stop for u in uses[key]) or (key[0] == STEP and key[1] in outputs)
                reordered = reordered or (len(inside) > 1 and after)
            if not reordered:
                found.append(Segment(start, stop, inputs, exits[0]))
    return found


def _shared(segment, uses):
    """Whether a value the segment reads is also read by an eager step (the boundary the comparison is for)."""
    return any(any(not segment.start <= u < segment.stop for u in uses[key]) for key in segment.inputs)


def choose_segments(program, seed=0, count=2):
    """Up to `count` disjoint segments, drawn from `seed`: preferably of two or more steps, and reading a
    value that eager steps read too (a leaf or an intermediate used on both sides of the boundary)."""
    rng = np.random.default_rng(seed)
    uses = _uses(program)
    candidates = candidate_segments(program)
    chosen = []
    for _ in range(count):
        free = [s for s in candidates if all(s.stop <= c.start or s.start >= c.stop for c in chosen)]
        preferred = [s for s in free if s.stop - s.start > 1 and _shared(s, uses)] or \
            [s for s in free if _shared(s, uses)] or free
        if not preferred:
            break
        chosen.append(preferred[int(rng.integers(len(preferred)))])
    return sorted(chosen, key=lambda s: s.start)


def segment_function(program, segment):
    """fn(*the segment's inputs) -> the value of its exit step, applying its steps op by op."""
    position = {key: k for k, key in enumerate(segment.inputs)}

    def fn(*args):
        values = {}
        for j in range(segment.start, segment.stop):
            step = program.steps[j]
            call = [args[position[(r.kind, r.index)]] if (r.kind, r.index) in position else
                    values[r.index] if r.kind == STEP else program.constants[r.index] for r in step.args]
            values[j] = apply(step.spec, call, step.params)
        return values[segment.exit]
    fn.__name__ = f"steps_{segment.start}_to_{segment.stop - 1}"
    return fn


def mixed_function(program, segments, compiled):
    """fn(*leaves) -> L of `program` run eagerly, except each segment, called as compiled[k]."""
    at = {segment.start: (segment, function) for segment, function in zip(segments, compiled)}

    def fn(*leaves):
        values = [None] * len(program.steps)

        def value(kind, index):
            return leaves[index] if kind == LEAF else values[index]
        j = 0
        while j < len(program.steps):
            if j in at:
                segment, function = at[j]
                values[segment.exit] = function(*[value(kind, index) for kind, index in segment.inputs])
                j = segment.stop
                continue
            step = program.steps[j]
            args = [value(r.kind, r.index) if r.kind != CONST else program.constants[r.index] for r in step.args]
            values[j] = apply(step.spec, args, step.params)
            j += 1
        total = None
        for k, cotangent in zip(program.outputs, program.cotangents):
            if isinstance(values[k], Variable):
                term = (values[k] * cotangent).sum()
                total = term if total is None else total + term
        return total
    fn.__name__ = f"{program.name or 'program'}_mixed"
    return fn


def _broadcasts_into(shape, target):
    try:
        return np.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


class _Boundary:
    """Builds `with_boundary_uses`' program: the steps of `program` renumbered, with steps added around
    and inside each compiled call (see there)."""

    def __init__(self, program, segments, seed):
        self.program, self.segments = program, segments
        self.rng = np.random.default_rng(seed)
        self.mul, self.add = REGISTRY["mul"], REGISTRY["add"]
        self.values = program.evaluate_raw(program.leaves)
        self.uses = _uses(program)
        self.live = _live(program)
        self.steps, self.constants = [], list(program.constants)
        self.outputs, self.cotangents = [], []
        self.renumber = {}               # old step -> the new step whose value later steps read

    def differentiable(self, key):
        kind, index = key
        return self.program.requires_grad[index] if kind == LEAF else self.live[index]

    def read_twice(self, key, segment):
        return sum(segment.start <= u < segment.stop for u in self.uses.get(key, ())) > 1

    def read_from(self, key, j):
        """Whether step j or a later one reads `key`, or L does (an output)."""
        return any(u >= j for u in self.uses.get(key, ())) or (key[0] == STEP and key[1] in self.program.outputs)

    def read_after(self, key, segment):
        return self.read_from(key, segment.stop)

    def readable_at(self, key, j):
        """An eager read of `key` at step j keeps eager order: no call before j reads it twice."""
        return not any(self.read_twice(key, s) for s in self.segments if s.stop <= j)

    def visible(self, key):
        """Not a value computed inside a call (only a call's result leaves it)."""
        kind, index = key
        return kind == LEAF or not any(s.start <= index < s.stop and index != s.exit for s in self.segments)

    def shape(self, key):
        kind, index = key
        return np.shape(self.program.leaves[index] if kind == LEAF else self.values[index])

    def ref(self, key):
        kind, index = key
        return Ref(LEAF, index) if kind == LEAF else Ref(STEP, self.renumber[index])

    def emit(self, spec, args, shape, params=None, output=False):
        """Append a step (its value of `shape`); an output gets a cotangent."""
        self.steps.append(Step(spec, tuple(args), dict(params or {})))
        if output:
            self.outputs.append(len(self.steps) - 1)
            self.cotangents.append(self.rng.uniform(0.5, 1.5, shape).astype(self.program.dtype))
        return Ref(STEP, len(self.steps) - 1)

    def constant(self, value):
        self.constants.append(value)
        return Ref(CONST, len(self.constants) - 1)

    def earlier(self, segment, shape, j):
        """Differentiable values made before the call and visible there, of `shape` (any: None), that can be
        read at j."""
        keys = [(LEAF, k) for k in range(len(self.program.leaves))] + [(STEP, i) for i in range(segment.start)]
        return [key for key in keys if (shape is None or self.shape(key) == shape) and self.differentiable(key)
                and self.visible(key) and self.readable_at(key, j)]

    def join(self, segment):
        """Two values made before the call, of one shape that broadcasts into its result's, drawn among
        those it can read once more (not those it reads and eager code reads after it). For a value the
        call does not read yet, the join's gradient is the only one the call computes, and one buffer is
        what it must not hand back for both; for one it reads, the join's is the first gradient, and the
        call's own ones are summed onto it: not in place, since that buffer is the other value's too."""
        exit_shape = self.shape((STEP, segment.exit))
        shapes = {}
        for key in self.earlier(segment, None, segment.start):
            if key in segment.inputs and self.read_after(key, segment):
                continue
            if _broadcasts_into(self.shape(key), exit_shape):
                shapes.setdefault(self.shape(key), []).append(key)
        groups = [group for group in shapes.values() if len(group) > 1]
        # a third of the time two values read neither by the call nor after it: then nothing else sends them a
        # gradient before the call's, and the engine takes the buffer the call hands out as theirs
        untouched = [group for group in ([k for k in group if not self.read_from(k, segment.start)]
                                         for group in groups) if len(group) > 1]
        form = self.rng.integers(3)            # a third of the calls keep the program's own structure only
        if form == 0 or not groups:
            return None
        if form == 1 and untouched:
            groups = untouched
        group = groups[int(self.rng.integers(len(groups)))]
        first, second = self.rng.choice(len(group), size=2, replace=False)
        return group[int(first)], group[int(second)]

    def build(self):
        starts = {s.start: s for s in self.segments}
        ends = {s.stop - 1: s for s in self.segments}
        new_segments, joins, first = [], {}, 0
        for j, step in enumerate(self.program.steps):
            segment = starts.get(j)
            if segment is not None:
                pair = joins[segment.start] = self.join(segment)
                inputs = list(segment.inputs) + [key for key in pair or () if key not in segment.inputs]
                for key in inputs:              # before the call: eager code reads what it reads
                    if self.differentiable(key) and self.readable_at(key, j):
                        scale = self.constant(float(self.rng.uniform(0.5, 1.5)))
                        self.emit(self.mul, [self.ref(key), scale], self.shape(key), output=True)
                first = len(self.steps)
            self.renumber[j] = len(self.steps)
            self.emit(step.spec, [self.ref((r.kind, r.index)) if r.kind != CONST else r for r in step.args],
                      np.shape(self.values[j]), step.params)
            segment = ends.get(j)
            if segment is None:
                continue
            exit_shape = self.shape((STEP, segment.exit))
            pair = joins[segment.start]
            inputs = list(segment.inputs) + [key for key in pair or () if key not in segment.inputs]
            if pair is not None:               # inside the call: one gradient buffer for two of its inputs
                both = self.emit(self.add, [self.ref(pair[0]), self.ref(pair[1])], self.shape(pair[0]))
                nothing = self.emit(self.mul, [both, self.constant(0.0)], self.shape(pair[0]))
                self.renumber[segment.exit] = self.emit(self.add, [self.ref((STEP, segment.exit)), nothing],
                                                        exit_shape).index
                for key in pair:
                    self.uses.setdefault(key, []).append(j)
            new_segments.append(Segment(first, len(self.steps),
                                        [(kind, self.renumber[i] if kind == STEP else i) for kind, i in inputs],
                                        self.renumber[segment.exit]))
            earlier = [key for key in self.earlier(segment, exit_shape, len(self.program.steps)) if key not in (pair or ())]
            if earlier:                        # after the call: its result added to a value made before it
                # preferably one the call does not read: one it reads would get its gradient from here before
                # the call's, and would not take the buffer the call hands out as its own
                unread = [key for key in earlier if key not in inputs] or earlier
                other = unread[int(self.rng.integers(len(unread)))]
                self.emit(self.add, [self.ref((STEP, segment.exit)), self.ref(other)], exit_shape, output=True)
        outputs = [self.renumber[k] for k in self.program.outputs] + self.outputs
        program = Program(self.program.leaves, self.program.requires_grad, self.constants, self.steps, outputs,
                          list(self.program.cotangents) + self.cotangents, name=self.program.name,
                          meta=dict(self.program.meta))
        return program, new_segments


def with_boundary_uses(program, segments, seed=0):
    """(program', segments') with steps added where buffers cross each compiled call:

    - before the call, an eager step reads each value the call reads (`mul` by a constant): its gradient
      arrives after the call's, and is accumulated into the buffer the call handed out;
    - inside the call, two of its inputs are added, times 0, to its result (values do not change): one
      op hands one gradient buffer to two inputs of the call, a buffer the call must not share;
    - after the call, its result is added to a value made before it: add hands the same gradient to
      both, so the buffer eager code gives the call is read again after the call's backward has run.

    Each added step outside a call is one more output, with a cotangent drawn from `seed`. A value read
    twice by a call is never read again after it: eager order would add its gradients in another order
    (see candidate_segments)."""
    if not segments:
        return program, segments
    return _Boundary(program, segments, seed).build()


def _mixed(program, seed):
    segments = choose_segments(program, seed)
    program, segments = with_boundary_uses(program, segments, seed)
    compiled = [compile_function(segment_function(program, s)) for s in segments]
    return program, segments, compiled, mixed_function(program, segments, compiled)


def compare_mixed(program, second_order=None, seed=0):
    """The ways `program` differs from itself run with some of its steps compiled (`choose_segments`:
    compiled calls inside the eager graph, reading leaves and intermediates that eager steps read too):
    L and the gradients bit for bit at the trace and at a replay, double backward to a tight tolerance.
    A list of sentences naming the segments (empty when they agree or no segment fits)."""
    program, segments, compiled, mixed = _mixed(program, seed)
    if not segments:
        return []
    label = "mixed (" + ", ".join(f"steps {s.start}-{s.stop - 1} compiled" for s in segments) + "): "
    fn = program_function(program)
    flags = list(program.requires_grad)
    problems = _compare_calls(fn, mixed, program, flags, label)
    for segment, function in zip(segments, compiled):
        if function.trace_count > 1:
            problems.append(f"{label}the replay traced steps {segment.start}-{segment.stop - 1} again "
                            f"({function.trace_count} traces)")
    if second_order is None:
        second_order = program.twice_differentiable()
    if second_order and not problems:
        problems += _compare_second_order(fn, mixed, program, flags, seed, label)
    return problems


def compiled_behaviour(program, seed=0):
    """What the compiled runs of the comparisons compute (L, gradients and second order, or the
    exception, for the whole program compiled and for the mixed program): the mutation tester compares
    it with and without a planted compiler bug, bit for bit."""
    flags = list(program.requires_grad)
    mixed_program, _, _, mixed = _mixed(program, seed)
    runs = [(program, compile_function(program_function(program))), (mixed_program, mixed)]
    rng = np.random.default_rng(seed)
    directions = [rng.uniform(-1, 1, v.shape).astype(v.dtype) for v, f in zip(program.leaves, flags) if f]
    behaviour = []
    for program, fn in runs:
        for leaves in (program.leaves, _replay_leaves(program)):
            out, grads, _, error = _run(fn, leaves, flags)
            behaviour.append(_named(error) if error is not None else [_array(out), [_array(g) for g in grads]])
        if program.twice_differentiable():
            second, error = _guarded_second_order(fn, program.leaves, flags, directions)
            behaviour.append(_named(error) if error is not None else [_array(g) for g in second])
    return behaviour


def _array(value):
    return None if value is None else np.array(getattr(value, "_data", value))
