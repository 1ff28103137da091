"""A module that registers, at import, an op whose VJP is wrong only on inputs whose last axis has
length 4: a bug that a fresh campaign usually finds after a few examples, not on its first, and that
the example database then replays at once. The shared-database fuzz test imports it with
`scratch-grad fuzz --import parity_tests.rare_bug_plugin` in every worker."""
import numpy as np

from scratch_grad.ops.registry import REAL, OpSpec, REGISTRY

from .broken_ops import _logcosh_forward, _torch_logcosh


def _hit(x):
    return np.ndim(x) >= 1 and np.shape(x)[-1] == 4


def _rarely_broken_logcosh_vjp(g, out, x):
    from scratch_grad.ops import tanh
    return g * tanh(x) * (1.5 if _hit(x) else 1.0)     # the bug: 1.5 times the derivative, on rare shapes


RARELY_BROKEN_LOGCOSH = OpSpec("logcosh_rarely_broken", _logcosh_forward, (_rarely_broken_logcosh_vjp,),
                               _torch_logcosh, (REAL,), "elementwise")
REGISTRY.setdefault(RARELY_BROKEN_LOGCOSH.name, RARELY_BROKEN_LOGCOSH)
