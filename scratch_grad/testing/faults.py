"""Who raised an exception during a check: the engine under test, or the checker itself.

An exception from an op's forward, a VJP or the engine is a finding about the engine, reported like any
mismatch (classified, attributed to its op, written as a reproducer). An exception from the checker's
own code is a bug of the checker and must stay loud. The two are told apart by the innermost frame of
the traceback that belongs to neither a library (NumPy, SciPy, torch, mpmath, hypothesis, the standard
library) nor the checker: planted mutants (mutate.py, planted.py) stand for engine code. The trace
module (scratch_grad/trace.py) replays programs for both sides, so its frames count as their caller's.

    try:
        run_the_engine()
    except Exception as exc:
        if raised_by_checker(exc):
            raise checker_error(exc, "the compiled comparison") from exc
        problems.append(f"op '{fault_op(exc)}': {describe(exc)}")
"""
import sys
import sysconfig
import traceback
from pathlib import Path

from .. import trace

_TESTING = Path(__file__).resolve().parent
_ENGINE_SIDE_FILES = {"mutate.py", "planted.py"}     # mutants are planted engine code
_LIBRARIES = ("numpy", "scipy", "torch", "mpmath", "hypothesis", "_pytest", "pluggy")
_SHARED = Path(trace.__file__).resolve()             # replays for the checker and for sg.compile alike


def _library_roots():
    roots = [Path(p).resolve() for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}]
    for name in _LIBRARIES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            roots.append(Path(module.__file__).resolve().parent)
    return roots


def _is_library(path, roots):
    return path == _SHARED or any(root == path or root in path.parents for root in roots)


def origin(exc):
    """'checker', 'engine' or 'library' (no frame of ours at all): where `exc` was raised."""
    roots = _library_roots()
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename).resolve()
        if _is_library(path, roots):
            continue
        if path.parent == _TESTING and path.name not in _ENGINE_SIDE_FILES:
            return "checker"
        return "engine"
    return "library"


def raised_by_checker(exc):
    """True when the checker's own code raised `exc` (a checker bug: re-raise it, loudly)."""
    return origin(exc) == "checker"


def describe(exc):
    """'ValueError: message' with the innermost engine frame (file:line in function), for findings."""
    roots = _library_roots()
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename).resolve()
        if not _is_library(path, roots):
            where = f" (at {path.name}:{frame.lineno} in {frame.name})"
            break
    return f"{type(exc).__name__}: {exc}{where}"


class CheckerError(RuntimeError):
    """The checker itself failed (a bug in scratch_grad.testing, not in the engine under test)."""


def checker_error(exc, where):
    """The loud error for a checker bug: a CheckerError saying so, where, and what was raised."""
    return CheckerError(f"bug in the checker ({where}), not in the code under check: {describe(exc)}")


def fault_op(exc):
    """The name of the registry op whose code raised `exc`, when the traceback shows it (None otherwise):
    the innermost frame running an op's forward or VJP (found by its code object in the registry), or
    holding the op being applied (`spec`) or backpropagated (`node`) as a local variable."""
    from ..engine import Variable
    from ..ops import REGISTRY
    from ..ops.registry import OpSpec
    codes = {}
    for name, spec in REGISTRY.items():
        for fn in (spec.forward, *spec.vjps):
            code = getattr(fn, "__code__", None)
            if code is not None:
                codes.setdefault(code, name)
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        if frame.f_code in codes:
            return codes[frame.f_code]
        spec = frame.f_locals.get("spec")
        if isinstance(spec, OpSpec):
            return spec.name
        node = frame.f_locals.get("node")
        if isinstance(node, Variable) and node._spec is not None:
            return node._spec.name
    return None
