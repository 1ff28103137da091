"""Bringing in a user's own ops: a module importable from the current directory, or a path to a .py file.

    load("my_ops")            # import my_ops, the current directory searched first (as `python -c` does)
    load("ops/my_ops.py")     # the file itself, as module `my_ops`

The CLI's --import, its worker processes (which start fresh and must register the same ops) and the
pytest plugin all go through `load`, so an op module behaves the same everywhere. A module that fails
to import raises ImportError naming the module and the original error.
"""
import importlib
import importlib.util
import os
import sys
from pathlib import Path


def is_path(spec):
    return spec.endswith(".py") or os.sep in spec or (os.altsep is not None and os.altsep in spec)


def search_current_directory():
    """Put the current directory first on sys.path, as `python -c` does (a console script has its own
    directory there instead): modules beside the user, and a checkout's benchmarks/, import by name."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    return cwd


def load(spec):
    """Import `spec` (a module name or a .py path) and return the module; the current directory is on
    sys.path first."""
    cwd = search_current_directory()
    if not is_path(spec):
        try:
            return importlib.import_module(spec)
        except ImportError as exc:
            if getattr(exc, "name", None) == spec.split(".")[0] and not Path(spec + ".py").exists():
                raise ImportError(f"cannot import '{spec}': no module of that name on the path (the current "
                                  f"directory {cwd} included); give a module name or a path to a .py file") from None
            raise ImportError(f"importing '{spec}' failed: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            raise ImportError(f"importing '{spec}' failed: {type(exc).__name__}: {exc}") from exc
    path = Path(spec).resolve()
    if not path.is_file():
        raise ImportError(f"cannot import '{spec}': no such file")
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() == path:
        return existing
    if str(path.parent) not in sys.path:        # its own imports of sibling modules work as in a script
        sys.path.append(str(path.parent))
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ImportError(f"importing '{spec}' failed: {type(exc).__name__}: {exc}") from exc
    return module


def load_all(specs):
    return [load(spec) for spec in specs]


def defined_in(spec):
    """The module that defined a registry entry: where its VJPs (else its forward) were written. The
    registry does not record who called register(); the VJPs are the part an entry always writes itself."""
    import functools
    for function in [v for v in spec.vjps if v is not None] + [spec.forward]:
        while isinstance(function, functools.partial):
            function = function.func
        module = getattr(function, "__module__", None)
        if module:
            return module
    return None


def registered_by(modules):
    """The registry ops the given modules defined (defined_in), sorted."""
    from ..ops import REGISTRY
    names = {module.__name__ for module in modules}
    return sorted(name for name, spec in REGISTRY.items() if defined_in(spec) in names)
