"""Analysis of a compiler trace, before any code is written: which VJPs eager backprop would call and in
what order (gradient edges), which arrays the backward reads (so the forward saves them) and when the
forward can free the others (liveness), and, from one run of the trace on its traced values, where the
generated code must convert a forward's result or reduce a VJP's (observe).

All functions here read a Trace and return data; nothing holds state but the cache of `reads`."""
from __future__ import annotations

import dis
import inspect
import types
from dataclasses import dataclass

import numpy as np

from ..engine import Variable, fit_array
from ..trace import CONST, LEAF, STEP, Ref, refs_in

_READS = {}


@dataclass(frozen=True)
class Observation:
    """What one run of the trace on its traced values showed (see observe)."""
    wraps: frozenset    # steps whose forward returns something other than an ndarray (a NumPy scalar)
    fits: dict          # {(step, input): "asarray" | "lead" | "fit"} where a VJP result needs converting;
                        # None when a VJP raised on the traced values: every result is tested at each call
    types: dict         # {Ref: (shape, dtype)} of every leaf and step


@dataclass(frozen=True)
class Analysis:
    """Everything code generation needs to know about a trace beyond the trace itself."""
    gradient_edges: tuple   # (step j, input i, target Ref) per VJP eager backprop calls, in its order
    edges: tuple            # the leaves that receive a gradient (the compiled node's edges)
    reads: dict             # {(j, i): per VJP argument (g, out, inputs), whether the VJP reads it}
    saved: tuple            # the Refs the backward reads, sorted: the forward keeps them for it
    dead_after: dict        # {step j: [steps whose values the forward frees after step j]}
    observation: Observation


def analyze(trace, grad_enabled, kept=()):
    """The Analysis of `trace`; `kept` are Refs returned beside the output (aux), never freed."""
    edges_in_order = gradient_edges(trace) if grad_enabled else ()
    edges = tuple(sorted({target.index for _, _, target in edges_in_order if target.kind == LEAF}))
    vjp_reads = {(j, i): reads(trace.steps[j].vjps[i], 2 + len(trace.steps[j].args)) for j, i, _ in edges_in_order}
    saved = saved_values(trace, edges_in_order, vjp_reads)
    # with no leaf to deliver to, the backward never runs: nothing to observe
    return Analysis(edges_in_order, edges, vjp_reads, saved, dead_after(trace, saved, kept),
                    observe(trace, edges_in_order if edges else ()))


def gradient_edges(trace):
    """(step j, input i, target Ref) for every VJP eager backprop would call from the output, in its
    order: reverse creation order, each node's edges in input order, only nodes the output reaches."""
    output = trace.outputs[0]
    reached, found = {output}, []
    for j in range(output, -1, -1):
        if j not in reached:
            continue
        for i in trace.steps[j].edges:
            target = trace.steps[j].args[i]
            if target.kind == STEP:
                reached.add(target.index)
            found.append((j, i, target))
    return tuple(found)


def saved_values(trace, edges_in_order, vjp_reads):
    """The leaves and step values the backward's VJP calls read (out and inputs where the VJP reads
    them, every Ref in params), sorted."""
    saved = set()
    for j, i, _ in edges_in_order:
        step = trace.steps[j]
        read = vjp_reads[j, i]
        if read[1]:
            saved.add(Ref(STEP, j))
        for k, arg in enumerate(step.args):
            if read[2 + k]:
                saved.update(ref for ref in refs_in(arg) if ref.kind != CONST)
        for value in step.params.values():
            saved.update(ref for ref in refs_in(value) if ref.kind != CONST)
    return tuple(sorted(saved))


def dead_after(trace, saved, kept=()):
    """{step j: [values last read by step j]} for the values the backward does not read (and that are
    not the output nor returned beside it), so the forward frees them as soon as it can."""
    output = trace.outputs[0]
    last_read = {}
    for j, step in enumerate(trace.steps):
        last_read.setdefault(j, j)         # a value nothing reads dies where it is made
        for value in list(step.args) + list(step.params.values()):
            for ref in refs_in(value):
                if ref.kind == STEP:
                    last_read[ref.index] = j
    keep = set(saved) | set(kept)
    freed = {}
    for k, j in sorted(last_read.items()):
        if k != output and Ref(STEP, k) not in keep:
            freed.setdefault(j, []).append(k)
    return freed


def reads(fn, count):
    """Which of fn's first `count` positional parameters its code reads (a VJP's g, out and inputs),
    found in its bytecode: the generated backward passes None for the others, so the forward does not
    keep those arrays alive for it (PyTorch's saved tensors, found instead of declared). Anything but
    a plain function, or one that could read its arguments indirectly (*args, closures, locals()),
    reads them all."""
    # a plain function's reads depend on its code, not on its closure (bound methods share code too,
    # with their arguments shifted by self: they are keyed by themselves)
    key = (fn.__code__ if isinstance(fn, types.FunctionType) else fn, count)
    if key not in _READS:
        _READS[key] = _find_reads(fn, count)
    return _READS[key]


def _find_reads(fn, count):
    every = (True,) * count
    code = getattr(fn, "__code__", None)
    if code is None or not isinstance(fn, types.FunctionType) or code.co_argcount < count:
        return every
    if code.co_flags & inspect.CO_VARARGS or {"locals", "vars", "eval", "exec"} & set(code.co_names):
        return every
    loaded = set(code.co_cellvars)            # captured by an inner function: treated as read
    for instruction in dis.get_instructions(code):
        if "FAST" in instruction.opname and not instruction.opname.startswith("STORE_FAST"):
            argval = instruction.argval
            loaded.update(argval if isinstance(argval, tuple) else (argval,))
    return tuple(name in loaded for name in code.co_varnames[:count])


def observe(trace, edges_in_order):
    """Run the trace once on its traced values, forward and backward as the engine would, and note
    which forwards return something other than an ndarray (a NumPy scalar) and which VJP results
    need reducing or casting to their input: the generated code converts and reduces exactly there,
    instead of testing every result at every call. (The shapes, dtypes and types of these results
    follow from the inputs' shapes and dtypes, which a trace fixes.)"""
    returned = []

    def run_step(step, args, params):
        returned.append(step.spec.forward(*args, **params))
        return np.asarray(returned[-1])
    values = trace.evaluate(run_step, convert_param=raw_value)
    wraps = frozenset(j for j, out in enumerate(returned) if type(out) is not np.ndarray)
    types_ = {Ref(LEAF, k): (leaf.shape, leaf.dtype) for k, leaf in enumerate(trace.leaves)}
    types_.update({Ref(STEP, j): (value.shape, value.dtype) for j, value in enumerate(values)})
    fits = {}
    if edges_in_order:
        output = values[trace.outputs[0]]
        try:
            with np.errstate(all="ignore"):
                backward_values(trace, edges_in_order, np.ones(output.shape, output.dtype), trace.leaves, values,
                                _FitRecorder(trace, types_, fits))
        except Exception:   # noqa: BLE001 - a VJP that fails on these values: test every result instead
            fits = None
    return Observation(wraps, fits, types_)


class _FitRecorder:
    """fit() for observe's backward: brings each VJP result to its input's shape and dtype as the
    engine does, and notes in `fits` how, where it was not already right."""

    def __init__(self, trace, types_, fits):
        self.trace, self.types, self.fits = trace, types_, fits

    def __call__(self, gi, j, i):
        step = self.trace.steps[j]
        shape, dtype = self.types[step.args[i]]
        if type(gi) is np.ndarray and gi.shape == shape and gi.dtype == dtype:
            return gi
        if np.asarray(gi).shape == shape and np.asarray(gi).dtype == dtype:
            self.fits[j, i] = "asarray"                  # a NumPy scalar for a 0-d input
        elif type(gi) is np.ndarray and gi.dtype == dtype and gi.shape[1:] == shape and gi.ndim == len(shape) + 1:
            self.fits[j, i] = "lead"                     # _sum_to_array's common case: one leading axis
        else:
            self.fits[j, i] = "fit"
        return fit_array(gi, shape, dtype, step.spec.name, i)


def backward_values(trace, edges_in_order, g, leaves, values, fit):
    """{ref: gradient} from the trace's VJPs, called in eager backprop's order on `g`, each result
    brought to its input's shape and dtype by fit(gi, step index, input index); fan-out summed."""
    gradients = {Ref(STEP, trace.outputs[0]): g}
    for j, i, target in edges_in_order:
        step = trace.steps[j]
        args, params = trace.inputs_of(step, leaves, values, convert_param=raw_value)
        gi = fit(step.vjps[i](gradients[Ref(STEP, j)], values[j], *args, **params), j, i)
        gradients[target] = gi if target not in gradients else gradients[target] + gi
    return gradients


def raw_value(value):
    """A param read from the trace as the ops' VJPs see it: a Variable's array (tuples item by item)."""
    if isinstance(value, Variable):
        return value._data
    if type(value) is tuple:
        return tuple(raw_value(v) for v in value)
    return value

