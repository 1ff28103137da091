"""The op registry: one declarative entry per op, read by the engine, the tests, the fuzzer, the CLI.

An entry (`OpSpec`) holds, side by side: the NumPy forward, one VJP per input, the torch reference,
each input's domain, the shape kind, smoothness and the subgradient used at kinks, whether it is
twice differentiable, and (for ops whose inputs the kind cannot describe) a sampler.

VJP vocabulary: `vjp(g, out, *inputs, **params)` returns the gradient for one input, where `g` is
the in-flowing gradient (shape of `out`), `out` the forward result and the inputs are named `x`,
`y`, ... It may return a gradient of the broadcast shape: the engine reduces it to the input's
shape in one place (`engine.sum_to`). VJPs are written with NumPy operators and scratch_grad
functions so that the same code runs on raw arrays (fast) and on Variables (`create_graph=True`).
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Optional

import numpy as np

from ..engine import (OPS, Variable, apply, constant_input, define_op, forward_error, mode, new_variable, record,
                      undefine_op)
from ..errors import ArgumentError, DomainError, ScratchGradError

KINDS = ("elementwise", "binary", "reduction", "matmul", "shape", "indexing", "nn")


@dataclass(frozen=True)
class Domain:
    """Where an input's values may come from: an interval, points to keep away from (kinks, poles),
    or a non-differentiable integer/boolean input (indices, targets, masks).

    The last five fields declare the input's edges, which the samplers' edge mode draws (a quarter
    of every op's samples; scratch_grad/testing/gen.py): exact zeros and ties, values equal up to
    rounding and tiny values wherever the interval has them, plus what is declared here."""
    low: float = -math.inf
    high: float = math.inf
    avoid: tuple = ()            # kinks / poles the samplers keep a margin from (FD is wrong there)
    differentiable: bool = True  # False for index, target and mask inputs
    description: str = "real"
    closed: tuple = ()           # bounds that are valid inputs themselves: log(0) = -inf, sqrt(0) = 0
    poles: tuple = ()            # avoided points where the op is undefined (1/x at 0): never drawn exactly
    infinities: tuple = ()       # infinite inputs with a defined result (a limit): (inf,) for log
    nan: bool = False            # NaN inputs are accepted: they give NaN where they reach, as in torch
    large: float = 1e4           # the magnitude of the large values edge mode draws (1e8: exp and softmax)

    def contains(self, values):
        values = np.asarray(values)
        return (values > self.low) & (values < self.high)


_BOTH_INFINITIES = (-math.inf, math.inf)
# the extended reals: +-inf and NaN pass through the op with a defined result (inf - inf aside)
REAL = Domain(infinities=_BOTH_INFINITIES, nan=True)
# finite reals: at +-inf the op's value or its derivative has no limit (sin), or is NaN in torch
# itself (gelu), or mixes inf with zeros (matmul: 0 * inf); NaN still propagates
FINITE = Domain(nan=True, description="real (finite)")
# exp, softmax and their kin: overflow is part of the op (exp(1e8) = inf, softmax of 1e8 logits)
EXP_FAMILY = Domain(infinities=_BOTH_INFINITIES, nan=True, large=1e8, description="real (large magnitudes)")
LOGITS = Domain(infinities=(-math.inf,), nan=True, large=1e8, description="real or -inf (large magnitudes)")
POSITIVE = Domain(low=0.0, closed=(0.0,), infinities=(math.inf,), nan=True, large=1e8, description="x > 0")
ABOVE_MINUS_ONE = Domain(low=-1.0, closed=(-1.0,), infinities=(math.inf,), nan=True, large=1e8,
                         description="x > -1")
OPEN_UNIT = Domain(low=-1.0, high=1.0, nan=True, description="-1 < x < 1")
NONZERO = Domain(avoid=(0.0,), poles=(0.0,), infinities=_BOTH_INFINITIES, nan=True, description="x != 0")
KINK_AT_ZERO = Domain(avoid=(0.0,), infinities=_BOTH_INFINITIES, nan=True, description="real (kink at 0)")
NOT_DIFFERENTIABLE = Domain(differentiable=False, description="integer or boolean, no gradient")


@dataclass(frozen=True, eq=False)
class OpSpec:
    name: str
    forward: Callable                       # forward(*arrays, **params) -> ndarray
    vjps: tuple                             # one vjp(g, out, *inputs, **params) per input; None: no gradient
    torch: Callable                         # the reference: torch(*tensors, **params) -> tensor
    domain: tuple                           # one Domain per input
    kind: str                               # one of KINDS; selects the default sampler
    smooth: bool = True                     # False: has kinks where FD is unreliable
    kink_rule: str = ""                     # the subgradient chosen at kinks, in words (matches torch)
    twice_differentiable: bool = True       # double backward is checked for these
    sample: Optional[Callable] = None       # sample(gen) -> (inputs, params); None: the kind's default
    variadic: bool = False                  # any number of inputs sharing domain[0] and vjps[0](..., index=i)
    # the high-precision reference (mpmath), for kinds elementwise and binary: mp(x, y..., **params) on one
    # mpmath number per input (entry by entry, broadcast); for kind reduction: mp(values, **params) on the
    # list of the reduced entries of one output (axis and keepdims are not passed). None: torch and finite
    # differences only. Differentiated by mpmath itself, so it checks the VJP without trusting its formula
    mp: Optional[Callable] = None
    # regression examples, checked before any drawn sample: ((inputs, params), ...) with float arrays in
    # float64 (cast to each checked dtype); each is an input that once exposed a bug
    examples: tuple = ()
    # keywords drawn by the samplers, each with its valid range ({name: sampling.Param}): the kind's
    # default sampler draws them all, an entry's own sampler adds them with sampling.draw_params.
    # Keywords whose range depends on the inputs' shapes (axis, ddof, index...) are drawn by the sampler
    params: dict = field(default_factory=dict)
    # reductions: whether reducing over an empty axis is defined (sum 0, mean NaN, logsumexp -inf);
    # max and min have no identity, so NumPy and torch refuse it
    reduces_empty: bool = True
    # conventions(*inputs, **params) -> bool: whether these raw inputs hold a point where the convention the
    # op keeps with torch is not the derivative (clip at x == min == max: torch.clamp passes g, the
    # function is flat). There finite differences and the high-precision reference do not outvote torch;
    # torch still judges. None: every agreement of scratch_grad and torch against a clean finite
    # difference is a shared error
    conventions: Optional[Callable] = None
    # the Variable method register() makes from the op's function: True for a method of the op's own name
    # (x.exp()), a string for another name; None: none. Operators and methods whose call differs from the
    # function's (x + y, x.sum(axis), x.T) are defined in one place, engine.VARIABLE_OPERATORS
    method: bool | str | None = None
    may_produce_nan: bool = field(init=False, default=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"op '{self.name}': kind must be one of {KINDS}, got {self.kind!r}")
        if not self.variadic and len(self.vjps) != len(self.domain):
            raise ValueError(f"op '{self.name}': {len(self.vjps)} VJPs but {len(self.domain)} domains")
        restricted = any(d.differentiable and (d.low > -math.inf or d.high < math.inf) for d in self.domain)
        object.__setattr__(self, "may_produce_nan", restricted)

    @property
    def arity(self):
        return None if self.variadic else len(self.vjps)

    def vjps_for(self, n_inputs):
        """The VJP per input of one call (variadic ops get vjps[0] bound to each input index)."""
        if not self.variadic:
            return self.vjps
        return tuple(partial(self.vjps[0], index=i) for i in range(n_inputs))

    def check_domain(self, datas, out):
        """Raise DomainError when a restricted-domain op turned non-NaN inputs into NaN."""
        # the sum of squares (one BLAS dot: 1.6x faster than isnan().any() on 200 elements, 3x on
        # 1e5, and no bool temporary) is NaN exactly when an element is: squares are never negative,
        # so no inf - inf, and an overflow gives +inf, not NaN
        if out.dtype.kind != "f" or not math.isnan(np.vdot(out, out)):
            return
        for i, (d, dom) in enumerate(zip(datas, self.domain)):
            d = np.asarray(d)
            if d.dtype.kind == "f" and np.isnan(d).any():
                return  # NaN came in; not this op's fault
            if d.size == 0:
                return  # a mean over nothing is NaN (0/0, as NumPy and torch), not a domain error
        for i, (d, dom) in enumerate(zip(datas, self.domain)):
            bad = ~dom.contains(d)
            if dom.differentiable and np.any(bad):
                d = np.asarray(d)
                where = tuple(int(k) for k in np.argwhere(np.broadcast_to(bad, d.shape))[0]) if d.ndim else ()
                raise DomainError(f"op '{self.name}': input {i} (shape {d.shape} {d.dtype}) has values outside "
                                  f"its domain {dom.description}, e.g. {d[where].item()!r} at index {where}; "
                                  "the result would be NaN")
        raise DomainError(f"op '{self.name}' produced NaN from finite inputs")


REGISTRY: dict[str, OpSpec] = {}


def register(spec: OpSpec):
    """Add spec to the registry, make its public function `sg.<name>` (also `scratch_grad.ops.<name>`) and,
    when the entry asks for one (`spec.method`), its Variable method; return the function.

    The function runs NumPy directly when no argument is a Variable (the fast path VJPs use),
    and records a graph node otherwise."""
    if spec.name in REGISTRY:
        raise ValueError(f"op '{spec.name}' is registered twice")
    holder = getattr(OPS, spec.name, None)
    if holder is not None and getattr(getattr(holder, "spec", None), "name", None) != spec.name:
        raise ValueError(f"op '{spec.name}': the name is taken by the public function {holder.__module__}."
                         f"{holder.__name__}; choose another name")
    fn = make_function(spec)
    export(fn, spec.name, spec.method)
    REGISTRY[spec.name] = spec
    return fn


def export(fn, name=None, method=None):
    """Make fn the public function `sg.<name>` (default: its own name) in place of what register() made:
    for a wrapper that adapts the call of a registered op (conv2d's optional bias, einsum's subscripts
    first), an alias (power for pow) or an op kept out of the registry (astype). method: as OpSpec.method.
    Returns fn, so it decorates a wrapper's definition."""
    name = name or fn.__name__
    define_op(name, fn, name if method is True else method)
    return fn


def unregister(name):
    """Remove op `name` from the registry with its public function and Variable methods (an op a test or
    a user's session registered for a while)."""
    REGISTRY.pop(name, None)
    undefine_op(name)


_FIRST, _SECOND, _BOTH = (0,), (1,), (0, 1)   # the edges of a one- or two-input node
# shared by every node that has them (never mutated): on a chain of a million ops each saves a
# small object per node, about a fifth of the graph's memory
_VERSION_ZERO = (0,)
_VERSIONS_ZERO_ZERO = (0, 0)
_VERSIONS_ZERO_CONSTANT = (0, None)   # x op constant, x unmodified (x * 1.5 in a chain)
_VERSIONS_CONSTANT_ZERO = (None, 0)
_NO_PARAMS = {}


class _AnyKeyword:
    """The keywords of a forward that takes **kwargs: all of them."""

    @staticmethod
    def issuperset(names):
        return True


def keyword_names(spec):
    """The keyword params an op defines: its forward's parameters after the inputs. A NumPy ufunc as the
    forward (np.exp) defines none: its out=, where=, dtype= are NumPy's, not the op's."""
    forward = spec.forward
    if isinstance(forward, np.ufunc):
        return frozenset()
    try:
        parameters = inspect.signature(forward).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    inputs = 0 if spec.variadic else spec.arity
    names = []
    for p in parameters:
        if p.kind is p.VAR_KEYWORD:
            return _AnyKeyword()
        if p.kind is p.POSITIONAL_ONLY or p.kind is p.VAR_POSITIONAL:
            continue
        if p.kind is p.POSITIONAL_OR_KEYWORD and inputs:
            inputs -= 1
            continue
        names.append(p.name)
    return frozenset(names)


def refuse_keywords(op_name, given, allowed):
    """The ArgumentError for keywords an op does not define (given: the names passed)."""
    unknown = sorted(set(given) - set(allowed))
    takes = f"its keywords are {', '.join(sorted(allowed))}" if allowed else "it takes no keywords"
    return ArgumentError(
        f"op '{op_name}' got the keyword{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}, which it "
        f"does not define ({takes}). NumPy's out=, where=, dtype= are not supported: an op returns a new "
        "array (recorded in the graph when an input is a Variable); cast or copy the result instead")


def make_function(spec):
    """The public function of an op, a closure over its spec.

    With no Variable argument it runs the NumPy forward directly (the fast path VJPs use). Unary
    and binary ops carry the whole of `engine.apply` inlined for one and two inputs: this is the
    hot path of every elementwise chain, and the inlining halves its Python overhead. Extra
    positional arguments go to the forward as params."""
    forward = spec.forward
    ndarray = np.ndarray
    allowed = keyword_names(spec)

    def raw(args, params):
        try:
            out = forward(*args, **params)
        except ScratchGradError:
            raise
        except Exception as exc:
            raise forward_error(spec, args, params, exc) from None
        # a user's call on raw arrays is checked like one on Variables (sg.log(np.array([-1.0]))); VJPs
        # run with checking off, so a backward pass never pays for it
        if spec.may_produce_nan and mode.checking:
            spec.check_domain(args, out)
        return out

    def op(*args, **params):
        if params and not allowed.issuperset(params):
            raise refuse_keywords(spec.name, params, allowed)
        for a in args:
            if isinstance(a, Variable):
                return apply(spec, args, params)
        return raw(args, params)

    def unary_op(x, *rest, **params):
        if rest:
            return op(x, *rest, **params)
        if params and not allowed.issuperset(params):
            raise refuse_keywords(spec.name, params, allowed)
        if not isinstance(x, Variable):           # raw arrays: the path VJPs take in a backward pass
            try:
                out = forward(x, **params) if params else forward(x)
            except ScratchGradError:
                raise
            except Exception as exc:
                raise forward_error(spec, (x,), params, exc) from None
            if spec.may_produce_nan and mode.checking:
                spec.check_domain((x,), out)
            return out
        data = x._data
        try:
            out = forward(data, **params) if params else forward(data)
        except ScratchGradError:
            raise
        except Exception as exc:
            raise forward_error(spec, (x,), params, exc) from None
        if type(out) is not ndarray:
            out = np.asarray(out)
        if spec.may_produce_nan and mode.checking:
            spec.check_domain((data,), out)
        if x.requires_grad and mode.enabled:
            vjps = spec.vjps
            if vjps[0] is not None:
                return record(out, spec, vjps, (x,), (data,), params or _NO_PARAMS, _FIRST,
                               (x._version,) if x._version else _VERSION_ZERO)
        if mode.tracing is not None:
            return mode.tracing.constant_node(out, spec, (x,), (data,), params)
        return new_variable(out)

    def binary_op(x, y, *rest, **params):
        if rest:
            return op(x, y, *rest, **params)
        if params and not allowed.issuperset(params):
            raise refuse_keywords(spec.name, params, allowed)
        x_var, y_var = isinstance(x, Variable), isinstance(y, Variable)
        if not (x_var or y_var):
            return raw((x, y), params)
        x_data = x._data if x_var else x
        y_data = y._data if y_var else y
        try:
            out = forward(x_data, y_data, **params) if params else forward(x_data, y_data)
        except ScratchGradError:
            raise
        except Exception as exc:
            raise forward_error(spec, (x, y), params, exc) from None
        if type(out) is not ndarray:
            out = np.asarray(out)
        if spec.may_produce_nan and mode.checking:
            spec.check_domain((x_data, y_data), out)
        if mode.enabled:
            vjps = spec.vjps
            x_edge = x_var and x.requires_grad and vjps[0] is not None
            y_edge = y_var and y.requires_grad and vjps[1] is not None
            if x_edge or y_edge:
                edges = _BOTH if x_edge and y_edge else (_FIRST if x_edge else _SECOND)
                if x_var and y_var:
                    versions = (x._version, y._version) if x._version or y._version else _VERSIONS_ZERO_ZERO
                else:
                    if x_var:
                        versions = (x._version, None) if x._version else _VERSIONS_ZERO_CONSTANT
                        if type(y) is ndarray:       # one the caller could change before backward
                            y, y_data, version = constant_input(y)
                            if version is not None:
                                versions = (x._version, version)
                    else:
                        versions = (None, y._version) if y._version else _VERSIONS_CONSTANT_ZERO
                        if type(x) is ndarray:
                            x, x_data, version = constant_input(x)
                            if version is not None:
                                versions = (version, y._version)
                return record(out, spec, vjps, (x, y), (x_data, y_data), params or _NO_PARAMS, edges, versions)
        if mode.tracing is not None:
            return mode.tracing.constant_node(out, spec, (x, y), (x_data, y_data), params)
        return new_variable(out)

    chosen = {1: unary_op, 2: binary_op}.get(spec.arity, op)
    chosen.__name__ = chosen.__qualname__ = spec.name
    chosen.spec = spec
    chosen.__doc__ = f"{spec.name}: {spec.kind} op (see scratch_grad.REGISTRY['{spec.name}'])."
    return chosen
