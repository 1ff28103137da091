"""Code generation: a traced call and its analysis in, Python source text out.

`generate` is a pure function: it returns the text of three functions and the table of values the text
names, and runs nothing. The compiled node (node.py) executes the text in that table plus the three
names only it can give: SPEC (its OpSpec), VJPS (its VJPs, which call the generated backward) and AUX
(has_aux: the aux arrays as Variables).

    forward(i0, i1, ...)   each op's NumPy forward in creation order; values no VJP reads are deleted
                           after their last use; returns (output, [saved values, None][, aux values])
    backward(g, saved)     each VJP in eager backprop's order, broadcast gradients reduced where the
                           engine would reduce them, fan-out summed in eager's order; each gradient
                           deleted once its node has run; returns the gradients of the node's edges
    run(*args)             the guards (MISS when the arguments do not fit this trace), the forward,
                           and the node recorded as one op

Names in the text: i3 is leaf 3, v5 step 5's value, G5 step 5's gradient, R3 leaf 3's; F5 is step 5's
forward, B5_1 its VJP for input 1, K0... the constants, C3 a captured Variable, SEEN3 the array it held
at the previous call.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine import Variable, fit_array, mode, new_variable, record, saved_copy
from ..trace import CONST, LEAF, STEP, Pack, Ref
from .tracing import NO_PARAMS

# a second gradient for the same value (fan-out) is added, in the order eager backprop adds it (the
# compiler's own tests plant an overwrite here and require the comparison with eager mode to catch it)
_ACCUMULATE = "{name} = {name} + t          # fan-out, summed in eager's order"
# one buffer returned for two inputs is copied, or the engine could add one's gradient into the other's
# in place (the mutation tester plants its absence: a compiled call sharing a buffer with eager code)
_DEALIAS = "if {name} is {other}: {name} = {name}.copy()"
_PREFIX = {LEAF: "i", STEP: "v"}     # the generated code's names: i3 is leaf 3, v5 step 5's value


class _Miss:
    """What a trace's run() returns when the call's arguments do not fit it."""

    def __repr__(self):
        return "MISS"


MISS = _Miss()


@dataclass(frozen=True)
class Generated:
    source: str      # forward, backward and run, as `code()` shows them
    names: dict      # every name the source reads but SPEC, VJPS and AUX, with its value


def generate(call, analysis):
    """The generated code of a TracedCall (tracing.py) with its Analysis (analysis.py)."""
    names = _Names(call.trace.constants, analysis.edges)
    # backward first, as it numbers the constants of its calls first (the text is stable trace to trace)
    backward = _backward_source(call.trace, analysis, names)
    forward = _forward_source(call.trace, analysis, call.aux_refs, names)
    run = _run_source(call, analysis, names)
    return Generated(f"{forward}\n\n\n{backward}\n\n\n{run}\n", names.values)


class _Names:
    """The values the text names: the runtime's helpers, and constants numbered K0, K1... as met."""

    def __init__(self, constants, edges):
        self.constants = constants       # the trace's, read by Ref(CONST, k)
        self.values = {"ndarray": np.ndarray, "asarray": np.asarray, "Variable": Variable, "MISS": MISS,
                       "GM": mode, "record": record, "new_variable": new_variable, "FIT": fit_array,
                       "add_reduce": np.add.reduce, "saved_copy": saved_copy, "NOPARAMS": NO_PARAMS,
                       "EDGES": edges}
        self._by_id = {}

    def name(self, value, name=None):
        """A name for `value`: `name` when given, else the same K-name every time for one object."""
        if name is None:
            if id(value) in self._by_id:
                return self._by_id[id(value)]
            name = self._by_id[id(value)] = f"K{len(self._by_id)}"
        self.values[name] = value
        return name

    def expr(self, value):
        """An arg or param of a step as an expression: a value's variable, a constant's name."""
        if type(value) is Ref:
            if value.kind == CONST:
                return self.name(self.constants[value.index])
            return f"{_PREFIX[value.kind]}{value.index}"
        if type(value) is Pack:
            return "(" + "".join(self.expr(item) + ", " for item in value.items) + ")"
        return self.name(value)

    def call(self, fn_name, leading, step, reads=None):
        """fn(*leading, *step's args, **step's params); positions `reads` marks False get None,
        so the arrays there are not saved for them."""
        args = leading + [self.expr(ref) if reads is None or reads[len(leading) + k] else "None"
                          for k, ref in enumerate(step.args)]
        if step.params and not any(type(value) in (Ref, Pack) for value in step.params.values()):
            args.append("**" + self.name(dict(step.params)))
        else:
            args += [f"{key}={self.expr(value)}" for key, value in step.params.items()]
        return f"{fn_name}({', '.join(args)})"


def _joined(items):
    """`a, b, ` : a tuple's items as the generated code writes them (one item stays a tuple)."""
    return "".join(item + ", " for item in items)


def _saved_names(analysis):
    return [f"{_PREFIX[ref.kind]}{ref.index}" for ref in analysis.saved]


def _backward_source(trace, analysis, names):
    body = []
    gradient = {Ref(STEP, trace.outputs[0]): "g"}     # the variable holding each value's gradient so far
    node = None
    fits = analysis.observation.fits
    for j, i, target in analysis.gradient_edges:
        step = trace.steps[j]
        if j != node:
            body += _released(gradient, node)
            body.append(f"    # {step.spec.name}")
            node = j
        reads = analysis.reads[j, i]
        out = names.expr(Ref(STEP, j)) if reads[1] else "None"
        vjp_call = names.call(names.name(step.vjps[i], f"B{j}_{i}"), [gradient[Ref(STEP, j)], out], step, reads)
        how = "check" if fits is None else fits.get((j, i))
        if how is None and target not in gradient:      # the common case: the VJP's result as it is
            name = gradient[target] = f"G{target.index}" if target.kind == STEP else f"R{target.index}"
            body.append(f"    {name} = {vjp_call}")
            continue
        body.append(f"    t = {vjp_call}")
        body += _fitted(how, analysis.observation.types[step.args[i]], step.spec.name, i, names)
        name = gradient.get(target)
        if name is None:
            name = gradient[target] = f"G{target.index}" if target.kind == STEP else f"R{target.index}"
            body.append(f"    {name} = t")
        else:
            body.append("    " + _ACCUMULATE.format(name=name))
    body += _released(gradient, node)
    returned = [gradient[Ref(LEAF, k)] for k in analysis.edges]
    if len(returned) > 1:   # one array returned for two inputs: the engine could accumulate into it
        body.append("    # one buffer returned for two inputs would let the engine add one's gradient into "
                    "the other's")
    for p in range(1, len(returned)):
        for q in range(p):
            body.append("    " + _DEALIAS.format(name=returned[p], other=returned[q]))
    body.append(f"    return ({_joined(returned)})")
    lines = ["def backward(g, saved):"]
    if analysis.saved:
        lines.append(f"    {_joined(_saved_names(analysis))}= saved")
    return "\n".join(lines + body)


def _released(gradient, node):
    """Free a value's gradient once its node's VJPs have run (eager backprop drops it there too): the
    backward's peak memory is then a few gradients, not all of them."""
    if node is None or gradient[Ref(STEP, node)] == "g":
        return []
    return [f"    del {gradient[Ref(STEP, node)]}"]


def _fitted(how, traced_type, op_name, i, names):
    """The lines bringing a VJP's result `t` to its input's shape and dtype, as the observation found
    it needs: every call tested ("check", when the observing run failed), a NumPy scalar made an array,
    a leading axis summed, or the engine's general fit."""
    shape, dtype = (names.name(part) for part in traced_type)
    if how == "check":
        return [(f"    if type(t) is not ndarray or t.shape != {shape} or (t.dtype is not {dtype} "
                 f"and t.dtype != {dtype}):"),
                f"        t = FIT(t, {shape}, {dtype}, {op_name!r}, {i})"]
    if how == "asarray":
        return ["    t = asarray(t)"]
    if how == "lead":
        return ["    t = add_reduce(t, 0)        # broadcasting undone over the leading axis"]
    if how == "fit":
        return [f"    t = FIT(t, {shape}, {dtype}, {op_name!r}, {i})   # broadcasting undone"]
    return []


def _forward_source(trace, analysis, aux_refs, names):
    lines = [f"def forward({', '.join(f'i{k}' for k in range(len(trace.leaves)))}):"]
    if any(step.spec.may_produce_nan for step in trace.steps):
        lines.append("    chk = GM.checking")
    wraps, dead_after = analysis.observation.wraps, analysis.dead_after
    for j, step in enumerate(trace.steps):
        value = names.call(names.name(step.spec.forward, f"F{j}"), [], step)
        lines.append(f"    v{j} = {f'asarray({value})' if j in wraps else value}   # {step.spec.name}")
        if step.spec.may_produce_nan:   # the domain check eager mode makes (NaN from valid inputs)
            arrays = _joined(names.expr(ref) for ref in step.args)
            lines.append("    if chk:")
            lines.append(f"        {names.name(step.spec, f'SP{j}')}.check_domain(({arrays}), v{j})")
        if dead_after.get(j):   # values neither saved nor read again: freed now, as NumPy code would
            lines.append(f"    del {', '.join(f'v{k}' for k in dead_after[j])}")
    returned = f"    return v{trace.outputs[0]}, [({_joined(_saved_names(analysis))}), None]"
    if aux_refs is not None:              # the aux values, after the output and the node's state
        returned += f", ({_joined(names.expr(ref) for ref in aux_refs)})"
    lines.append(returned)
    return "\n".join(lines)


def _run_source(call, analysis, names):
    """run(*args): the guards (MISS when the arguments do not fit this trace), the forward and the
    node."""
    nargs, trace = call.nargs, call.trace
    lines = ["def run(*args):", f"    if len(args) != {nargs}:", "        return MISS"]
    if nargs:
        lines.append(f"    {_joined(f'a{p}' for p in range(nargs))}= args")
    node_inputs, versions = [], []
    saved = set(analysis.saved)
    for k, (binding, leaf) in enumerate(zip(call.bindings, trace.leaves)):
        if binding.kind == "array":
            lines += _array_guard(k, binding, leaf, Ref(LEAF, k) in saved, names)
            node_inputs.append(f"i{k}")
            versions.append("None")
            continue
        holder = f"a{binding.position}" if binding.kind == "variable" else names.name(binding.variable, f"C{k}")
        lines += _variable_guard(k, binding, holder, leaf, trace.requires_grad[k], names)
        node_inputs.append(holder)
        versions.append(f"{holder}._version")
    for p, (kind, value) in enumerate(call.arg_guards):
        if kind == "alias":
            lines.append(f"    if a{p} is not a{value}:")
        elif kind == "identity":
            lines.append(f"    if a{p} is not {names.name(value)}:")
        elif kind == "value":
            lines.append(f"    if type(a{p}) is not {names.name(type(value))} or a{p} != {names.name(value)}:")
        else:
            continue
        lines.append("        return MISS")
    results = "out, saved, aux" if call.aux_refs is not None else "out, saved"
    lines += [f"    if GM.enabled is not {call.grad_enabled}:", "        return MISS",
              f"    {results} = forward({', '.join(f'i{k}' for k in range(len(trace.leaves)))})"]
    if analysis.edges:
        node = (f"record(out, SPEC, VJPS, ({_joined(node_inputs)}), "
                f"(saved,), NOPARAMS, EDGES, ({_joined(versions)}))")
    else:
        node = "new_variable(out)"
    if call.aux_refs is not None:     # Variables with no history, in the structure the function returned
        lines.append(f"    return {node}, AUX(aux)")
    else:
        lines.append(f"    return {node}")
    return "\n".join(lines)


def _array_guard(k, binding, leaf, saved, names):
    """A raw array argument: an ndarray (a subclass is converted) of the traced shape and dtype;
    copied when the backward reads it and its owner could change it."""
    lines = [f"    i{k} = a{binding.position}", f"    if type(i{k}) is not ndarray:",
             f"        if not isinstance(i{k}, ndarray):", "            return MISS",
             f"        i{k} = asarray(i{k})",
             f"    if i{k}.shape != {names.name(leaf.shape)} or i{k}.dtype != {names.name(leaf.dtype)}:",
             "        return MISS"]
    if saved:
        lines += [f"    if i{k}.flags.writeable:",
                  f"        i{k} = saved_copy(i{k})     # saved for backward: the caller may change it"]
    return lines


def _variable_guard(k, binding, holder, leaf, requires_grad, names):
    """A Variable argument or a captured Variable: its array's shape and dtype, its requires_grad."""
    lines = []
    if binding.kind == "variable":
        lines += [f"    if not isinstance({holder}, Variable):", "        return MISS"]
    # an ndarray's shape and dtype are fixed (in-place updates keep `_data`): checked only when the
    # Variable holds another array than at the previous call
    shape, dtype, seen = names.name(leaf.shape), names.name(leaf.dtype), names.name([None], f"SEEN{k}")
    return lines + [f"    i{k} = {holder}._data",
                    f"    if i{k} is not {seen}[0]:",
                    f"        if i{k}.shape != {shape} or (i{k}.dtype is not {dtype} and i{k}.dtype != {dtype}):",
                    "            return MISS",
                    f"        {seen}[0] = i{k}",
                    f"    if {holder}.requires_grad is not {requires_grad}:",
                    "        return MISS"]
