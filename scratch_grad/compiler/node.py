"""The compiled node: one trace of a compiled function as an op of the engine.

A call's result is one graph node whose inputs are the trace's leaves. It keeps `[saved arrays,
gradients]` as its one saved value: the engine calls the node's VJPs for its edges in order within one
visit, so the first runs the generated backward for every input and the last drops the result. The
same node's OpSpec, used by `apply` and the checker, has VJPs on the inputs themselves (generic_vjp):
raw arrays run the generated code, Variables (create_graph) re-run the trace op by op."""
from __future__ import annotations

import builtins
import functools

import numpy as np

from ..engine import Variable, apply, enable_grad, fit_variable, grad
from ..ops.registry import NOT_DIFFERENTIABLE, REAL, OpSpec
from ..trace import LEAF, Ref, torch_constant
from . import analysis as _analysis
from . import codegen
from .tracing import aux_variables


class CompiledNode:
    """One trace of a compiled function, its generated code (`source`, `forward`, `backward`, `run`)
    and its OpSpec."""

    def __init__(self, call):
        self.call = call
        self.name = call.name
        self.trace = call.trace
        self.steps = call.trace.steps
        self.output = call.trace.outputs[0]   # the step whose value the function returns
        self.analysis = _analysis.analyze(call.trace, call.grad_enabled, call.aux_refs or ())
        self.edges = self.analysis.edges       # leaves that receive a gradient
        self._recorded = None                  # (g, inputs, gradients) of the latest create_graph backward
        self.spec = self._make_spec()
        generated = codegen.generate(call, self.analysis)
        self.source = generated.source
        namespace = dict(generated.names, SPEC=self.spec, VJPS=self._fast_vjps())
        if call.aux_refs is not None:
            namespace["AUX"] = functools.partial(aux_variables, call.aux_kind)
        exec(builtins.compile(self.source, f"<sg.compile {self.name}>", "exec"), namespace)
        self.forward, self.backward, self.run = namespace["forward"], namespace["backward"], namespace["run"]

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
        gradients = _analysis.backward_values(self.trace, self.analysis.gradient_edges, g, inputs, values,
                                              self._fit_variable)
        grads = [gradients[Ref(LEAF, k)] for k in self.edges]
        self._recorded = (g, tuple(inputs), grads)
        return grads

    def _fit_variable(self, gi, j, i):
        shape, dtype = self.analysis.observation.types[self.steps[j].args[i]]
        return fit_variable(gi, shape, dtype, self.steps[j].spec.name, i)

    def _eager_values(self, inputs):
        """Every step applied op by op to `inputs` (Variables or arrays, one per leaf): the graph eager
        mode would build."""
        return self.trace.evaluate(_apply, inputs, convert_param=_analysis.raw_value)

    def run_eagerly(self, inputs):
        return self._eager_values(inputs)[self.output]

    def _torch_reference(self, *tensors):
        return self.trace.evaluate(_torch_step, tensors, convert_param=_numpy_value)[self.output]


def _apply(step, args, params):
    return apply(step.spec, args, params)


def _torch_step(step, args, params):
    """One step of the torch reference: the op's torch function, constants converted as the checker
    converts them (floats to the dtype of the step's first float tensor)."""
    import torch  # optional: only the checker, which has it, asks for the reference
    floats = [a.dtype for a in args if isinstance(a, torch.Tensor) and a.dtype.is_floating_point]
    return step.spec.torch(*[torch_constant(a, floats[0] if floats else None) for a in args], **params)


def _numpy_value(value):
    if hasattr(value, "detach") and hasattr(value, "numpy"):    # a torch tensor
        return value.detach().numpy()
    if type(value) is tuple:
        return tuple(_numpy_value(v) for v in value)
    return value
