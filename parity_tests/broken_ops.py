"""Ops defined by the tests (not registered at import): a correct one and a deliberately broken one.

test_registry_driven.py registers them for the length of a test to prove that an op added to the
registry is checked with no test written, and that a broken one is caught, shrunk and reproduced.
Reproducers import the specs from here, so they are module-level names.
"""
import contextlib
import math

import numpy as np

from scratch_grad.ops.registry import REAL, OpSpec, REGISTRY


def _logcosh_forward(x):
    # log(cosh(x)) = |x| + log1p(e^(-2|x|)) - log 2: no overflow of cosh for large |x|
    return np.abs(x) + np.log1p(np.exp(-2 * np.abs(x))) - math.log(2.0)   # a Python float keeps float32


def _torch_logcosh(x):
    import torch
    return x.abs() + torch.log1p(torch.exp(-2 * x.abs())) - math.log(2.0)   # no overflow of cosh at |x| > 710


def _logcosh_vjp(g, out, x):
    from scratch_grad.ops import tanh
    return g * tanh(x)


def _broken_logcosh_vjp(g, out, x):
    # the bug: the derivative of softplus (sigmoid) instead of tanh
    from scratch_grad.ops import sigmoid
    return g * sigmoid(x)


def _raising_logcosh_vjp(g, out, x):
    # the bug: an index past the end, as a VJP that slices by the wrong axis would
    return g * np.tanh(x)[..., np.shape(x)[-1] + 1] if np.ndim(x) else g


LOGCOSH = OpSpec("logcosh_extra", _logcosh_forward, (_logcosh_vjp,), _torch_logcosh, (REAL,), "elementwise")
RAISING_LOGCOSH = OpSpec("logcosh_raising", _logcosh_forward, (_raising_logcosh_vjp,), _torch_logcosh, (REAL,),
                         "elementwise")
BROKEN_LOGCOSH = OpSpec("logcosh_broken", _logcosh_forward, (_broken_logcosh_vjp,), _torch_logcosh, (REAL,),
                        "elementwise")


@contextlib.contextmanager
def registered(spec):
    """spec in the registry for the duration of the block (the registry is restored after)."""
    if spec.name in REGISTRY:
        raise ValueError(f"{spec.name} is already registered")
    REGISTRY[spec.name] = spec
    try:
        yield spec
    finally:
        del REGISTRY[spec.name]
