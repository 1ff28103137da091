"""All ops. Each module registers its ops (`register(OpSpec(...))` in ops/registry.py), which makes every
op's public function `scratch_grad.<name>` and `scratch_grad.ops.<name>`, and its Variable method where
the entry asks for one; Variable's operators are defined in engine.VARIABLE_OPERATORS. The registry is
`REGISTRY`."""
from .registry import KINDS, REGISTRY, Domain, OpSpec, export, register, unregister
from . import elementwise, shape, reductions, linalg, indexing, neural  # noqa: F401  (register their ops)
from ..engine import OPS


def public_functions():
    """{name: function} of every public op function now defined (registered or exported)."""
    return dict(vars(OPS))


def __getattr__(name):
    """An op registered after this package was imported (a user's module): its public function."""
    try:
        return getattr(OPS, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


# the package's own ops as plain attributes (found without __getattr__; `from scratch_grad.ops import exp`)
globals().update(public_functions())
