"""A pytest plugin (`-p parity_tests.extra_op_plugin`) that registers an extra op at import, the way
a user's own module would: test_registry_driven.py collects the suite with it to show the op is
parametrized in with no test written."""
from scratch_grad.ops.registry import REGISTRY

from .broken_ops import LOGCOSH

REGISTRY.setdefault(LOGCOSH.name, LOGCOSH)
