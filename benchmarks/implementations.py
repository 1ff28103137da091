"""The implementations compared, in table order, and their lazy loading.

Each ``benchmarks.impl_*`` module offers ``make_mlp_step(config, params, batch, **options) -> (step,
loss_and_grads)`` and ``make_chain(ops, length, x0, **options) -> forward_backward`` and may raise
``workloads.NotApplicable``. Optional competitors that are not installed are reported, never an error.
"""
import importlib
import importlib.util
import traceback
from dataclasses import dataclass, field

REFERENCE = "numpy"
TORCH = "torch"


@dataclass(frozen=True)
class Implementation:
    label: str
    module: str
    library: str  # top-level package whose absence means "not installed"
    optional: bool
    options: dict = field(default_factory=dict)


IMPLEMENTATIONS = (
    Implementation("numpy", "benchmarks.impl_numpy", "numpy", optional=False),
    Implementation("numpy-prealloc", "benchmarks.impl_numpy", "numpy", optional=False, options={"preallocated": True}),
    Implementation("torch", "benchmarks.impl_torch", "torch", optional=False),
    Implementation("scratch_grad", "benchmarks.impl_scratch_grad", "scratch_grad", optional=False),
    Implementation("scratch_grad-compiled", "benchmarks.impl_scratch_grad", "scratch_grad", optional=False,
                   options={"compiled": True}),
    Implementation("autograd", "benchmarks.impl_autograd", "autograd", optional=True),
    Implementation("mygrad", "benchmarks.impl_mygrad", "mygrad", optional=True),
    Implementation("jax-eager", "benchmarks.impl_jax", "jax", optional=True, options={"jit": False}),
    Implementation("jax-jit", "benchmarks.impl_jax", "jax", optional=True, options={"jit": True}),
)


@dataclass
class LoadedImplementation:
    spec: Implementation
    status: str  # "available", "not installed" or "unavailable"
    detail: str = ""
    module: object = None

    @property
    def label(self):
        return self.spec.label

    @property
    def available(self):
        return self.status == "available"

    def make_mlp_step(self, config, params, batch):
        return self.module.make_mlp_step(config, params, batch, **self.spec.options)

    def make_chain(self, ops, length, x0):
        return self.module.make_chain(ops, length, x0, **self.spec.options)

    def version(self):
        return self.module.version() if self.module else None


def load(spec):
    if importlib.util.find_spec(spec.library) is None:
        status = "not installed" if spec.optional else "unavailable"
        return LoadedImplementation(spec, status, f"`import {spec.library}` finds no module")
    try:
        module = importlib.import_module(spec.module)
    except Exception as error:  # noqa: BLE001 - an engine mid-rewrite must not stop the other benchmarks
        last_line = traceback.format_exception_only(type(error), error)[-1].strip()
        return LoadedImplementation(spec, "unavailable", f"importing {spec.module} failed: {last_line}")
    return LoadedImplementation(spec, "available", module=module)


def load_all(labels=None):
    return [load(spec) for spec in IMPLEMENTATIONS if labels is None or spec.label in labels]
