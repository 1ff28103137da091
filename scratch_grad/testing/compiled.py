"""Compiled vs eager: a program run through `sg.compile` must give what the eager engine gives, bit for bit.

The compiler's claim (scratch_grad/compiler.py) is that its generated code calls the same forwards and
VJPs in the same order as eager mode, so values and gradients are equal, not merely close. This checks
it on any Program (one op, a random graph): the program becomes a function of its leaves returning
L = sum_k <output_k, cotangent_k>, which is called eagerly and compiled,

- at the trace (the first call) and at a replay on other leaf values (same shapes: no new trace),
  comparing L and dL/dleaf bit for bit, and raising the same error class when eager raises;
- for programs with an odd number of steps, through has_aux=True, returning every other step's value
  beside L (the compiled forward must keep those, and compute steps L does not need), compared too;
- for twice-differentiable programs, the gradient of <dL/dleaf, w> (double backward, which a compiled
  node does by re-running its trace eagerly), to a tight tolerance.

Every registry op reaches it through the random graphs, so an op added to the registry is compiled
and compared with no test to write.
"""
import numpy as np

from ..engine import Variable, apply, grad
from ..errors import ScratchGradError

REPLAY_SHIFT = 0.125     # the replay's leaves: the traced ones plus this (same shapes, other values)


def program_function(program, aux_steps=None):
    """fn(*leaves) -> the scalar Variable L of `program` (None when no output depends on a leaf); with
    aux_steps, (L, [the values of those steps that are Variables])."""
    def fn(*leaves):
        values = []
        for step in program.steps:
            args = [leaves[r.index] if r.kind == "leaf" else values[r.index] if r.kind == "step"
                    else program.constants[r.index] for r in step.args]
            values.append(apply(step.spec, args, step.params))
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


def _run(fn, leaves, flags, errors):
    """(L, gradients, aux values, error) of fn on new Variables made from `leaves`; errors of the
    classes in `errors` are returned as 'Class: message' instead of raised."""
    variables = [Variable(v, requires_grad=flag) for v, flag in zip(leaves, flags)]
    wanted = [v for v in variables if v.requires_grad]
    try:
        out, aux = fn(*variables), []
        if isinstance(out, tuple):
            out, aux = out
        if out is None or not out.requires_grad:
            return out, [], aux, None
        return out, list(grad(out, wanted, allow_unused=True)), aux, None
    except errors as error:
        return None, None, None, f"{type(error).__name__}: {error}"


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


def compare_compiled(program, second_order=None, seed=0):
    """The ways `sg.compile(program_function(program))` differs from the eager function: a list of
    sentences naming the call (trace or replay), the quantity and where (empty when they agree)."""
    from ..compiler import compile as compile_function
    aux_steps = list(range(0, len(program.steps), 2)) if len(program.steps) % 2 else None
    fn = program_function(program, aux_steps)
    compiled = compile_function(fn, has_aux=aux_steps is not None)
    flags = list(program.requires_grad)
    replay = [v + np.asarray(REPLAY_SHIFT, v.dtype) if v.dtype.kind == "f" else v for v in program.leaves]
    problems = []
    for call, leaves in (("trace", program.leaves), ("replay", replay)):
        eager_out, eager_grads, eager_aux, eager_error = _run(fn, leaves, flags, ScratchGradError)
        out, grads, aux, error = _run(compiled, leaves, flags, Exception)   # any failure of the compiled code
        if eager_error or error:
            if (eager_error or "").split(":")[0] != (error or "").split(":")[0]:
                problems.append(f"{call}: eager raised {eager_error}, compiled raised {error}")
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
    if compiled.trace_count != 1:
        problems.append(f"the replay on new values of the same shapes traced again ({compiled.trace_count} traces)")
    if second_order is None:
        second_order = program.twice_differentiable()
    if second_order and not problems:
        problems += _compare_second_order(fn, compiled, program, flags, seed)
    return problems


def _compare_second_order(fn, compiled, program, flags, seed):
    rng = np.random.default_rng(seed)
    directions = [rng.uniform(-1, 1, v.shape).astype(v.dtype) for v, f in zip(program.leaves, flags) if f]
    try:
        eager = _second_order(fn, program.leaves, flags, directions)
    except ScratchGradError:
        return []                    # eager mode cannot differentiate this twice here: nothing to compare
    ours = _second_order(compiled, program.leaves, flags, directions)
    problems = []
    for k, (a, b) in enumerate(zip(eager, ours)):
        if a is None or b is None:
            if (a is None) != (b is None):
                problems.append(f"second order: gradient of leaf {k}: one is None")
            continue
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        tolerance = 1e-12 if program.leaves[0].dtype == np.float64 else 1e-5
        scale = max(float(np.max(np.abs(a), initial=0.0)), 1.0)
        if a.shape != b.shape or not np.allclose(a, b, rtol=tolerance, atol=tolerance * scale, equal_nan=True):
            problems.append(f"second order: gradient of leaf {k} differs: {_where(a, b)}")
    return problems
