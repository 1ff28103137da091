"""scratch_grad: a reverse-mode autograd engine written by hand on NumPy, with a three-way gradient oracle.

    import scratch_grad as sg
    x = sg.Variable([[1.0, 2.0]], requires_grad=True)
    loss = sg.tanh(x @ x.T).sum()
    loss.backward()          # x.grad is an ndarray of x's shape and dtype
"""
from .engine import OPS as _OPS, Variable, apply, enable_grad, grad, is_grad_enabled, no_grad
from .errors import ArgumentError, AxisError, DomainError, DTypeError, GraphError, ScratchGradError, ShapeError
from . import ops
from .ops import KINDS, REGISTRY, Domain, OpSpec, register, unregister
from .compiler import CompiledFunction, compile  # noqa: A004  (sg.compile, like torch.compile)
from .functional import hessian, jacobian, jvp
from . import nn

__version__ = "0.1.0"

# every op's public function, sg.<name>: the package's own ops bound here once (plain attribute lookups on
# the hot path), and an op registered later, from a user's module, found in the op table by __getattr__
globals().update({name: fn for name, fn in ops.public_functions().items() if name not in globals()})


def __getattr__(name):
    try:
        return getattr(_OPS, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
