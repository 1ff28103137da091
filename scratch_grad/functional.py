"""Forward mode and whole derivatives: `jvp`, `jacobian`, `hessian` (sg.jvp, sg.jacobian, sg.hessian).

The engine is reverse mode only. A Jacobian-vector product is obtained as the transpose of the
vector-Jacobian product (the "double VJP" trick, as torch.autograd.functional.jvp does): for
outputs y = f(x) and a cotangent u,

    v(u) = VJP(u) = u^T J        is linear in u,
    so   d<v(u), t>/du = J t     is the JVP along the tangent t,

and differentiating v with respect to u is a second backward pass through the graph that the
first one recorded with `create_graph=True`. Every VJP is written with scratch_grad ops on g
(registry.py), so that graph exists for every op declared `twice_differentiable`; an op declared
otherwise is refused here with a GraphError rather than trusted. The value of u does not matter
(v is linear in it): u = 0, as torch does. The cost is about one forward and two backward passes.

`jacobian` is reverse mode, one VJP per output entry (a row each, as torch.func.jacrev), and
`hessian` is the Jacobian of the gradient, reverse over reverse (the gradient is computed with
`create_graph=True`). All three are functional, like jax.jvp and torch.func: `fn` receives fresh
Variables that require grad, and the results are ndarrays; no graph is recorded through them
(they cannot be nested inside another derivative yet).
"""
from __future__ import annotations

import numbers

import numpy as np

from .engine import Variable, grad
from .errors import DTypeError, GraphError, ShapeError, describe
from .ops import reshape, stack

__all__ = ["jvp", "jacobian", "hessian"]


# ---- inputs and outputs --------------------------------------------------------------------------------

def _primal_array(value, where, index):
    """A primal as a float ndarray (a copy): a Variable's data, an ndarray, or a real number."""
    if isinstance(value, Variable):
        array = np.array(value._data)
    elif isinstance(value, np.ndarray):
        array = np.array(value)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        array = np.array(value, dtype=np.float64)
    else:
        raise DTypeError(f"{where}: input {index} is a {type(value).__name__}; pass a Variable, an ndarray or a "
                         "real number")
    if array.dtype.kind != "f":
        raise DTypeError(f"{where}: input {index} ({describe(array)}) is not floating point, so it has no "
                         "derivative; pass floats, or close over it in fn as a constant")
    return array


def _as_sequence(values, where, what):
    if not isinstance(values, (tuple, list)):
        raise DTypeError(f"{where}: {what} must be a tuple or list (like jax.jvp), got "
                         f"{type(values).__name__}; wrap a single input as ({what[:-1]},)")
    return list(values)


def _call(fn, arrays, where):
    """(leaf Variables, outputs as a list, whether fn returned a single output)."""
    leaves = [Variable(a, requires_grad=True) for a in arrays]
    result = fn(*leaves)
    single = not isinstance(result, (tuple, list))
    outputs = [result] if single else list(result)
    for k, out in enumerate(outputs):
        if not isinstance(out, Variable):
            raise GraphError(f"{where}: fn must return a Variable or a tuple of Variables; output {k} is a "
                             f"{type(out).__name__}")
    return leaves, outputs, single


def _require_twice_differentiable(outputs, where):
    """Refuse a graph holding an op whose VJP is not declared differentiable (its registry entry
    says twice_differentiable=False): differentiating its VJP could silently give zeros.
    An iterative walk over the recorded nodes (no recursion: graphs can be deep)."""
    seen = set()
    pending = [out for out in outputs if out._spec is not None]
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if not node._spec.twice_differentiable:
            raise GraphError(f"{where}: op '{node._spec.name}' is declared twice_differentiable=False; {where} "
                             "differentiates its VJP (a VJP of the VJP), which that op does not support")
        if node._inputs is None:
            raise GraphError(f"{where}: the graph of op '{node._spec.name}' was already freed (fn called backward)")
        pending.extend(inp for inp in node._inputs if isinstance(inp, Variable) and inp._spec is not None)


def _values(arrays, single):
    return arrays[0] if single else tuple(arrays)


# ---- jvp ---------------------------------------------------------------------------------------------------

def jvp(fn, primals, tangents):
    """(outputs, tangent outputs) of fn at `primals` along `tangents`: jax.jvp's contract.

    primals and tangents are tuples (or lists) of equal length; each tangent has its primal's shape
    and dtype. fn takes one Variable per primal and returns a Variable or a tuple of Variables.
    Returns ndarrays with fn's output structure: outputs, and J t (one per output, in the output's
    shape and dtype). Computed as a VJP of the VJP (see the module docstring)."""
    primals = _as_sequence(primals, "jvp", "primals")
    tangents = _as_sequence(tangents, "jvp", "tangents")
    if len(primals) != len(tangents):
        raise ShapeError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    arrays = [_primal_array(p, "jvp", k) for k, p in enumerate(primals)]
    tangent_arrays = []
    for k, (t, x) in enumerate(zip(tangents, arrays)):
        t = _primal_array(t, "jvp: tangent", k)
        if t.shape != x.shape:
            raise ShapeError(f"jvp: tangent {k} has shape {t.shape} but its primal has shape {x.shape}")
        if t.dtype != x.dtype:
            raise DTypeError(f"jvp: tangent {k} has dtype {t.dtype} but its primal has dtype {x.dtype}")
        tangent_arrays.append(t)
    leaves, outputs, single = _call(fn, arrays, "jvp")
    values = [out._data.copy() for out in outputs]
    live = [k for k, out in enumerate(outputs) if out.requires_grad]
    results = [np.zeros_like(v) for v in values]      # outputs that do not depend on the primals
    if live:
        _require_twice_differentiable([outputs[k] for k in live], "jvp")
        # u: the cotangent the first VJP is a (linear) function of
        dummies = [Variable(np.zeros_like(values[k]), requires_grad=True) for k in live]
        first = grad([outputs[k] for k in live], leaves, grad_outputs=dummies, create_graph=True, allow_unused=True)
        pairs = [(g, t) for g, t in zip(first, tangent_arrays) if isinstance(g, Variable) and g.requires_grad]
        if pairs:
            second = grad([g for g, _ in pairs], dummies, grad_outputs=[t for _, t in pairs], allow_unused=True)
            for k, s in zip(live, second):
                if s is not None:
                    results[k] = np.asarray(s, dtype=values[k].dtype)
    return _values(values, single), _values(results, single)


# ---- jacobian and hessian --------------------------------------------------------------------------------

def _jacobian_blocks(outputs, leaves, create_graph):
    """blocks[i][j]: d outputs[i] / d leaves[j], of shape outputs[i].shape + leaves[j].shape, one
    reverse pass per output entry (a row of the Jacobian). Variables when create_graph (so they
    can be differentiated again), else ndarrays."""
    blocks = []
    for out in outputs:
        shape = out._data.shape
        rows = [[] for _ in leaves]
        if out.requires_grad:
            for position in range(out._data.size):
                seed = np.zeros(out._data.size, dtype=out._data.dtype)
                seed[position] = 1.0
                grads = grad(out, leaves, grad_outputs=seed.reshape(shape), create_graph=create_graph,
                             retain_graph=True, allow_unused=True)
                for j, (g, leaf) in enumerate(zip(grads, leaves)):
                    rows[j].append(np.zeros_like(leaf._data) if g is None else g)
        row_blocks = []
        for j, leaf in enumerate(leaves):
            full = shape + leaf._data.shape
            if not rows[j]:          # no entries, or an output that does not depend on the inputs
                row_blocks.append(np.zeros(full, dtype=leaf._data.dtype))
            else:
                row_blocks.append(reshape(stack(rows[j], axis=0), shape=full))
        blocks.append(row_blocks)
    return blocks


def _arrays(block):
    return np.array(block._data if isinstance(block, Variable) else block)


def _structured(blocks, single_output, single_input):
    """torch.autograd.functional's nesting: [output][input], each level a tuple unless single."""
    per_output = [blocks_row[0] if single_input else tuple(blocks_row) for blocks_row in blocks]
    return per_output[0] if single_output else tuple(per_output)


def _inputs(inputs, where):
    """(arrays, whether a single input was given rather than a tuple or list)."""
    single = not isinstance(inputs, (tuple, list))
    values = [inputs] if single else list(inputs)
    if not values:
        raise ShapeError(f"{where}: no inputs")
    return [_primal_array(v, where, k) for k, v in enumerate(values)], single


def jacobian(fn, inputs):
    """The Jacobian of fn at `inputs`, as torch.autograd.functional.jacobian (and torch.func.jacrev
    over all arguments) lays it out: for one input (a Variable or array, not in a tuple) and one
    output, an array of shape output.shape + input.shape; for a tuple of inputs, a tuple with one
    such block per input; for several outputs, a tuple over outputs of those. Reverse mode: one
    backward pass per output entry."""
    arrays, single_input = _inputs(inputs, "jacobian")
    leaves, outputs, single_output = _call(fn, arrays, "jacobian")
    blocks = _jacobian_blocks(outputs, leaves, create_graph=False)
    return _structured([[_arrays(b) for b in row] for row in blocks], single_output, single_input)


def hessian(fn, inputs):
    """The Hessian of fn (one output) at `inputs`, as torch.func.hessian lays it out: for one input x
    (not in a tuple), an array of shape output.shape + x.shape + x.shape (x.shape + x.shape for the
    usual scalar output); for a tuple of inputs, H[i][j] = d^2 out / d x_i d x_j of shape
    output.shape + x_i.shape + x_j.shape. Reverse over reverse: the Jacobian of the Jacobian, whose
    rows are recorded with create_graph=True."""
    arrays, single_input = _inputs(inputs, "hessian")
    leaves, outputs, single_output = _call(fn, arrays, "hessian")
    if not single_output:
        raise GraphError(f"hessian: fn must return a single Variable, got {len(outputs)} outputs")
    _require_twice_differentiable(outputs, "hessian")
    (first,) = _jacobian_blocks(outputs, leaves, create_graph=True)
    blocks = []
    for block in first:
        if isinstance(block, Variable):
            row = _jacobian_blocks([block], leaves, create_graph=False)[0]
        else:   # a constant first derivative: the second is zero
            row = [np.zeros(block.shape + leaf._data.shape, dtype=leaf._data.dtype) for leaf in leaves]
        blocks.append([_arrays(b) for b in row])
    return blocks[0][0] if single_input else tuple(tuple(row) for row in blocks)
