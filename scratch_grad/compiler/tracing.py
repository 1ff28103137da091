"""Tracing: run a function of Variables once under a tracer and turn the graph it recorded into a Trace,
with what a later call must match to replay it (argument guards, grad mode) and where a call finds each
leaf of the trace (bindings)."""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ..engine import Variable, mode, new_variable, next_seq, record, saved_copy
from ..errors import DTypeError, GraphError, describe
from ..ops.registry import REAL, OpSpec
from ..trace import CONST, LEAF, STEP, Pack, Ref, Step, Trace

_STATIC_VALUES = (numbers.Number, str, bytes, type(None), np.generic)
NO_PARAMS = {}


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
        node = record(out, spec, vjps, tuple(args), tuple(datas), params or NO_PARAMS, (), (None,) * len(args))
        node.requires_grad = False
        return node

    def detach(self, var):
        return self.constant_node(var._data, _DETACH, (var,), (var._data,), NO_PARAMS)


# detach() while tracing: an identity with no gradient (not in the registry: it is not an op users call)
_DETACH = OpSpec("detach", lambda x: x, (None,), lambda x: x.detach(), (REAL,), "shape")


def is_static(value):
    """Non-array arguments select a trace by value (numbers, strings, tuples of them) or, when only
    hashable, by identity (functions, modules); None for those that can do neither (lists, dicts)."""
    if isinstance(value, _STATIC_VALUES):
        return "value"
    if type(value) is tuple:
        return "value" if all(is_static(v) == "value" for v in value) else None
    if isinstance(value, (list, dict, set)):
        return None
    try:
        hash(value)
    except TypeError:
        return None
    return "identity"


class Binding:
    """Where a call finds an input of the compiled node (a leaf of the trace): an argument (a Variable
    or a raw array) or a captured Variable."""
    __slots__ = ("kind", "position", "variable")

    def __init__(self, kind, position, variable):
        self.kind = kind                  # "variable" or "array" (arguments), "captured"
        self.position = position          # argument position (None for captured)
        self.variable = variable          # the captured Variable (None for arguments)


@dataclass(frozen=True)
class TracedCall:
    """One trace of a compiled function and what a call must match to replay it."""
    name: str
    nargs: int
    arg_guards: tuple       # per argument: ("slot", k) | ("alias", j) | ("value"|"identity", v)
    bindings: tuple         # per leaf of the trace: a Binding
    trace: Trace
    grad_enabled: bool      # grad mode when traced: a call in the other mode traces again
    aux_kind: type = None   # has_aux: Variable, tuple or list, the structure of the aux values returned
    aux_refs: tuple = None  # has_aux: the values returned beside the output (None without has_aux)


def trace_call(fn, name, args, has_aux=False):
    """Run fn(*args) once under a tracer and return what it computed as a TracedCall."""
    wrapped = _wrap_arguments(name, args)
    tracer = _Tracer()
    mode.tracing = tracer
    try:
        result = fn(*wrapped)
    finally:
        mode.tracing = None
    output, aux, aux_kind = split_result(name, result, has_aux)
    if not isinstance(output, Variable):
        raise GraphError(f"sg.compile: function '{name}' must return one Variable, got {type(output).__name__}")
    nodes = _recorded_nodes(name, [output, *aux], tracer.start)
    if all(node is not output for node in nodes):
        raise GraphError(f"sg.compile: function '{name}' returned a Variable that no op computed inside it "
                         f"({describe(output)}): an argument or a captured Variable")
    leaves = _Leaves(args, wrapped, nodes)
    step_refs = {id(node): Ref(STEP, j) for j, node in enumerate(nodes)}
    variable_refs = {**leaves.refs, **step_refs}
    data_refs = {id(leaf): Ref(LEAF, k) for k, leaf in enumerate(leaves.arrays)}
    data_refs.update({id(node._data): Ref(STEP, j) for j, node in enumerate(nodes)})
    steps, constants = _steps(nodes, variable_refs, data_refs)
    aux_refs = []
    for k, value in enumerate(aux):
        if id(value) not in variable_refs:
            raise GraphError(f"sg.compile: function '{name}': aux value {k} ({describe(value)}) was neither computed "
                             "by its ops nor read by them (an argument or parameter): its value would be frozen")
        aux_refs.append(variable_refs[id(value)])
    last = max([step_refs[id(output)].index] + [ref.index for ref in aux_refs if ref.kind == STEP])
    trace = Trace(leaves.arrays, leaves.flags, constants, steps[:last + 1], [step_refs[id(output)].index])
    return TracedCall(name, len(args), tuple(leaves.guards), tuple(leaves.bindings), trace, mode.enabled,
                      aux_kind, tuple(aux_refs) if has_aux else None)


def _wrap_arguments(name, args):
    """The arguments the function runs on while traced: raw arrays as Variables, so NumPy code on them
    is refused like any value read instead of being frozen into the trace."""
    wrapped = []
    for position, arg in enumerate(args):
        if isinstance(arg, Variable):
            wrapped.append(arg)
        elif isinstance(arg, np.ndarray):
            wrapped.append(Variable(arg if type(arg) is np.ndarray else np.asarray(arg)))
        elif is_static(arg) is not None:
            wrapped.append(arg)
        else:
            raise DTypeError(f"compiled function '{name}': argument {position} is a "
                             f"{type(arg).__name__}; pass Variables, NumPy arrays, or hashable values (numbers, "
                             "strings, tuples: a new value is traced anew). Variables inside a list or dict "
                             "would be frozen into the trace: pass them as separate arguments")
    return wrapped


def _recorded_nodes(name, results, start):
    """The nodes recorded during the trace (seq after `start`) that `results` depend on, in creation
    order (an explicit stack, no recursion)."""
    internal, seen = {}, set()
    stack = list(results)
    while stack:
        var = stack.pop()
        if id(var) in seen:
            continue
        seen.add(id(var))
        if var._spec is not None and var._seq > start:
            if var._inputs is None:
                raise GraphError(f"sg.compile: function '{name}': the graph of op '{var._spec.name}' was freed "
                                 "while tracing (did the function call backward?)")
            internal[id(var)] = var
            stack.extend(a for a in var._inputs if isinstance(a, Variable))
    return sorted(internal.values(), key=lambda node: node._seq)


class _Leaves:
    """The trace's leaves: the Variable arguments (and raw arrays), then the Variables the ops captured
    in the order they first read them; per argument, the guard a call must pass."""

    def __init__(self, args, wrapped, nodes):
        self.refs, self.bindings, self.arrays, self.flags, self.guards = {}, [], [], [], []
        for position, (arg, traced) in enumerate(zip(args, wrapped)):
            if not isinstance(traced, Variable):
                self.guards.append((is_static(arg), arg))
            elif id(traced) in self.refs:
                self.guards.append(("alias", self.bindings[self.refs[id(traced)].index].position))
            else:
                self._add(traced, Binding("variable" if isinstance(arg, Variable) else "array", position, None))
                self.guards.append(("slot", len(self.arrays) - 1))
        computed = {id(node) for node in nodes}
        for node in nodes:
            for inp in node._inputs:
                if isinstance(inp, Variable) and id(inp) not in computed and id(inp) not in self.refs:
                    self._add(inp, Binding("captured", None, inp))

    def _add(self, variable, binding):
        self.refs[id(variable)] = Ref(LEAF, len(self.arrays))
        self.bindings.append(binding)
        self.arrays.append(variable._data)   # the traced value: what params and constants are matched against
        self.flags.append(variable.requires_grad)


def _steps(nodes, variable_refs, data_refs):
    """(steps, constants): one Step per node, its inputs as Refs (constants numbered as met)."""
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
    return steps, constants


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


def split_result(name, result, has_aux):
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


def in_structure(kind, values):
    """Aux values as the traced function returned them: one Variable, a tuple or a list."""
    return values[0] if kind is Variable else kind(values)


def aux_variables(kind, arrays):
    """The aux arrays a replay computed, as Variables without gradient in the traced structure."""
    return in_structure(kind, [new_variable(a) for a in arrays])
