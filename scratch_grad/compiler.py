"""`sg.compile`: trace a function of Variables once, then replay it as straight-line NumPy code.

    loss_fn = sg.compile(lambda x, t: ((model(x) - t) ** 2).mean())
    loss = loss_fn(x, t)          # a Variable: the output of one graph node
    loss.backward()               # .grad of every parameter the function used, as in eager mode

The first call runs the function eagerly under a tracer, which records every op it applies (also
those eager mode would not record: ops on constants, under no_grad, detach). From the trace two
Python functions are generated (`code()` shows them): the forward calls each op's NumPy forward in
creation order; the backward calls each VJP in the order the engine's backprop would (reverse
creation order), reduces broadcast gradients where the engine would and sums fan-out in the same
order. It is the eager code, in the eager order, minus the per-op cost of recording a graph node:
values and gradients are bitwise equal to the eager function's (tested on random graphs of every
registry op).

A call's result is one graph node whose inputs are the function's Variable arguments and the
Variables it captured (parameters); its VJPs run the generated backward once for all of them. So
backward(), grad(), the version check of inputs changed in place, retain_graph, and create_graph
(through an eager re-run of the trace: double backward works) behave as for any op, and the node
has a torch reference built from the trace, so the three-way checker checks compiled functions too.

Like jax.jit and torch.compile, a trace is reused for arguments of the same kinds, shapes, dtypes and
requires_grad flags (hashable non-array arguments by value) and grad mode; anything else is traced
anew. The function's Python code is not re-run, so what would silently freeze in a trace is refused
while tracing, with a GraphError: reading a Variable's values (float(), item(), .data, comparisons,
`if` on a Variable, NumPy conversion), in-place changes, backward() inside the function, and dropout's
random masks. Python values computed outside ops (a flag, module.training, a coefficient in a closure,
an np.random draw, a Variable made from fresh NumPy data) are frozen at trace time: pass them as
arguments or call `reset()`. Captured Variables are held by
reference and their data is read at every call, so in-place updates of parameters are seen; a
parameter replaced by another object is not (`reset()`).

The forward keeps for the backward only the arrays its VJPs read (found in each VJP's bytecode by
`_reads`) and frees the others once no later op needs them; the backward frees each gradient once its
node has run. With has_aux=True the function returns (output, aux) and so does the compiled one, the
aux Variables without gradient (a training step's logits beside its loss).
"""
from __future__ import annotations

import builtins
import dis
import functools
import inspect
import numbers
import types

import numpy as np

from .engine import (Variable, apply, enable_grad, fit_array, fit_variable, grad, mode, new_variable, next_seq, record,
                     saved_copy)
from .errors import DTypeError, GraphError, describe
from .ops.registry import NOT_DIFFERENTIABLE, REAL, OpSpec
from .trace import CONST, LEAF, STEP, Pack, Ref, Step, Trace, refs_in, torch_constant

__all__ = ["compile", "CompiledFunction"]

# a second gradient for the same value (fan-out) is added, in the order eager backprop adds it (the
# compiler's own tests plant an overwrite here and require the comparison with eager mode to catch it)
_ACCUMULATE = "{name} = {name} + t          # fan-out, summed in eager's order"
# one buffer returned for two inputs is copied, or the engine could add one's gradient into the other's
# in place (the mutation tester plants its absence: a compiled call sharing a buffer with eager code)
_DEALIAS = "if {name} is {other}: {name} = {name}.copy()"
MAX_PLANS = 32                    # traces kept per function (argument signatures); the oldest is dropped
_STATIC_VALUES = (numbers.Number, str, bytes, type(None), np.generic)
_NO_PARAMS = {}


class _Miss:
    """What a plan's guard returns when the call's arguments do not fit its trace."""

    def __repr__(self):
        return "MISS"


MISS = _Miss()


# ---- tracing --------------------------------------------------------------------------------------

class _Tracer:
    """Installed as `mode.tracing` while a function runs once to be traced. The engine asks it
    to record what eager mode leaves unrecorded, so the trace holds every value the output depends on."""

    def __init__(self):
        self.start = next_seq()          # nodes recorded during the trace have a larger seq

    def constant_node(self, out, spec, args, datas, params):
        """An op result eager mode would not record (no input requires grad, or no_grad): recorded
        with no edges, so a replay computes it and no gradient flows through it, as in eager mode."""
        datas = list(datas)
        for k, (arg, data) in enumerate(zip(args, datas)):
            if type(data) is np.ndarray and data.flags.writeable and not isinstance(arg, Variable):
                datas[k] = saved_copy(data)   # a raw array its owner may change later: its value now
        vjps = spec.vjps_for(len(args)) if spec.variadic else spec.vjps
        node = record(out, spec, vjps, tuple(args), tuple(datas), params or _NO_PARAMS, (), (None,) * len(args))
        node.requires_grad = False
        return node

    def detach(self, var):
        return self.constant_node(var._data, _DETACH, (var,), (var._data,), _NO_PARAMS)


# detach() while tracing: an identity with no gradient (not in the registry: it is not an op users call)
_DETACH = OpSpec("detach", lambda x: x, (None,), lambda x: x.detach(), (REAL,), "shape")


def _is_static(value):
    """Non-array arguments select a trace by value (numbers, strings, tuples of them) or, when only
    hashable, by identity (functions, modules); None for those that can do neither (lists, dicts)."""
    if isinstance(value, _STATIC_VALUES):
        return "value"
    if type(value) is tuple:
        return "value" if all(_is_static(v) == "value" for v in value) else None
    if isinstance(value, (list, dict, set)):
        return None
    try:
        hash(value)
    except TypeError:
        return None
    return "identity"


# ---- the plan: a trace as data, and the code generated from it ------------------------------------

class _Binding:
    """Where a call finds an input of the compiled node (a leaf of the trace): an argument (a Variable
    or a raw array) or a captured Variable."""
    __slots__ = ("kind", "position", "variable")

    def __init__(self, kind, position, variable):
        self.kind = kind                  # "variable" or "array" (arguments), "captured"
        self.position = position          # argument position (None for captured)
        self.variable = variable          # the captured Variable (None for arguments)


def _read(value, variable_refs, data_refs):
    """What a step reads, as the trace keeps it: a Ref for a Variable of the trace or for the data of
    one (read at every call), a Pack for a tuple holding such data, else the value itself (a constant)."""
    if isinstance(value, Variable):
        return variable_refs[id(value)]
    if type(value) is np.ndarray and id(value) in data_refs:
        return data_refs[id(value)]
    if type(value) is tuple and any(type(v) is np.ndarray and id(v) in data_refs for v in value):
        return Pack(tuple(_read(v, variable_refs, data_refs) for v in value))
    return value


class _Plan:
    """One trace of a compiled function: its slots and steps, and the Python code generated from them.

    The compiled node keeps `[saved arrays, gradients]` as its one saved value: the engine calls the
    node's VJPs for its edges in order within one visit, so the first runs the generated backward for
    every input and the last drops the result."""

    def __init__(self, name, nargs, arg_guards, bindings, trace, grad_enabled, aux=None):
        self.name = name
        self.nargs = nargs
        self.arg_guards = arg_guards      # per argument: ("slot", k) | ("alias", j) | ("value"|"identity", v)
        self.bindings = bindings          # per leaf of the trace: where a call finds it
        self.trace = trace
        self.output = trace.outputs[0]    # the step whose value the function returns
        # has_aux: (AUX, refs): the values returned beside the output, and AUX(arrays), which returns
        # them as Variables without gradient in the structure the traced function returned them in
        self.aux = aux
        self.steps = trace.steps
        self.grad_enabled = grad_enabled
        self.edges = self._input_edges()  # leaves that receive a gradient
        self._recorded = None             # (g, inputs, gradients) of the latest create_graph backward
        self.spec = self._make_spec()
        self.forward = self.backward = self.run = None
        self.source = ""
        self._generate(self._observe())

    # -- which values a gradient reaches (eager backprop's nodes and edges, in its order) --
    def _gradient_edges(self):
        """(step j, input i, target Ref) for every VJP eager backprop would call, in its order."""
        reached = {self.output}
        for j in range(self.output, -1, -1):
            if j not in reached:
                continue
            for i in self.steps[j].edges:
                target = self.steps[j].args[i]
                if target.kind == STEP:
                    reached.add(target.index)
                yield j, i, target

    def _dead_after(self, saved):
        """{step j: [values last read by step j]} for the values the backward does not read (and
        that are not the output), so the forward frees them as soon as it can."""
        last_read = {}
        kept = set(self.aux[1]) if self.aux else set()   # returned beside the output
        for j, step in enumerate(self.steps):
            last_read.setdefault(j, j)         # a value nothing reads dies where it is made
            for value in list(step.args) + list(step.params.values()):
                for ref in refs_in(value):
                    if ref.kind == STEP:
                        last_read[ref.index] = j
        dead_after = {}
        for k, j in sorted(last_read.items()):
            if k != self.output and f"v{k}" not in saved and Ref(STEP, k) not in kept:
                dead_after.setdefault(j, []).append(k)
        return dead_after

    def _input_edges(self):
        if not self.grad_enabled:
            return ()
        return tuple(sorted({target.index for _, _, target in self._gradient_edges() if target.kind == LEAF}))

    def _make_spec(self):
        """The compiled function as an op: what `apply` and the checker see (the torch reference
        replays the trace with each op's torch reference)."""
        vjps = [None] * len(self.trace.leaves)
        for position, k in enumerate(self.edges):
            vjps[k] = self._generic_vjp(position)
        domains = tuple(REAL if leaf.dtype.kind == "f" else NOT_DIFFERENTIABLE for leaf in self.trace.leaves)
        return OpSpec(f"compiled {self.name}", lambda *arrays: self.forward(*arrays)[0], tuple(vjps),
                      self._torch_reference, domains, "nn",
                      smooth=all(step.spec.smooth for step in self.steps),
                      twice_differentiable=all(step.spec.twice_differentiable for step in self.steps))

    def _fast_vjps(self):
        """The VJPs of the nodes `run` records: their one saved value is `[arrays, gradients]`. The
        first edge's VJP runs the generated backward for all edges, the last one drops the result."""
        vjps = [None] * len(self.trace.leaves)
        last = len(self.edges) - 1
        for position, k in enumerate(self.edges):
            role = "only" if last == 0 else "first" if position == 0 else "last" if position == last else "middle"
            vjps[k] = self._fast_vjp(position, role, self.spec.vjps[k])
        return tuple(vjps)

    def _fast_vjp(self, position, role, generic):
        # one function per role, so the hot call tests nothing but the create_graph case
        if role == "only":
            def vjp(g, out, state, *rest):
                if type(state) is not list:      # create_graph: the engine passes the inputs
                    return generic(g, out, state, *rest)
                return self.backward(g, state[0])[0]
        elif role == "first":
            def vjp(g, out, state, *rest):
                if type(state) is not list:
                    return generic(g, out, state, *rest)
                grads = state[1] = self.backward(g, state[0])
                return grads[0]
        elif role == "middle":
            def vjp(g, out, state, *rest):
                if type(state) is not list:
                    return generic(g, out, state, *rest)
                return state[1][position]
        else:
            def vjp(g, out, state, *rest):
                if type(state) is not list:
                    return generic(g, out, state, *rest)
                grads, state[1] = state[1], None
                return grads[position]
        vjp.__name__ = f"compiled_vjp_input_{self.edges[position]}"
        return vjp

    def _generic_vjp(self, position):
        """A VJP on the node's inputs themselves: raw arrays (a node `apply` made, as the checker does)
        or Variables (create_graph). Arrays of the traced shapes and dtypes run the generated code;
        other arrays an eager graph of new Variables; Variables the trace's backward with graphs."""
        k = self.edges[position]

        def vjp(g, out, *inputs):
            if isinstance(g, Variable):
                grads = self._recorded_backward(g, inputs)
                if position == len(self.edges) - 1:
                    self._recorded = None        # the last edge: do not keep the graph alive
                return grads[position]
            if all(type(a) is np.ndarray and a.shape == leaf.shape and a.dtype == leaf.dtype
                   for a, leaf in zip(inputs, self.trace.leaves)):
                state = self.forward(*inputs)[1]
                return self.backward(g, state[0])[position]
            with enable_grad():
                variables = [Variable(a, requires_grad=j in self.edges) if isinstance(a, np.ndarray) else a
                             for j, a in enumerate(inputs)]
                return grad([self.run_eagerly(variables)], [variables[k]], grad_outputs=[g])[0]
        vjp.__name__ = f"compiled_vjp_input_{k}"
        return vjp

    def _recorded_backward(self, g, inputs):
        """The gradients of every edge input under create_graph: the trace re-run on the input
        Variables, then its VJPs called on Variables in eager backprop's order, each recording its
        graph, as eager create_graph does. Not a nested grad() call: a backward pass keeps its
        bookkeeping on the Variables it visits, and these inputs are the ones the outer pass is
        delivering gradients to. Computed at the first edge and reused for the others (the engine
        calls them in a row with the same g)."""
        cached = self._recorded
        if cached is not None and cached[0] is g and all(a is b for a, b in zip(cached[1], inputs)):
            return cached[2]
        values = self._eager_values(inputs)
        gradients = self._backward_values(g, inputs, values, self._fit_variable)
        grads = [gradients[Ref(LEAF, k)] for k in self.edges]
        self._recorded = (g, tuple(inputs), grads)
        return grads

    def _fit_variable(self, gi, j, i):
        shape, dtype = self.types[self.steps[j].args[i]]
        return fit_variable(gi, shape, dtype, self.steps[j].spec.name, i)

    # -- running the trace step by step (eager re-run, torch reference, the observing run) --
    def _backward_values(self, g, leaves, values, fit):
        """{ref: gradient} from the trace's VJPs, called in eager backprop's order on `g`, each result
        brought to its input's shape and dtype by fit(gi, step index, input index); fan-out summed."""
        gradients = {Ref(STEP, self.output): g}
        for j, i, target in self._gradient_edges():
            step = self.steps[j]
            args, params = self.trace.inputs_of(step, leaves, values, convert_param=_raw_value)
            gi = fit(step.vjps[i](gradients[Ref(STEP, j)], values[j], *args, **params), j, i)
            gradients[target] = gi if target not in gradients else gradients[target] + gi
        return gradients

    def _eager_values(self, inputs):
        """Every step applied op by op to `inputs` (Variables or arrays, one per leaf): the graph eager
        mode would build."""
        return self.trace.evaluate(_apply, inputs, convert_param=_raw_value)

    def run_eagerly(self, inputs):
        return self._eager_values(inputs)[self.output]

    def _torch_reference(self, *tensors):
        return self.trace.evaluate(_torch_step, tensors, convert_param=_numpy_value)[self.output]

    def _observe(self):
        """Run the trace once on its traced values, forward and backward as the engine would, and note
        which forwards return something other than an ndarray (a NumPy scalar) and which VJP results
        need reducing or casting to their input: the generated code converts and reduces exactly there,
        instead of testing every result at every call. (The shapes, dtypes and types of these results
        follow from the inputs' shapes and dtypes, which a trace fixes.) Returns (wraps, fits, types):
        types the (shape, dtype) of every leaf and step; fits is None if a VJP raises here: then every
        result is tested at every call, as the engine does."""
        returned = []

        def run_step(step, args, params):
            returned.append(step.spec.forward(*args, **params))
            return np.asarray(returned[-1])
        values = self.trace.evaluate(run_step, convert_param=_raw_value)
        wraps = {j for j, out in enumerate(returned) if type(out) is not np.ndarray}
        types = {Ref(LEAF, k): (leaf.shape, leaf.dtype) for k, leaf in enumerate(self.trace.leaves)}
        types.update({Ref(STEP, j): (value.shape, value.dtype) for j, value in enumerate(values)})
        self.types = types
        fits = {}
        if not self.edges:
            return wraps, fits, types

        def fit(gi, j, i):
            step = self.steps[j]
            shape, dtype = types[step.args[i]]
            if type(gi) is np.ndarray and gi.shape == shape and gi.dtype == dtype:
                return gi
            if np.asarray(gi).shape == shape and np.asarray(gi).dtype == dtype:
                fits[j, i] = "asarray"                   # a NumPy scalar for a 0-d input
            elif type(gi) is np.ndarray and gi.dtype == dtype and gi.shape[1:] == shape and gi.ndim == len(shape) + 1:
                fits[j, i] = "lead"                      # _sum_to_array's common case: one leading axis
            else:
                fits[j, i] = "fit"
            return fit_array(gi, shape, dtype, step.spec.name, i)
        output = values[self.output]
        try:
            with np.errstate(all="ignore"):
                self._backward_values(np.ones(output.shape, output.dtype), self.trace.leaves, values, fit)
        except Exception:   # noqa: BLE001 - a VJP that fails on these values: test every result instead
            return wraps, None, types
        return wraps, fits, types

    # -- code generation --
    def _generate(self, observed):
        wraps, fits, types = observed
        namespace = {"ndarray": np.ndarray, "asarray": np.asarray, "Variable": Variable, "MISS": MISS,
                     "GM": mode, "record": record, "new_variable": new_variable,
                     "FIT": fit_array, "add_reduce": np.add.reduce, "saved_copy": saved_copy, "SPEC": self.spec,
                     "VJPS": self._fast_vjps(), "NOPARAMS": _NO_PARAMS, "EDGES": self.edges}
        constants = {}

        def constant(value, name=None):
            """A name for `value` in the generated code's namespace."""
            if name is None:
                if id(value) in constants:
                    return constants[id(value)]
                name = constants[id(value)] = f"K{len(constants)}"
            namespace[name] = value
            return name

        used = set()                      # the arrays the backward reads: the forward saves them

        def expr(value):
            if type(value) is Ref:
                if value.kind == CONST:
                    return constant(self.trace.constants[value.index])
                used.add(value)
                return f"{_PREFIX[value.kind]}{value.index}"
            if type(value) is Pack:
                return "(" + "".join(expr(item) + ", " for item in value.items) + ")"
            return constant(value)

        def call(fn_name, leading, step, reads=None):
            """fn(*leading, *step's args, **step's params); positions `reads` marks False get None,
            so the arrays there are not saved for them."""
            args = leading + [expr(ref) if reads is None or reads[len(leading) + k] else "None"
                              for k, ref in enumerate(step.args)]
            if step.params and not any(type(value) in (Ref, Pack) for value in step.params.values()):
                args.append("**" + constant(dict(step.params)))
            else:
                args += [f"{key}={expr(value)}" for key, value in step.params.items()]
            return f"{fn_name}({', '.join(args)})"

        def release_gradient(j):
            """Free a value's gradient once its node's VJPs have run (eager backprop drops it there too):
            the backward's peak memory is then a few gradients, not all of them."""
            name = gradient[Ref(STEP, j)]
            if name != "g":
                lines.append(f"    del {name}")

        # backward first: it says which arrays the forward must save
        lines, gradient, node = [], {Ref(STEP, self.output): "g"}, None
        for j, i, target in self._gradient_edges():
            step = self.steps[j]
            if j != node:
                if node is not None:
                    release_gradient(node)
                lines.append(f"    # {step.spec.name}")
                node = j
            reads = _reads(step.vjps[i], 2 + len(step.args))
            vjp_call = call(constant(step.vjps[i], f'B{j}_{i}'),
                            [gradient[Ref(STEP, j)], expr(Ref(STEP, j)) if reads[1] else "None"], step, reads)
            how = "check" if fits is None else fits.get((j, i))
            if how is None and target not in gradient:      # the common case: the VJP's result as it is
                name = gradient[target] = f"G{target.index}" if target.kind == STEP else f"R{target.index}"
                lines.append(f"    {name} = {vjp_call}")
                continue
            lines.append(f"    t = {vjp_call}")
            shape, dtype = (constant(part) for part in types[step.args[i]])
            if how == "check":
                lines.append(f"    if type(t) is not ndarray or t.shape != {shape} or (t.dtype is not {dtype} "
                             f"and t.dtype != {dtype}):")
                lines.append(f"        t = FIT(t, {shape}, {dtype}, {step.spec.name!r}, {i})")
            elif how == "asarray":
                lines.append("    t = asarray(t)")
            elif how == "lead":
                lines.append("    t = add_reduce(t, 0)        # broadcasting undone over the leading axis")
            elif how == "fit":
                lines.append(f"    t = FIT(t, {shape}, {dtype}, {step.spec.name!r}, {i})   # broadcasting undone")
            name = gradient.get(target)
            if name is None:
                name = gradient[target] = f"G{target.index}" if target.kind == STEP else f"R{target.index}"
                lines.append(f"    {name} = t")
            else:
                lines.append("    " + _ACCUMULATE.format(name=name))
        if node is not None:
            release_gradient(node)
        returned = [gradient[Ref(LEAF, k)] for k in self.edges]
        if len(returned) > 1:   # one array returned for two inputs: the engine could accumulate into it
            lines.append("    # one buffer returned for two inputs would let the engine add one's gradient into "
                         "the other's")
        for p in range(1, len(returned)):
            for q in range(p):
                lines.append("    " + _DEALIAS.format(name=returned[p], other=returned[q]))
        lines.append(f"    return ({''.join(r + ', ' for r in returned)})")
        body = "\n".join(lines)
        saved = [f"{_PREFIX[ref.kind]}{ref.index}" for ref in sorted(used)]
        used = set()                      # the forward and run() below are not the backward
        backward = ["def backward(g, saved):"]
        if saved:
            backward.append(f"    {''.join(n + ', ' for n in saved)}= saved")
        backward.append(body)

        forward = [f"def forward({', '.join(f'i{k}' for k in range(len(self.trace.leaves)))}):"]
        if any(step.spec.may_produce_nan for step in self.steps):
            forward.append("    chk = GM.checking")
        dead_after = self._dead_after(set(saved))
        for j, step in enumerate(self.steps):
            value = call(constant(step.spec.forward, f"F{j}"), [], step)
            forward.append(f"    v{j} = {f'asarray({value})' if j in wraps else value}   # {step.spec.name}")
            if step.spec.may_produce_nan:   # the domain check eager mode makes (NaN from valid inputs)
                arrays = "".join(expr(ref) + ", " for ref in step.args)
                forward.append("    if chk:")
                forward.append(f"        {constant(step.spec, f'SP{j}')}.check_domain(({arrays}), v{j})")
            if dead_after.get(j):   # values neither saved nor read again: freed now, as NumPy code would
                forward.append(f"    del {', '.join(f'v{k}' for k in dead_after[j])}")
        returned = f"    return v{self.output}, [({''.join(n + ', ' for n in saved)}), None]"
        if self.aux:                      # the aux values, after the output and the node's state
            returned += f", ({''.join(expr(ref) + ', ' for ref in self.aux[1])})"
        forward.append(returned)

        self.source = ("\n".join(forward) + "\n\n\n" + "\n".join(backward) + "\n\n\n" +
                       self._run_source(constant, saved) + "\n")
        code = builtins.compile(self.source, f"<sg.compile {self.name}>", "exec")
        exec(code, namespace)
        self.forward, self.backward, self.run = namespace["forward"], namespace["backward"], namespace["run"]

    def _run_source(self, constant, saved):
        """run(*args): the guards (MISS when the arguments do not fit this trace), the forward and
        the node."""
        run = ["def run(*args):", f"    if len(args) != {self.nargs}:", "        return MISS"]
        if self.nargs:
            run.append(f"    {''.join(f'a{p}, ' for p in range(self.nargs))}= args")
        node_inputs, versions = [], []
        for k, (slot, leaf) in enumerate(zip(self.bindings, self.trace.leaves)):
            if slot.kind == "array":
                run += [f"    i{k} = a{slot.position}", f"    if type(i{k}) is not ndarray:",
                        f"        if not isinstance(i{k}, ndarray):", "            return MISS",
                        f"        i{k} = asarray(i{k})",
                        f"    if i{k}.shape != {constant(leaf.shape)} or i{k}.dtype != {constant(leaf.dtype)}:",
                        "        return MISS"]
                if f"i{k}" in saved:
                    run += [f"    if i{k}.flags.writeable:",
                            f"        i{k} = saved_copy(i{k})     # saved for backward: the caller may change it"]
                node_inputs.append(f"i{k}")
                versions.append("None")
                continue
            if slot.kind == "variable":
                holder = f"a{slot.position}"
                run += [f"    if not isinstance({holder}, Variable):", "        return MISS"]
            else:
                holder = constant(slot.variable, f"C{k}")
            # an ndarray's shape and dtype are fixed (in-place updates keep `_data`): checked only
            # when the Variable holds another array than at the previous call
            shape, dtype, seen = constant(leaf.shape), constant(leaf.dtype), constant([None], f"SEEN{k}")
            run += [f"    i{k} = {holder}._data",
                    f"    if i{k} is not {seen}[0]:",
                    f"        if i{k}.shape != {shape} or (i{k}.dtype is not {dtype} and i{k}.dtype != {dtype}):",
                    "            return MISS",
                    f"        {seen}[0] = i{k}",
                    f"    if {holder}.requires_grad is not {self.trace.requires_grad[k]}:",
                    "        return MISS"]
            node_inputs.append(holder)
            versions.append(f"{holder}._version")
        for p, (kind, value) in enumerate(self.arg_guards):
            if kind == "alias":
                run.append(f"    if a{p} is not a{value}:")
            elif kind == "identity":
                run.append(f"    if a{p} is not {constant(value)}:")
            elif kind == "value":
                run.append(f"    if type(a{p}) is not {constant(type(value))} or a{p} != {constant(value)}:")
            else:
                continue
            run.append("        return MISS")
        results = "out, saved, aux" if self.aux else "out, saved"
        run += [f"    if GM.enabled is not {self.grad_enabled}:", "        return MISS",
                f"    {results} = forward({', '.join(f'i{k}' for k in range(len(self.trace.leaves)))})"]
        if self.edges:
            node = (f"record(out, SPEC, VJPS, ({''.join(n + ', ' for n in node_inputs)}), "
                    f"(saved,), NOPARAMS, EDGES, ({''.join(v + ', ' for v in versions)}))")
        else:
            node = "new_variable(out)"
        if self.aux:                      # Variables with no history, in the structure the function returned
            run.append(f"    return {node}, {constant(self.aux[0], 'AUX')}(aux)")
        else:
            run.append(f"    return {node}")
        return "\n".join(run)


_PREFIX = {LEAF: "i", STEP: "v"}     # the generated code's names: i3 is leaf 3, v5 step 5's value
_READS = {}


def _reads(fn, count):
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


def _apply(step, args, params):
    return apply(step.spec, args, params)


def _torch_step(step, args, params):
    """One step of the torch reference: the op's torch function, constants converted as the checker
    converts them (floats to the dtype of the step's first float tensor)."""
    import torch  # optional: only the checker, which has it, asks for the reference
    floats = [a.dtype for a in args if isinstance(a, torch.Tensor) and a.dtype.is_floating_point]
    return step.spec.torch(*[torch_constant(a, floats[0] if floats else None) for a in args], **params)


def _raw_value(value):
    if isinstance(value, Variable):
        return value._data
    if type(value) is tuple:
        return tuple(_raw_value(v) for v in value)
    return value


def _numpy_value(value):
    if hasattr(value, "detach") and hasattr(value, "numpy"):    # a torch tensor
        return value.detach().numpy()
    if type(value) is tuple:
        return tuple(_numpy_value(v) for v in value)
    return value



def _split_result(name, result, has_aux):
    """(output, aux Variables, the aux's kind: Variable, tuple or list) of what the traced function
    returned."""
    if not has_aux:
        if isinstance(result, (tuple, list)):
            raise GraphError(f"sg.compile: function '{name}' returned a {type(result).__name__}; a compiled function "
                             "returns one Variable, or with has_aux=True a pair (output, aux) whose aux Variables "
                             "come back with no gradient (logits for an accuracy beside the loss)")
        return result, (), None
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        got = f"a {type(result).__name__} of {len(result)}" if isinstance(result, (tuple, list)) else \
            type(result).__name__
        raise GraphError(f"sg.compile(has_aux=True): function '{name}' must return a pair (output, aux), got {got}")
    output, aux = result
    if isinstance(aux, Variable):
        return output, (aux,), Variable
    if isinstance(aux, (tuple, list)) and all(isinstance(a, Variable) for a in aux):
        return output, tuple(aux), type(aux) if type(aux) in (tuple, list) else tuple
    raise GraphError(f"sg.compile(has_aux=True): function '{name}' returned an aux of {type(aux).__name__}; it must "
                     "be a Variable or a tuple or list of Variables")


def _in_structure(kind, values):
    """Aux values as the traced function returned them: one Variable, a tuple or a list."""
    return values[0] if kind is Variable else kind(values)


def _aux_variables(kind, arrays):
    return _in_structure(kind, [new_variable(a) for a in arrays])


def _build_plan(name, args, wrapped, result, tracer, has_aux=False):
    result, aux, aux_kind = _split_result(name, result, has_aux)
    if not isinstance(result, Variable):
        raise GraphError(f"sg.compile: function '{name}' must return one Variable, got {type(result).__name__}")
    start = tracer.start
    # the ops recorded during the trace that the result (and aux) depend on, and the Variables they read
    internal, outside = {}, {}
    stack = [result, *aux]
    while stack:
        var = stack.pop()
        if id(var) in internal or id(var) in outside:
            continue
        if var._spec is not None and var._seq > start:
            if var._inputs is None:
                raise GraphError(f"sg.compile: function '{name}': the graph of op '{var._spec.name}' was freed "
                                 "while tracing (did the function call backward?)")
            internal[id(var)] = var
            stack.extend(a for a in var._inputs if isinstance(a, Variable))
        else:
            outside[id(var)] = var
    if id(result) not in internal:
        raise GraphError(f"sg.compile: function '{name}' returned a Variable that no op computed inside it "
                         f"({describe(result)}): an argument or a captured Variable")
    nodes = sorted(internal.values(), key=lambda node: node._seq)
    step_of = {id(node): j for j, node in enumerate(nodes)}

    bindings, leaves, flags, variable_refs, arg_guards = [], [], [], {}, []

    def add_leaf(variable, binding):
        variable_refs[id(variable)] = Ref(LEAF, len(leaves))
        bindings.append(binding)
        leaves.append(variable._data)     # the traced value: what params and constants are matched against
        flags.append(variable.requires_grad)
    for position, (arg, traced) in enumerate(zip(args, wrapped)):
        if isinstance(traced, Variable):
            if id(traced) in variable_refs:
                first = bindings[variable_refs[id(traced)].index].position
                arg_guards.append(("alias", first))
                continue
            add_leaf(traced, _Binding("variable" if isinstance(arg, Variable) else "array", position, None))
            arg_guards.append(("slot", len(leaves) - 1))
        else:
            arg_guards.append((_is_static(arg), arg))
    for node in nodes:                                   # captured: in the order the ops first read them
        for inp in node._inputs:
            if isinstance(inp, Variable) and id(inp) not in step_of and id(inp) not in variable_refs:
                add_leaf(inp, _Binding("captured", None, inp))
    variable_refs.update({id(node): Ref(STEP, j) for j, node in enumerate(nodes)})

    data_refs = {id(leaf): Ref(LEAF, k) for k, leaf in enumerate(leaves)}
    data_refs.update({id(node._data): Ref(STEP, j) for j, node in enumerate(nodes)})
    steps, constants = [], []
    for node in nodes:
        refs = []
        for inp, data in zip(node._inputs, node._datas):
            ref = _read(inp if isinstance(inp, Variable) else data, variable_refs, data_refs)
            if type(ref) not in (Ref, Pack):
                constants.append(ref)
                ref = Ref(CONST, len(constants) - 1)
            refs.append(ref)
        params = {key: _read(value, variable_refs, data_refs) for key, value in node._params.items()}
        steps.append(Step(node._spec, tuple(refs), params, node._vjps, node._edges))
    aux_refs = []
    for k, value in enumerate(aux):
        if id(value) not in variable_refs:
            raise GraphError(f"sg.compile: function '{name}': aux value {k} ({describe(value)}) was neither computed "
                             "by its ops nor read by them (an argument or parameter): its value would be frozen")
        aux_refs.append(variable_refs[id(value)])
    output = step_of[id(result)]
    last = max([output] + [ref.index for ref in aux_refs if ref.kind == STEP])
    trace = Trace(leaves, flags, constants, steps[:last + 1], [output])
    return _Plan(name, len(args), arg_guards, tuple(bindings), trace, mode.enabled,
                 (functools.partial(_aux_variables, aux_kind), tuple(aux_refs)) if has_aux else None)


# ---- the compiled function ------------------------------------------------------------------------

class CompiledFunction:
    """A function of Variables traced once per argument signature and replayed as generated code."""

    def __init__(self, fn, name=None, has_aux=False):
        if not callable(fn):
            raise TypeError(f"sg.compile needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.has_aux = bool(has_aux)
        self.__name__ = name or getattr(fn, "__name__", type(fn).__name__)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn
        self._plans = []                  # the most recently used first
        self.trace_count = 0

    def __call__(self, *args, **kwargs):
        if kwargs:
            raise TypeError(f"compiled function '{self.__name__}' takes positional arguments only "
                            f"(got {', '.join(kwargs)})")
        if mode.tracing is not None:     # called while another function is traced: inline it
            if not self.has_aux:
                return self.fn(*args)
            output, aux, kind = _split_result(self.__name__, self.fn(*args), True)
            # detach() is recorded by the tracer, unlike new Variables
            return output, _in_structure(kind, [value.detach() for value in aux])
        plans = self._plans
        for index, plan in enumerate(plans):
            out = plan.run(*args)
            if out is not MISS:
                if index:
                    plans.insert(0, plans.pop(index))
                return out
        plan = self._trace(args)
        out = plan.run(*args)
        if out is MISS:
            raise GraphError(f"sg.compile: function '{self.__name__}' changed the shape, dtype or requires_grad of "
                             "a Variable it captured while it was traced")
        return out

    def _trace(self, args):
        wrapped = []
        for position, arg in enumerate(args):
            if isinstance(arg, Variable):
                wrapped.append(arg)
            elif isinstance(arg, np.ndarray):
                if type(arg) is not np.ndarray:
                    arg = np.asarray(arg)
                # a raw array runs through the function as a Variable, so NumPy code on it is refused
                # like any value read instead of being frozen into the trace
                wrapped.append(Variable(arg))
            elif _is_static(arg) is not None:
                wrapped.append(arg)
            else:
                raise DTypeError(f"compiled function '{self.__name__}': argument {position} is a "
                                 f"{type(arg).__name__}; pass Variables, NumPy arrays, or hashable values (numbers, "
                                 "strings, tuples: a new value is traced anew). Variables inside a list or dict "
                                 "would be frozen into the trace: pass them as separate arguments")
        tracer = _Tracer()
        mode.tracing = tracer
        try:
            result = self.fn(*wrapped)
        finally:
            mode.tracing = None
        plan = _build_plan(self.__name__, args, wrapped, result, tracer, self.has_aux)
        self.trace_count += 1
        self._plans.insert(0, plan)
        del self._plans[MAX_PLANS:]
        return plan

    def reset(self):
        """Forget every trace: the next call traces again (after changing what the function reads
        from outside its arguments: a flag, a replaced parameter)."""
        self._plans.clear()

    def code(self):
        """The generated code of the most recently used trace (None before the first call)."""
        return self._plans[0].source if self._plans else None

    def __repr__(self):
        return f"<compiled function {self.__name__}: {len(self._plans)} trace(s)>"


def compile(fn=None, *, name=None, has_aux=False):
    """Trace `fn` (a function of Variables returning one Variable) on its first call and replay the
    trace as generated NumPy code afterwards; see the module docstring. Usable as `@sg.compile`.

    has_aux=True (as in jax.value_and_grad): `fn` returns a pair (output, aux), aux a Variable or a
    tuple or list of them, and so does the compiled function; the aux Variables carry no gradient
    (the logits beside a loss, for an accuracy)."""
    if fn is None:
        return lambda f: CompiledFunction(f, name, has_aux)
    return CompiledFunction(fn, name, has_aux)
