"""The default engine: scratch_grad itself, through its registry (every op), with second order
(create_graph) and forward mode (sg.jvp, the VJP of the VJP)."""
import numpy as np

from . import Capabilities
from ._registry_view import RegistryOps
from ...engine import Variable, grad
from ...functional import jvp as _jvp
from ...ops.registry import make_function

name = "scratch_grad"
capabilities = Capabilities(second_order=True, forward_mode=True, in_place_detection=True)
# each op's public function, as users call it (sg.exp, sg.sum(x, axis=..., keepdims=...), ...)
ops = RegistryOps(make_function)


def tensor(array, requires_grad=False):
    return Variable(array, requires_grad=requires_grad)


def to_numpy(value):
    return np.array(value._data if isinstance(value, Variable) else value)


def vjp(fn, primals, cotangents, create_graph=False):
    outputs = fn(*primals)
    live = [(o, c) for o, c in zip(outputs, cotangents) if isinstance(o, Variable) and o.requires_grad]
    if not live:
        return outputs, [None] * len(primals)
    grads = grad([o for o, _ in live], list(primals), grad_outputs=[c for _, c in live],
                 create_graph=create_graph, allow_unused=True)
    return outputs, grads


def jvp(fn, primals, tangents):
    return _jvp(lambda *xs: tuple(fn(*xs)), [p._data for p in primals], [to_numpy(t) for t in tangents])
