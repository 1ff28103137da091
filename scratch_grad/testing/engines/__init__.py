"""Engine adapters: the oracle's programs run on any autograd engine, not only scratch_grad.

An adapter is any object with the attributes below; a plain module works, so a user's adapter is
one short file (examples/student_engine/adapter.py is one):

    name: str                                   "mygrad"
    capabilities: Capabilities                  second order, forward mode, in-place detection, dtypes
    ops: Mapping[str, Callable]                 registry op name -> fn(*inputs, **params) -> tensor
    tensor(array, requires_grad=False)          an engine tensor holding the ndarray's values, in its
                                                dtype (floats; integer/boolean constants such as class
                                                targets, masks and indices keep theirs)
    to_numpy(tensor) -> ndarray                 the values, in the tensor's dtype
    vjp(fn, primals, cotangents, create_graph=False) -> (outputs, gradients)
    jvp(fn, primals, tangents) -> (outputs, tangent_outputs)      only with capabilities.forward_mode

`ops`: each callable receives the registry op's inputs (engine tensors for arrays, Python scalars
as they are) and its params under the registry's names and meanings (NumPy's: `axis`/`keepdims`,
`ddof`, `negative_slope`, ...; see `scratch-grad ops` and each entry's `torch` reference). A
registry op the engine lacks is simply left out: it is reported as "not provided", and random
graphs avoid it. A callable that cannot express one parameter value raises
`scratch_grad.errors.NotProvidedError` (`not_provided(...)` below), which is reported the same way.
Differences of convention (a subgradient at a kink) are for the checker to find, not to hide here.

`vjp` is functional, so it fits tape engines (torch, MyGrad: run fn on the primals, which the
runner made with requires_grad=True, then backward) and functional ones (JAX, HIPS autograd) alike:
fn takes one tensor per primal and returns a tuple of output tensors; the result is fn's outputs
and, per primal, the gradient of sum_k <output_k, cotangent_k> (None where it does not depend on
that primal). With create_graph=True the gradients must themselves be differentiable functions of
the primals: the runner then differentiates them again by calling vjp around vjp (second order).
Tape engines pass create_graph on to their backward; functional engines need not look at it.

    engine = load_engine("mygrad")                        # a built-in name, or "package.module:attr"
    result = run_program(program, engine)                  # outputs, gradients, 2nd order, JVPs
    provided_ops(engine), not_provided_ops(engine)         # registry coverage
    prepared_vjp(program, engine)()                        # forward + VJP on fixed leaves (benchmarks/bench_ops.py)
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import numpy as np

from ...errors import EngineError, NotProvidedError

DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do beyond first-order reverse mode."""
    second_order: bool = False         # vjp(create_graph=True) gives differentiable gradients
    forward_mode: bool = False         # jvp is provided
    in_place_detection: bool = False   # backward refuses a saved tensor changed in place (torch's version counter)
    dtypes: tuple = DTYPES             # floating dtypes its ops compute in


@runtime_checkable
class Engine(Protocol):
    """The adapter protocol (jvp, only with capabilities.forward_mode, is not listed here)."""
    name: str
    capabilities: Capabilities
    ops: Mapping[str, Callable]

    def tensor(self, array, requires_grad: bool = False) -> Any: ...

    def to_numpy(self, tensor) -> Any: ...

    def vjp(self, fn, primals, cotangents, create_graph: bool = False) -> tuple: ...


# built-in adapters, by name: imported only when asked for (each needs its engine installed)
BUILTIN_ENGINES = {
    "scratch_grad": "scratch_grad.testing.engines.scratch_grad_adapter",
    "torch": "scratch_grad.testing.engines.torch_adapter",
    "autograd": "scratch_grad.testing.engines.autograd_adapter",
    "mygrad": "scratch_grad.testing.engines.mygrad_adapter",
    "jax": "scratch_grad.testing.engines.jax_adapter",
    # the example engine lives in the repository's examples/, not in the installed package
    "student": "examples.student_engine.adapter",
}
DEFAULT_ENGINE = "scratch_grad"


def not_provided(what):
    """Raise from an op callable for a parameter value the engine cannot express."""
    raise NotProvidedError(f"not provided: {what}")


def numpy_axis(x, axis):
    """The registry's `axis` for a NumPy-style API: on a 0-d input the registry (as torch) accepts
    axis 0, -1 or (0,), a reduction over nothing, which NumPy, HIPS autograd, MyGrad and JAX refuse
    (AxisError); axis=None means the same there. Any other input keeps its axis."""
    ndim = x.ndim if hasattr(x, "ndim") else np.ndim(x)      # np.ndim dispatches on MyGrad's Tensor and fails
    return None if axis is not None and ndim == 0 else axis


def load_engine(spec=DEFAULT_ENGINE):
    """The adapter for `spec`: a built-in name (BUILTIN_ENGINES), "package.module:attr" (attr an
    adapter object or a class to instantiate with no arguments), "package.module" (the module is
    the adapter), or an adapter object itself. Raises EngineError when it cannot be loaded or does
    not follow the protocol."""
    if not isinstance(spec, str):
        return validate_engine(spec() if isinstance(spec, type) else spec)
    module_name, _, attribute = BUILTIN_ENGINES.get(spec, spec).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        known = ", ".join(BUILTIN_ENGINES)
        hint = f"(built-in engines: {known}; or give 'package.module:attr')" if spec not in BUILTIN_ENGINES else \
            "(is the engine installed?)"
        raise EngineError(f"engine '{spec}': cannot import {module_name}: {exc} {hint}") from None
    if not attribute:
        return validate_engine(module)
    try:
        adapter = getattr(module, attribute)
    except AttributeError:
        raise EngineError(f"engine '{spec}': module {module_name} has no attribute '{attribute}'") from None
    return validate_engine(adapter() if isinstance(adapter, type) else adapter)


def validate_engine(engine):
    """The engine itself, or EngineError naming what breaks the protocol."""
    label = getattr(engine, "name", type(engine).__name__)
    missing = [a for a in ("name", "capabilities", "ops", "tensor", "to_numpy", "vjp") if not hasattr(engine, a)]
    if missing:
        raise EngineError(f"engine '{label}': the adapter lacks {', '.join(missing)} (see scratch_grad.testing.engines)")
    if not isinstance(engine.capabilities, Capabilities):
        raise EngineError(f"engine '{label}': capabilities must be a scratch_grad.testing.engines.Capabilities, "
                          f"got {type(engine.capabilities).__name__}")
    if engine.capabilities.forward_mode and not callable(getattr(engine, "jvp", None)):
        raise EngineError(f"engine '{label}': declares forward_mode but has no jvp(fn, primals, tangents)")
    unknown_dtypes = [d for d in engine.capabilities.dtypes if d not in DTYPES]
    if unknown_dtypes:
        raise EngineError(f"engine '{label}': capabilities.dtypes must be among {DTYPES}, got {unknown_dtypes}")
    from ...ops import REGISTRY
    unknown = sorted(name for name in engine.ops if name not in REGISTRY)
    if unknown:
        raise EngineError(f"engine '{label}': ops names {', '.join(repr(n) for n in unknown)}, not registry ops "
                          "(see `scratch-grad ops`)")
    return engine


def provided_ops(engine):
    """The registry ops the engine's table provides, sorted."""
    from ...ops import REGISTRY
    return sorted(name for name in REGISTRY if name in engine.ops)


def not_provided_ops(engine):
    """The registry ops the engine's table leaves out, sorted."""
    from ...ops import REGISTRY
    return sorted(name for name in REGISTRY if name not in engine.ops)


from .runner import EngineResult, prepared_vjp, run_program  # noqa: E402  (the runner uses Capabilities and not_provided)

__all__ = ["BUILTIN_ENGINES", "Capabilities", "DEFAULT_ENGINE", "Engine", "EngineResult", "load_engine",
           "not_provided", "not_provided_ops", "numpy_axis", "prepared_vjp", "provided_ops", "run_program", "validate_engine"]
