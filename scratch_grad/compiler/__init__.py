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
`analysis.reads`) and frees the others once no later op needs them; the backward frees each gradient
once its node has run. With has_aux=True the function returns (output, aux) and so does the compiled one, the
aux Variables without gradient (a training step's logits beside its loss).
"""
from __future__ import annotations

from ..engine import mode
from ..errors import GraphError
from .codegen import MISS
from .node import CompiledNode
from .tracing import in_structure, split_result, trace_call

__all__ = ["compile", "CompiledFunction"]

MAX_PLANS = 32                    # traces kept per function (argument signatures); the oldest is dropped

# The package, module by module (imports run down this list):
#     tracing.py    run the function once under a tracer; the Trace, argument guards and bindings
#     analysis.py   gradient edges in eager order, what the backward reads, liveness, one observing run
#     codegen.py    trace + analysis -> the source text of forward, backward and run (a pure function)
#     node.py       the compiled node: the generated code executed, its OpSpec and VJPs, create_graph


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
            output, aux, kind = split_result(self.__name__, self.fn(*args), True)
            # detach() is recorded by the tracer, unlike new Variables
            return output, in_structure(kind, [value.detach() for value in aux])
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
        plan = CompiledNode(trace_call(self.fn, self.__name__, args, self.has_aux))
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
