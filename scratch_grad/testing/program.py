"""A program: a straight-line sequence of registry ops over leaves and constants, with cotangents.

Everything the checker compares is a Program: a single op on sampled inputs, a random graph, or
a user function traced by running it once on Variables. The same program is then run

- by scratch_grad on Variables (forward, gradients, gradients of gradients),
- by torch, op by op through each registry entry's `torch` reference (the equivalent torch code),
- on raw float64 NumPy arrays (fast; what finite differences evaluate),
- and printed as two standalone scripts, one per library (reproducers).

The scalar that is differentiated is L = sum_k <output_k, cotangent_k>.
"""
from dataclasses import dataclass, field, replace

import numpy as np

from ..engine import Variable, apply, grad
from ..errors import GraphError
from ..trace import CONST, LEAF, STEP, Ref, Step, Trace, torch_constant


@dataclass
class Program(Trace):
    """A trace (scratch_grad/trace.py: leaves, constants, steps, outputs) with one cotangent per output."""
    cotangents: list              # one array per output, of its shape
    name: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def dtype(self):
        for leaf in self.leaves:
            if leaf.dtype.kind == "f":
                return leaf.dtype
        return np.dtype(np.float64)

    @property
    def depth(self):
        return max(len(self.steps), 1)

    def op_names(self):
        return sorted({step.spec.name for step in self.steps})

    def twice_differentiable(self):
        return all(step.spec.twice_differentiable for step in self.steps)

    def differentiable_leaves(self):
        return [k for k, flag in enumerate(self.requires_grad) if flag]

    def astype(self, dtype):
        """The same program with leaves, float constants and cotangents cast to `dtype`."""
        dtype = np.dtype(dtype)
        return replace(self, leaves=[_cast_float(v, dtype) for v in self.leaves],
                       constants=[_cast_float(c, dtype) for c in self.constants],
                       cotangents=[_cast_float(c, dtype) for c in self.cotangents], meta=dict(self.meta))

    # ---- raw NumPy (finite differences) --------------------------------------------------------
    def evaluate_raw(self, leaves):
        """Every step's value, computed with each spec's forward on raw arrays."""
        return self.evaluate(_forward_raw, leaves)

    def at_convention(self):
        """The ops of the program that meet a point of their declared convention (OpSpec.conventions) on
        its own leaves: there a clean finite difference does not outvote scratch_grad and torch agreeing."""
        if not any(step.spec.conventions for step in self.steps):
            return []
        met = []

        def run_step(step, args, params):
            if step.spec.conventions is not None and step.spec.conventions(*args, **params):
                met.append(step.spec.name)
            return _forward_raw(step, args, params)
        self.evaluate(run_step)
        return met

    def at_kink(self):
        """The non-smooth ops of the program that meet one of their declared kinks exactly (an input entry
        on a point its Domain avoids: abs at 0): there the first gradient jumps, and finite differences of
        it (the second order's third reference) straddle the jump."""
        if all(step.spec.smooth for step in self.steps):
            return []                    # no kink to meet: no forward pass spent on it
        met = []

        def run_step(step, args, params):
            if not step.spec.smooth:
                for arg, domain in zip(args, step.spec.domain):
                    if domain.avoid and isinstance(arg, np.ndarray) and arg.dtype.kind == "f" and \
                            np.isin(arg, np.asarray(domain.avoid, dtype=arg.dtype)).any():
                        met.append(step.spec.name)
                        break
            return _forward_raw(step, args, params)
        self.evaluate(run_step)
        return met

    def scalar_raw(self, leaves):
        """(L, |L|_abs) on raw arrays: the objective and the magnitude of the terms summed into it."""
        values = self.evaluate_raw(leaves)
        total = 0.0
        absolute = 0.0
        for k, c in zip(self.outputs, self.cotangents):
            y = np.asarray(values[k], dtype=np.float64)
            c = np.asarray(c, dtype=np.float64)
            total += float(np.sum(y * c))
            absolute += float(np.sum(np.abs(y) * np.abs(c)))
        return total, absolute

    # ---- scratch_grad ------------------------------------------------------------------------------
    def run_scratch(self, leaves=None):
        """(leaf Variables, output Variables): the program run on scratch_grad Variables."""
        leaves = self.leaves if leaves is None else leaves
        variables = [Variable(v, requires_grad=bool(flag)) for v, flag in zip(leaves, self.requires_grad)]
        values = self.evaluate(_apply, variables)
        return variables, [values[k] for k in self.outputs]

    def scratch_gradients(self, leaves=None, create_graph=False):
        """(outputs, gradients of L per leaf, leaf Variables); zeros for leaves L does not use."""
        variables, outputs = self.run_scratch(leaves)
        wanted = [variables[k] for k in self.differentiable_leaves()]
        live = [(out, c) for out, c in zip(outputs, self.cotangents)
                if isinstance(out, Variable) and out.requires_grad]
        if not wanted or not live:
            return outputs, [None] * len(wanted), variables
        grads = grad([o for o, _ in live], wanted, grad_outputs=[np.asarray(c) for _, c in live],
                     create_graph=create_graph, allow_unused=True)
        grads = [np.zeros_like(v.data) if g is None and not create_graph else g for g, v in zip(grads, wanted)]
        return outputs, grads, variables

    # ---- torch ---------------------------------------------------------------------------------------
    def run_torch(self, dtype, create_graph=False, second_order_directions=None, return_scale=False):
        """Outputs, gradients of L and (optionally) gradients of <grad L, w> computed by torch in dtype;
        with return_scale, also the largest finite |gradient| of L anywhere in the backward pass (every
        step's value and every leaf): the size of the terms backprop sums (oracle.py's tolerance floor)."""
        import torch
        torch_dtype = getattr(torch, np.dtype(dtype).name)
        leaves = [torch.tensor(np.array(v, order="C"), dtype=torch_dtype, requires_grad=bool(flag))
                  for v, flag in zip(self.leaves, self.requires_grad)]
        constants = [torch_constant(c, torch_dtype) for c in self.constants]
        with torch.enable_grad():
            values = self.evaluate(_torch_step, leaves, constants)
            outputs = [values[k] for k in self.outputs]
            wanted = [leaves[k] for k in self.differentiable_leaves()]
            live = [(o, c) for o, c in zip(outputs, self.cotangents) if o.requires_grad]
            grads = [None] * len(wanted)
            scale = 0.0
            if wanted and live:
                need_graph = create_graph or second_order_directions is not None
                intermediates = [v for v in values if return_scale and isinstance(v, torch.Tensor)
                                 and v.requires_grad] if return_scale else []
                found = list(torch.autograd.grad([o for o, _ in live], wanted + intermediates,
                                                 [torch.tensor(np.array(c, order="C"), dtype=torch_dtype)
                                                  for _, c in live],
                                                 allow_unused=True, create_graph=need_graph))
                grads = found[:len(wanted)]
                for g in found:
                    if g is not None and g.numel():
                        magnitude = g.detach().abs()
                        magnitude = magnitude[torch.isfinite(magnitude)]
                        if magnitude.numel():
                            scale = max(scale, float(magnitude.max()))
            second = None
            if second_order_directions is not None:
                total = None
                for g, w in zip(grads, second_order_directions):
                    if g is not None and g.requires_grad:
                        term = (g * torch.tensor(w, dtype=torch_dtype)).sum()
                        total = term if total is None else total + term
                if total is None:
                    second = [np.zeros(tuple(v.shape)) for v in wanted]
                else:
                    second = [_to_numpy(s, v) for s, v in
                              zip(torch.autograd.grad(total, wanted, allow_unused=True), wanted)]
        outputs = [o.detach().numpy() for o in outputs]
        grads = [_to_numpy(g, v) for g, v in zip(grads, wanted)]
        if return_scale:
            return outputs, grads, second, scale
        return outputs, grads, second


def program_function(program, wanted=None):
    """fn(*Variables) -> the program's outputs, a function of the leaves `wanted` (default: the
    differentiable ones); the other leaves are held fixed at their values."""
    wanted = program.differentiable_leaves() if wanted is None else list(wanted)

    def fn(*variables):
        leaves = {k: Variable(v) for k, v in enumerate(program.leaves) if k not in wanted}
        leaves.update(zip(wanted, variables))
        values = program.evaluate(_apply, leaves)
        return [values[k] for k in program.outputs]
    fn.__name__ = program.name or "program"
    return fn


def torch_jvp(program, tangents):
    """J t of every output, by torch's forward mode (torch.func.jvp) on the program's torch replay in
    float64, t one tangent per differentiable leaf; torch's double-backward JVP where a reference
    has no forward-mode rule."""
    import torch
    program = program.astype(np.float64)
    wanted = program.differentiable_leaves()
    fixed = {k: torch.tensor(np.array(v, order="C")) for k, v in enumerate(program.leaves) if k not in wanted}
    constants = [torch_constant(c, torch.float64) for c in program.constants]

    def fn(*tensors):
        leaves = dict(fixed)
        leaves.update(zip(wanted, tensors))
        values = program.evaluate(_torch_step, leaves, constants)
        return tuple(values[k] for k in program.outputs)

    primals = tuple(torch.tensor(np.array(program.leaves[k], order="C")) for k in wanted)
    directions = tuple(torch.tensor(np.array(t, dtype=np.float64, order="C")) for t in tangents)
    try:
        _, result = torch.func.jvp(fn, primals, directions)
    except Exception:  # noqa: BLE001 - a reference without a forward-mode rule: the double-backward JVP
        _, result = torch.autograd.functional.jvp(fn, primals, directions)
    return [r.detach().numpy().astype(np.float64) for r in result]


def _forward_raw(step, args, params):
    return np.asarray(step.spec.forward(*args, **params) if params else step.spec.forward(*args))


def _apply(step, args, params):
    return apply(step.spec, args, params)


def _torch_step(step, args, params):
    return step.spec.torch(*args, **params)


def _to_numpy(gradient, leaf):
    """A torch gradient as a float64 array; None and torch's lazy ZeroTensor become zeros."""
    if gradient is None or gradient._is_zerotensor():
        return np.zeros(tuple(leaf.shape))
    return gradient.detach().numpy().astype(np.float64)


def _cast_float(value, dtype):
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value.astype(dtype)
    return value


# ---- building programs -------------------------------------------------------------------------------

def single_op_program(spec, inputs, params, cotangent_gen=None, rng=None):
    """The program `spec(*inputs, **params)`: float inputs whose domain is differentiable become
    leaves, the rest constants. The cotangent comes from cotangent_gen (gen protocol) or rng."""
    domains = list(spec.domain) * len(inputs) if spec.variadic else list(spec.domain)
    leaves, flags, constants, args = [], [], [], []
    for value, domain in zip(inputs, domains):
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and domain.differentiable:
            args.append(Ref(LEAF, len(leaves)))
            leaves.append(value)
            flags.append(True)
        else:
            args.append(Ref(CONST, len(constants)))
            constants.append(value)
    program = Program(leaves, flags, constants, [Step(spec, tuple(args), dict(params))], [0], [], name=spec.name)
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(spec.forward(*inputs, **params))
    except Exception as exc:  # noqa: BLE001 - the forward refuses an input: a finding if torch accepts it
        from .faults import raised_by_checker
        if raised_by_checker(exc):
            raise
        # the output's shape from the reference, so the check runs and reports the forward's exception;
        # an input the reference refuses too is the sampler's fault (the caller's exception)
        out = np.empty(_reference_shape(program, exc))
    dtype = program.dtype
    if cotangent_gen is not None:
        plain = cotangent_gen.plain() if hasattr(cotangent_gen, "plain") else cotangent_gen
        cotangent = np.asarray(plain.array(out.shape), dtype=dtype)
    else:
        rng = np.random.default_rng(0) if rng is None else rng
        cotangent = rng.uniform(-2, 2, size=out.shape).astype(dtype)
    program.cotangents = [cotangent]
    return program


def _reference_shape(program, exc):
    """The output shape torch's reference gives for a single-op program, or `exc` re-raised."""
    try:
        outputs, _, _ = program.astype(np.float64).run_torch(np.float64)
    except Exception:  # noqa: BLE001 - both refuse the input
        raise exc from None
    return np.shape(outputs[0])


def trace(fn, inputs):
    """Run fn once on Variables made from `inputs` and record the program it executed.

    Float array inputs become leaves that require grad; Variables are used as given. Values fn
    computes without a graph (constants, results under no_grad) are recorded as constants."""
    variables = []
    for value in inputs:
        if isinstance(value, Variable):
            variables.append(value)
        else:
            array = np.asarray(value)
            variables.append(Variable(array, requires_grad=array.dtype.kind == "f"))
    result = fn(*variables)
    if getattr(fn, "has_aux", False):       # sg.compile(..., has_aux=True): the aux values carry no gradient
        result = result[0]
    outputs = list(result) if isinstance(result, (list, tuple)) else [result]
    for k, out in enumerate(outputs):
        if not isinstance(out, Variable):
            raise GraphError(f"check_fn: the function must return Variables, output {k} is {type(out).__name__}")
    leaf_index = {id(v): k for k, v in enumerate(variables)}
    step_index = {}
    steps, constants = [], []

    def argument(value):
        if isinstance(value, Variable):
            if id(value) in leaf_index:
                return Ref(LEAF, leaf_index[id(value)])
            if id(value) in step_index:
                return Ref(STEP, step_index[id(value)])
            value = value.data
        constants.append(value)
        return Ref(CONST, len(constants) - 1)

    # iterative post-order walk from the outputs: a node is emitted after all its Variable inputs
    stack = [(out, False) for out in reversed(outputs)]
    while stack:
        var, expanded = stack.pop()
        if id(var) in step_index or id(var) in leaf_index or var.is_leaf:
            continue
        if var._inputs is None:
            raise GraphError("check_fn: the function's graph was already freed (it called backward itself)")
        if not expanded:
            stack.append((var, True))
            for inp in reversed(var._inputs):
                if isinstance(inp, Variable) and not inp.is_leaf and id(inp) not in step_index:
                    stack.append((inp, False))
            continue
        args = tuple(argument(inp) for inp in var._inputs)
        steps.append(Step(var._spec, args, dict(var._params)))
        step_index[id(var)] = len(steps) - 1
    output_steps = []
    for out in outputs:
        if id(out) not in step_index:
            # an output that is a leaf or constant: wrap it in an identity-free reshape step
            raise GraphError("check_fn: an output does not depend on any input through a recorded op")
        output_steps.append(step_index[id(out)])
    leaves = [v.data for v in variables]
    flags = [v.requires_grad for v in variables]
    return Program(leaves, flags, constants, steps, output_steps, [], name=getattr(fn, "__name__", "fn"))
