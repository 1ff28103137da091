"""The conditional VJP mutants of `scratch-grad mutate`: bugs that show only under one condition.

Each class is a rewrite of one op's VJP for one input: the wrapper calls the correct VJP and, only
when its condition holds on that call, corrupts the gradient, raises, or breaks a contract of the
VJP protocol (dtype, aliasing, create_graph). Real autograd bugs live at these conditions (see
issue 13 and 18): a NaN from 0/0 at an exact zero, ties counted twice, inf * 0 from the branch not
taken, a division by the size of an empty axis, an axis argument on a 0-d input, negative axes
counted from the wrong end, a keyword the VJP never receives, a Python scalar where an array was
expected, a VJP that drops to raw arrays under create_graph, a VJP that writes into the gradient it
was handed.

`condition(call)` is a pure function of the call (its arguments and, for a few classes, the correct
result), so the mutation tester can learn from one run of the correct code, with every VJP observed
(`probe`), which conditions ever hold at which op and input: a mutant whose condition never holds
on a sample cannot change anything there, and is not run on it.

The wrappers stand in for op code: faults.py counts this file as engine code, so an exception they
raise is a finding about the op, as if the op's own VJP had raised it.
"""
import contextlib
import inspect
import numbers

import numpy as np

from .. import engine

# the class names, in the order mutate lists them
EDGE = ("at_zero", "at_tie", "at_inf", "on_empty", "on_0d", "negative_axis")
CONTRACT = ("double_backward_raw", "double_backward_frozen", "alias_returns_g", "alias_mutates_g", "dtype_float64")
CALL_FORM = ("keyword_ignored", "scalar_mishandled")
RAISING = ("vjp_raises", "vjp_raises_low_rank", "vjp_raises_create_graph")
CLASSES = EDGE + CONTRACT + CALL_FORM + RAISING

DESCRIPTIONS = {
    "at_zero": "NaN in the gradient where the input is exactly 0 (an out / x formula: 0/0)",
    "at_tie": "the gradient doubled where the input ties (equal entries within it, or equal to another "
              "input at the same position): every tied entry takes the whole gradient",
    "at_inf": "NaN in the gradient where the input is +-inf (inf * 0 from the branch not taken)",
    "on_empty": "ZeroDivisionError when the input is empty (a division by the number of reduced entries)",
    "on_0d": "AxisError when the input is 0-d (an axis argument applied to a 0-d input)",
    "negative_axis": "negative axes counted from the front (-1 taken as 0, -2 as 1)",
    "double_backward_raw": "under create_graph the VJP runs on raw arrays: its result is a constant, "
                           "the first order is right and the second loses every term through it",
    "double_backward_frozen": "under create_graph the VJP reads its inputs and output as raw arrays "
                              "(g stays a Variable): the second order loses the terms through x",
    "alias_returns_g": "the VJP writes its result into the in-flowing g and returns g itself",
    "alias_mutates_g": "the VJP doubles the in-flowing g in place after computing its result",
    "dtype_float64": "a float32 VJP returns its result as float64 (the engine casts it back)",
    "keyword_ignored": "the VJP called without one of its keyword params (at its default: std's ddof...)",
    "scalar_mishandled": "a Python-number input (pow's exponent in x ** 3) taken off by one in the VJP",
    "vjp_raises": "the VJP raises ValueError on every call",
    "vjp_raises_low_rank": "the VJP raises IndexError when the input has fewer than 2 axes (x.shape[-2])",
    "vjp_raises_create_graph": "the VJP raises TypeError under create_graph (g is a Variable)",
}

AXIS_PARAMS = ("axis", "axes", "dim")     # the params that hold axes (the registry's naming convention)
BROADCAST = "broadcast"                   # the trigger of mutate's engine rewrites of broadcast reductions


def _is_python_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_, np.ndarray))


class Call:
    """One VJP call as a wrapper sees it: g, out, the op's inputs, its params, and which input the
    gradient is for (`position`; for variadic ops the `index` param)."""
    __slots__ = ("g", "out", "args", "params", "position", "_x")

    def __init__(self, g, out, args, params, position, variadic):
        self.g, self.out, self.args, self.params = g, out, args, params
        self.position = params.get("index", position) if variadic else position
        self._x = None

    @property
    def x(self):
        """The input the gradient is for, as an ndarray."""
        if self._x is None:
            self._x = np.asarray(engine.raw(self.args[self.position]))
        return self._x

    @property
    def create_graph(self):
        return isinstance(self.g, engine.Variable)


# ---- conditions: pure functions of a call (and, for the last ones, of the correct result) ------------

def _float_input(call):
    x = call.x
    return x if x.dtype.kind == "f" else None


def _has_zero(call):
    x = _float_input(call)
    return x is not None and bool((x == 0).any())


def _tie_mask(call):
    """Entries of x equal to another entry of x, or to another float input at the same (broadcast)
    position; in the broadcast shape of those comparisons."""
    x = _float_input(call)
    if x is None or x.size == 0:
        return None
    _, inverse, counts = np.unique(x.ravel(), return_inverse=True, return_counts=True)
    masks = [(counts[inverse] > 1).reshape(x.shape)]
    for k, other in enumerate(call.args):
        other = engine.raw(other)
        if k == call.position or not isinstance(other, np.ndarray) or other.dtype.kind != "f":
            continue
        try:
            masks.append(np.asarray(x == other))
        except ValueError:                  # shapes that do not broadcast (matmul): no positional ties
            continue
    try:
        shape = np.broadcast_shapes(*[m.shape for m in masks])
    except ValueError:
        shape = x.shape
        masks = masks[:1]
    return np.logical_or.reduce([np.broadcast_to(m, shape) for m in masks])


def _has_tie(call):
    """Whether _tie_mask(call) has a True entry (without building it: sorting finds equal neighbours)."""
    x = _float_input(call)
    if x is None or x.size == 0:
        return False
    ordered = np.sort(x, axis=None)
    if bool((ordered[1:] == ordered[:-1]).any()):
        return True
    for k, other in enumerate(call.args):
        other = engine.raw(other)
        if k != call.position and isinstance(other, np.ndarray) and other.dtype.kind == "f":
            try:
                if bool(np.asarray(x == other).any()):
                    return True
            except ValueError:
                continue
    return False


def _has_inf(call):
    x = _float_input(call)
    return x is not None and bool(np.isinf(x).any())


def _negative_axes(value):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return value < 0
    return isinstance(value, tuple) and any(_negative_axes(v) for v in value)


def _has_negative_axis(call):
    return any(_negative_axes(call.params.get(name)) for name in AXIS_PARAMS)


def _has_scalar_input(call):
    return any(_is_python_number(a) for k, a in enumerate(call.args) if k != call.position)


def _fits_g(call, result):
    g = call.g
    return (type(g) is np.ndarray and type(result) is np.ndarray and result is not g
            and result.shape == g.shape and result.dtype == g.dtype)


CONDITIONS = {
    "at_zero": _has_zero,
    "at_tie": _has_tie,
    "at_inf": _has_inf,
    "on_empty": lambda call: call.x.size == 0,
    "on_0d": lambda call: call.x.ndim == 0,
    "negative_axis": _has_negative_axis,
    "double_backward_raw": lambda call: call.create_graph,
    "double_backward_frozen": lambda call: call.create_graph,
    "alias_mutates_g": lambda call: type(call.g) is np.ndarray,
    "scalar_mishandled": _has_scalar_input,
    "vjp_raises": lambda call: True,
    "vjp_raises_low_rank": lambda call: call.x.ndim < 2,
    "vjp_raises_create_graph": lambda call: call.create_graph,
}
# conditions on the correct result too: these classes run the VJP first
RESULT_CONDITIONS = {
    "alias_returns_g": _fits_g,
    "dtype_float64": lambda call, result: type(result) is np.ndarray and result.dtype == np.float32,
    # a result of the broadcast shape, which the engine reduces (mutate's broadcast_* classes patch that)
    BROADCAST: lambda call, result: np.shape(engine.raw(result)) != call.x.shape,
}


def keyword_trigger(name):
    return f"keyword:{name}"


def triggers(call, result, known=frozenset()):
    """Every condition name that holds on this call (what `probe` records), except those in `known`
    (already seen: not tested again)."""
    found = {name for name, condition in CONDITIONS.items() if name not in known and condition(call)}
    found.update(name for name, condition in RESULT_CONDITIONS.items() if name not in known and condition(call, result))
    found.update(keyword_trigger(name) for name in call.params if name != "index")
    return found


def trigger_of(klass, detail=""):
    """The condition name a mutant of `klass` needs on some call to change anything."""
    return keyword_trigger(detail) if klass == "keyword_ignored" else klass


# ---- corruptions --------------------------------------------------------------------------------------------

def _in_shape(mask, shape):
    """mask brought to `shape`: broadcast when it can be, else all-or-nothing (its any())."""
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        return np.full(shape, bool(np.any(mask)))


def _times_where(result, mask, factor):
    """result * (factor where mask, 1 elsewhere): on arrays and, under create_graph, on Variables."""
    shape = np.shape(engine.raw(result))
    dtype = np.asarray(engine.raw(result)).dtype
    weights = np.where(_in_shape(mask, shape), factor, 1.0).astype(dtype)
    return result * weights


def _raw_args(call):
    return [engine.raw(a) for a in call.args]


def _shift_axes(value):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return -value - 1 if value < 0 else value
    if isinstance(value, tuple):
        return tuple(_shift_axes(v) for v in value)
    return value


def conditional(spec, klass, position, original, detail=""):
    """The VJP `original` of `spec`'s input `position` with the bug `klass` planted."""
    condition = CONDITIONS.get(klass)
    result_condition = RESULT_CONDITIONS.get(klass)
    variadic = spec.variadic
    where = f"op '{spec.name}' input {position}"

    def vjp(g, out, *args, **params):
        call = Call(g, out, args, params, position, variadic)
        if result_condition is not None:
            result = original(g, out, *args, **params)
            if not result_condition(call, result):
                return result
            if klass == "alias_returns_g":
                g[...] = result                  # the result written into the in-flowing buffer
                return g
            return result.astype(np.float64)     # dtype_float64
        if klass == "keyword_ignored":
            params = {key: value for key, value in params.items() if key != detail}
            return original(g, out, *args, **params)
        if not condition(call):
            return original(g, out, *args, **params)
        if klass == "at_zero":
            return _times_where(original(g, out, *args, **params), call.x == 0, np.nan)
        if klass == "at_inf":
            return _times_where(original(g, out, *args, **params), np.isinf(call.x), np.nan)
        if klass == "at_tie":
            return _times_where(original(g, out, *args, **params), _tie_mask(call), 2.0)
        if klass == "on_empty":
            raise ZeroDivisionError("float division by zero")
        if klass == "on_0d":
            raise np.exceptions.AxisError(0, 0)
        if klass == "negative_axis":
            params = {key: _shift_axes(value) if key in AXIS_PARAMS else value for key, value in params.items()}
            return original(g, out, *args, **params)
        if klass == "scalar_mishandled":
            args = [a + 1 if k != call.position and _is_python_number(a) else a for k, a in enumerate(args)]
            return original(g, out, *args, **params)
        if klass == "double_backward_raw":
            return np.asarray(original(engine.raw(g), engine.raw(out), *_raw_args(call), **params))
        if klass == "double_backward_frozen":
            return original(g, engine.raw(out), *_raw_args(call), **params)
        if klass == "alias_mutates_g":
            result = original(g, out, *args, **params)
            g *= 2                                # in place, after the result was computed
            return result
        if klass == "vjp_raises":
            raise ValueError(f"{where}: planted VJP failure")
        if klass == "vjp_raises_low_rank":
            raise IndexError("tuple index out of range")
        if klass == "vjp_raises_create_graph":
            raise TypeError(f"{where}: unsupported operand type(s) for a Variable (planted)")
        raise ValueError(f"unknown conditional mutation class {klass!r}")
    vjp.__name__ = f"{klass}_{getattr(original, '__name__', 'vjp')}"
    return vjp


# ---- which mutants apply to an op (read from its entry) ---------------------------------------------------

def keyword_params(spec, position):
    """The keyword params of an input's VJP that have a default (what a VJP can silently ignore):
    the parameters after g, out and the op's inputs, from its signature."""
    vjp = spec.vjps[position]
    try:
        parameters = list(inspect.signature(vjp).parameters.values())
    except (TypeError, ValueError):
        return []
    inputs = 2 + (0 if spec.variadic else len(spec.vjps))
    found = []
    for k, p in enumerate(parameters):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is p.empty or p.name == "index":
            continue
        if spec.variadic or k >= inputs:
            found.append(p.name)
    return found


def applicable(spec, position):
    """(class, detail) pairs of the conditional classes that apply to one differentiable input."""
    found = [(klass, "") for klass in ("at_zero", "at_tie", "at_inf", "on_empty", "on_0d")]
    keywords = keyword_params(spec, position)
    if any(name in AXIS_PARAMS for name in keywords):
        found.append(("negative_axis", ""))
    if spec.twice_differentiable:
        found += [("double_backward_raw", ""), ("double_backward_frozen", "")]
    found += [(klass, "") for klass in ("alias_returns_g", "alias_mutates_g", "dtype_float64")]
    found += [("keyword_ignored", name) for name in keywords]
    if spec.variadic or len(spec.vjps) >= 2:
        found.append(("scalar_mishandled", ""))
    found += [(klass, "") for klass in RAISING]
    return found


# ---- observing every VJP (what the mutation tester learns from the correct code) ------------------------------

@contextlib.contextmanager
def probe(record):
    """Every registry op's VJPs wrapped to add, per call, `triggers(...)` to record[(op, input)]."""
    from ..ops import REGISTRY
    saved = {}
    for spec in list(REGISTRY.values()):
        saved[spec] = spec.vjps
        object.__setattr__(spec, "vjps", tuple(None if v is None else _recording(spec, k, v, record)
                                               for k, v in enumerate(spec.vjps)))
    try:
        yield record
    finally:
        for spec, vjps in saved.items():
            object.__setattr__(spec, "vjps", vjps)


def _recording(spec, position, original, record):
    key = (spec.name, position)
    variadic = spec.variadic

    def vjp(g, out, *args, **params):
        result = original(g, out, *args, **params)
        seen = record.setdefault(key, set())
        seen.update(triggers(Call(g, out, args, params, position, variadic), result, seen))
        return result
    return vjp
