"""torch, as a self-check: its op table is the registry's torch references, the same code
`Program.run_torch` replays, so this adapter must agree with it exactly. Second order by
create_graph, forward mode by torch.func.jvp."""
import numpy as np
import torch

from . import Capabilities
from ._registry_view import RegistryOps

name = "torch"
capabilities = Capabilities(second_order=True, forward_mode=True, in_place_detection=True)
ops = RegistryOps(lambda spec: spec.torch)


def tensor(array, requires_grad=False):
    value = torch.as_tensor(np.array(array, order="C"))     # a copy, in the array's dtype
    return value.requires_grad_() if requires_grad else value


def to_numpy(value):
    return value.detach().numpy(force=True).copy()         # force: torch's lazy ZeroTensor gradients


def vjp(fn, primals, cotangents, create_graph=False):
    with torch.enable_grad():
        outputs = fn(*primals)
        live = [(o, c) for o, c in zip(outputs, cotangents) if o.requires_grad]
        if not live:
            return outputs, [None] * len(primals)
        grads = torch.autograd.grad([o for o, _ in live], list(primals), [c for _, c in live],
                                    allow_unused=True, create_graph=create_graph)
    return outputs, grads


def jvp(fn, primals, tangents):
    return torch.func.jvp(lambda *xs: tuple(fn(*xs)), tuple(p.detach() for p in primals), tuple(tangents))
