"""Exceptions raised by scratch_grad. Every message names the op, the input index, shapes and dtypes."""


class ScratchGradError(Exception):
    """Base class of every error scratch_grad raises on purpose."""


class ShapeError(ScratchGradError, ValueError):
    """Inputs whose shapes an op cannot combine, or a gradient of the wrong shape."""


class AxisError(ShapeError, IndexError):
    """An axis argument out of range for the input's number of dimensions."""


class DTypeError(ScratchGradError, TypeError):
    """A dtype an op or the engine cannot use (e.g. an integer array asked to require grad)."""


class DomainError(ScratchGradError, ValueError):
    """Inputs outside an op's domain that would silently produce NaN (log of a negative number...)."""


class ArgumentError(ScratchGradError, TypeError):
    """A keyword an op does not define: NumPy's out=, where=, dtype=, casting=... (an op returns a new
    result and records it; writing into a caller's buffer would bypass the graph)."""


class GraphError(ScratchGradError, RuntimeError):
    """Misuse of the graph: backward through a freed graph, a non-scalar output without a gradient,
    a saved input mutated in place after it was used."""


def describe(value):
    """'shape (3, 4) float32' for arrays and Variables, 'python float' for scalars."""
    data = getattr(value, "_data", value)
    shape = getattr(data, "shape", None)
    if shape is None:
        return f"python {type(value).__name__}"
    return f"shape {tuple(shape)} {data.dtype}"


class NotProvidedError(ScratchGradError, NotImplementedError):
    """An engine adapter lacks what a check needs: an op, a parameter value of an op, a dtype or a
    capability (second order, forward mode). `ops` names the missing registry ops, if any."""

    def __init__(self, message, ops=()):
        super().__init__(message)
        self.ops = tuple(ops)


class EngineError(ScratchGradError, ValueError):
    """An engine adapter that cannot be loaded (unknown name, engine not installed) or that does
    not follow the adapter protocol (scratch_grad.testing.engines)."""
