"""A live, read-only view of the registry as an op table (for the adapters whose ops are the
registry's own: scratch_grad's public functions, torch's references). Live, so an op registered
after the adapter was loaded (a plugin, a test's op) is provided too."""
from collections.abc import Mapping


class RegistryOps(Mapping):
    """registry name -> select(spec), computed on access."""

    def __init__(self, select):
        self._select = select

    def __getitem__(self, name):
        from ...ops import REGISTRY
        return self._select(REGISTRY[name])

    def __iter__(self):
        from ...ops import REGISTRY
        return iter(list(REGISTRY))

    def __len__(self):
        from ...ops import REGISTRY
        return len(REGISTRY)
