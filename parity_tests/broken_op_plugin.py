"""A module that registers the deliberately broken op at import (`--import parity_tests.broken_op_plugin`),
the way a user's own module registers theirs: the HTML report and the shared-database fuzz tests plant
a known failure with it, in the test process and in every worker."""
from scratch_grad.ops.registry import REGISTRY

from .broken_ops import BROKEN_LOGCOSH

REGISTRY.setdefault(BROKEN_LOGCOSH.name, BROKEN_LOGCOSH)
