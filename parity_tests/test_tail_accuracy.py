"""Accuracy of every elementwise op's derivative against mpmath, in the tails too, read from the registry.

Where the true derivative is a normal number of the dtype, the first derivative (and the second,
for ops declared twice differentiable) must be within a few ulps of it times the derivative's
condition number |x f''(x) / f'(x)|. This is what a derivative written from the output loses and
one written from x keeps: tanh'(20) = 1 - tanh(20)^2 is 0 in float64 where the truth is 1.7e-17,
sigmoid'(40) = s (1 - s) is 0 where it is 4.2e-18, expm1'(-40) = out + 1 is 0, gelu'(-10) with
0.5 (1 + erf) is 0 where it is -7.7e-22. The true values come from mpmath.diff of each entry's
`mp` function (the same reference the oracle uses), at a precision that resolves them.
"""
import functools
import math

import mpmath
import numpy as np
import pytest

import scratch_grad as sg
from scratch_grad.ops import REGISTRY

POINTS = (-745.0, -700.0, -300.0, -88.0, -40.0, -20.0, -10.0, -9.01, -5.0, -1.0, -1e-3, -1e-8, 5e-324, 1e-300,
          1e-8, 1e-3, 0.5, 1.3, 5.0, 9.01, 19.9, 20.1, 40.0, 88.0, 300.0, 700.0)
ULPS = 16          # rounding of a few operations, each within an ulp or two
KINK_MARGIN = 1e-3


def _smooth_at(spec, x):
    domain = spec.domain[0]
    return domain.low < x < domain.high and all(abs(x - kink) > KINK_MARGIN for kink in domain.avoid)


def _param_sets(spec):
    """The call forms the entry's examples use (at least the defaults)."""
    sets = [{}]
    for _, params in spec.examples:
        if params not in sets and all(np.ndim(v) == 0 for v in params.values()):
            sets.append(params)
    return sets


CASES = [pytest.param(name, params, id=f"{name}-{params}".replace(" ", ""))
         for name, spec in REGISTRY.items() if spec.kind == "elementwise" and spec.mp is not None
         for params in _param_sets(spec)]


@functools.lru_cache(maxsize=None)
def _true_derivative(name, params_items, x, order):
    """f^(order)(x) by mpmath.diff, with enough digits to resolve it against f's own size; None
    where mpmath cannot give a real value."""
    mp = REGISTRY[name].mp
    params = dict(params_items)

    def diff(dps):
        with mpmath.workdps(dps):
            value = mpmath.diff(lambda t: mp(t, **params), mpmath.mpf(x), order)
            if isinstance(value, mpmath.mpc):
                return None if value.imag != 0 else value.real
            return value

    try:
        value = diff(60)
        if value is not None and value != 0 and abs(value) < mpmath.mpf(10) ** -20:
            # maybe noise against an f of size ~1: 390 digits resolve any f' that is a normal float64
            value = diff(390)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return value


def _scratch_derivative(name, params, x, dtype, order):
    v = sg.Variable(np.array([x], dtype=dtype), requires_grad=True)
    out = getattr(sg, name)(v, **params)
    (g,) = sg.grad(out, v, grad_outputs=np.ones(1, dtype), create_graph=order == 2)
    if order == 2:
        (g,) = sg.grad(g, v, grad_outputs=np.ones(1, dtype))
    g = np.asarray(getattr(g, "data", g))
    assert g.dtype == np.dtype(dtype)
    return float(g[0])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,params", CASES)
def test_derivative_tails(name, params, dtype):
    spec = REGISTRY[name]
    info = np.finfo(dtype)
    orders = (1, 2) if spec.twice_differentiable else (1,)
    checked, failures = 0, []
    for point in POINTS:
        x = float(np.array(point, dtype=dtype))      # the value the dtype holds
        if not _smooth_at(spec, x):
            continue
        try:
            with np.errstate(all="ignore"):
                spec.forward(np.array([x], dtype=dtype), **params)
        except Exception:       # noqa: BLE001 - a call form this op refuses: nothing to check
            continue
        for order in orders:
            true = _true_derivative(name, tuple(sorted(params.items())), x, order)
            if true is None or not info.tiny <= abs(float(true)) <= info.max:
                continue        # not a normal number of the dtype: rounding there is not relative
            ours = _scratch_derivative(name, params, x, dtype, order)
            nxt = _true_derivative(name, tuple(sorted(params.items())), x, order + 1)
            condition = abs(float(x * nxt / true)) if nxt is not None else 0.0
            ulps = abs(ours - float(true)) / float(np.spacing(np.array(abs(float(true)), dtype=dtype)))
            checked += 1
            if not ulps <= ULPS * max(1.0, condition):
                failures.append(f"order {order} at x = {x!r}: {ours!r}, true {float(true)!r} "
                                f"({ulps:.3g} ulps, condition {condition:.3g})")
    if not checked:
        pytest.skip(f"{name} {params}: the derivative is 0 or not a normal {dtype} at every point")
    assert not failures, f"{name} {params} {dtype}:\n  " + "\n  ".join(failures)
