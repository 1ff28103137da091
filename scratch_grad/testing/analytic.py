"""The engine under test, as the oracle sees it: the analytic answers it gives for a program.

scratch_grad is checked directly (its Variables, so the contract checks of invariants.py can look at
its buffers); any other engine through its adapter (testing/engines: torch, HIPS autograd, MyGrad,
JAX, a user's own). Both give, for a Program and L = sum_k <output_k, cotangent_k>:

    first()                    (outputs, dL/dx per differentiable leaf)
    second(directions)         d<grad L, w>/dx per leaf (double backward), or raises
    jvp(tangents)              J t per output (forward mode), or None when the engine has none
    gradients_at(program)      dL/dx of the same program on other leaf values (finite differences of
                               the first gradient check the second order against the engine itself)
"""
from dataclasses import replace

import numpy as np

from .gen import with_layout
from .program import program_function
from ..engine import Variable, grad
from ..ops import mul, sum as total


class ScratchAnalytic:
    name = "scratch_grad"
    forward_mode = True
    second_order = True
    contract = True            # invariants.py looks at scratch_grad's own buffers

    def __init__(self, program):
        self.program = program

    def first(self):
        outputs, grads, _ = self.program.scratch_gradients()
        return [getattr(o, "_data", o) for o in outputs], grads

    def second(self, directions):
        return scratch_second_order(self.program, directions)

    def jvp(self, tangents):
        from ..functional import jvp
        program = self.program
        wanted = program.differentiable_leaves()
        fn = program_function(program, wanted)
        primals = [program.leaves[k] for k in wanted]
        # outputs computed from constants alone are arrays with no tangent: J t is 0 there
        live = [isinstance(o, Variable) for o in fn(*[Variable(p) for p in primals])]
        _, tangent_outputs = jvp(lambda *xs: tuple(o for o, keep in zip(fn(*xs), live) if keep), primals,
                                 [np.asarray(t, dtype=program.leaves[k].dtype) for t, k in zip(tangents, wanted)])
        tangent_outputs = iter(tangent_outputs)
        outputs = program.evaluate_raw(program.leaves)
        return [next(tangent_outputs) if keep else np.zeros_like(np.asarray(outputs[k]))
                for keep, k in zip(live, program.outputs)]

    def gradients_at(self, program):
        _, grads, _ = program.scratch_gradients()
        return grads


class EngineAnalytic:
    """Another engine through its adapter (testing/engines)."""
    contract = False

    def __init__(self, program, engine):
        from .engines import run_program
        from .engines.runner import check_provided
        check_provided(program, engine)            # NotProvidedError: the caller skips the program
        self.program, self.engine, self._run = program, engine, run_program
        self.name = engine.name
        self.forward_mode = engine.capabilities.forward_mode
        self.second_order = engine.capabilities.second_order

    def first(self):
        result = self._run(self.program, self.engine, second_order=False, forward_mode=False)
        return result.outputs, result.gradients

    def second(self, directions):
        directions = [np.asarray(w, dtype=self.program.dtype) for w in directions]
        result = self._run(self.program, self.engine, second_order=True, forward_mode=False, directions=directions)
        if "second" in result.errors:
            raise result.errors["second"]
        return result.second

    def jvp(self, tangents):
        if not self.forward_mode:
            return None
        tangents = [np.asarray(t, dtype=self.program.dtype) for t in tangents]
        result = self._run(self.program, self.engine, second_order=False, forward_mode=True, tangents=tangents)
        if "jvp" in result.errors:
            raise result.errors["jvp"]
        return result.jvp

    def gradients_at(self, program):
        if np.dtype(program.dtype).name not in self.engine.capabilities.dtypes:
            program = program.astype(self.program.dtype)
        result = self._run(program, self.engine, second_order=False, forward_mode=False)
        return [np.asarray(g, dtype=np.float64) for g in result.gradients]


def analytic_for(program, engine=None):
    """The analytic side of a check: scratch_grad (engine None or the scratch_grad adapter) or an adapter."""
    if engine is None or getattr(engine, "name", None) == "scratch_grad":
        return ScratchAnalytic(program)
    return EngineAnalytic(program, engine)


def scratch_second_order(program, directions):
    """Gradient of S = sum_i <dL/dx_i, w_i> with respect to every leaf (grad of grad). The cotangent
    and the directions are handed over as non-contiguous views (gradgradcheck does the same): a VJP
    that assumes contiguous buffers under create_graph shows here."""
    strided = replace(program, cotangents=[with_layout(np.asarray(c), "strided") for c in program.cotangents])
    _, first, variables = strided.scratch_gradients(create_graph=True)
    wanted = [variables[k] for k in program.differentiable_leaves()]
    s = None
    for g, w in zip(first, directions):
        if isinstance(g, Variable) and g.requires_grad:
            term = total(mul(g, with_layout(np.asarray(w, dtype=g.dtype), "strided")))
            s = term if s is None else s + term
    if s is None:   # every first gradient is a constant: the second derivative is zero
        return [np.zeros(v.shape, dtype=v.dtype) for v in wanted]
    result = grad(s, wanted, allow_unused=True)
    return [np.zeros(v.shape, dtype=v.dtype) if r is None else r for r, v in zip(result, wanted)]
