"""scratch_grad: a reverse-mode autograd engine written by hand on NumPy, with a three-way gradient oracle.

    import scratch_grad as sg
    x = sg.Variable([[1.0, 2.0]], requires_grad=True)
    loss = sg.tanh(x @ x.T).sum()
    loss.backward()          # x.grad is an ndarray of x's shape and dtype
"""
from .engine import Variable, apply, enable_grad, grad, is_grad_enabled, no_grad
from .compiler import CompiledFunction, compile  # noqa: A004  (sg.compile, like torch.compile)
from .errors import ArgumentError, AxisError, DomainError, DTypeError, GraphError, ScratchGradError, ShapeError
from .ops import *  # noqa: F401,F403  (every op's public function)
from .ops import REGISTRY, Domain, OpSpec, register
from .functional import hessian, jacobian, jvp

__version__ = "0.1.0"

# `from .ops import *` above also brought in the name `nn` (the submodule scratch_grad.ops.nn, bound on the ops
# package), and `from . import nn` would return that attribute without importing anything: import the nn
# package explicitly so `from scratch_grad import nn` and `sg.nn.Linear` mean modules and optimizers
import importlib as _importlib  # noqa: E402

nn = _importlib.import_module(f"{__name__}.nn")
