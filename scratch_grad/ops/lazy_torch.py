"""`torch` and `mpmath` for registry entries without importing them with scratch_grad (test-time
dependencies: the torch reference and the high-precision reference).

`torch.exp` written in an entry at import time becomes a path that imports torch on first call;
once torch is imported, attribute access returns the real objects (the same for `mpmath`)."""
import importlib
import sys


class _LazyPath:
    def __init__(self, path):
        self._path = path
        self._target = None

    def _resolve(self):
        if self._target is None:
            root = self._path.split(".")[0]
            target = importlib.import_module(root)
            for part in self._path.split(".")[1:]:
                target = getattr(target, part)
            self._target = target
        return self._target

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if self._path.split(".")[0] in sys.modules:
            return getattr(self._resolve(), name)     # the real object once its library is imported
        return _LazyPath(f"{self._path}.{name}")

    def __call__(self, *args, **kwargs):
        return self._resolve()(*args, **kwargs)

    def __repr__(self):
        return f"<lazy {self._path}>"


torch = _LazyPath("torch")
mpmath = _LazyPath("mpmath")
