"""sg.compile against eager mode, on the random graphs of every registry op: values and gradients
equal bit for bit at the trace and at a replay on new values, double backward to a tight tolerance
(scratch_grad/testing/compiled.py). The comparison must catch a compiler bug (planted below)."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import scratch_grad as sg
import scratch_grad.compiler as compiler
from scratch_grad.testing.compiled import compare_compiled
from scratch_grad.testing.graphs import build_graph
from scratch_grad.testing.program import Program, Ref, Step
from scratch_grad.testing.strategies import HypothesisGen, budget


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@settings(max_examples=budget().graph_examples, deadline=None)
@given(data=st.data())
def test_compiled_random_graphs_equal_eager_mode(dtype, data):
    program = build_graph(HypothesisGen(data, dtype), max_ops=budget().max_ops, attempts=1)
    assume(program is not None)
    problems = compare_compiled(program)
    assert not problems, f"{program.meta.get('ops')}: " + "; ".join(problems)


def _fan_out_program(dtype=np.float64):
    """sin(x) * x + x @ w: x feeds three ops, w one; a broadcast bias too."""
    rng = np.random.default_rng(0)
    registry = sg.REGISTRY
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 4)), rng.standard_normal(4)
    steps = [Step(registry["sin"], (Ref("leaf", 0),), {}),
             Step(registry["mul"], (Ref("step", 0), Ref("leaf", 0)), {}),
             Step(registry["matmul"], (Ref("leaf", 0), Ref("leaf", 1)), {}),
             Step(registry["add"], (Ref("step", 1), Ref("step", 2)), {}),
             Step(registry["add"], (Ref("step", 3), Ref("leaf", 2)), {})]
    leaves = [v.astype(dtype) for v in (x, w, b)]
    cotangent = rng.uniform(0.5, 1.5, (3, 4)).astype(dtype)
    return Program(leaves, [True, True, True], [], steps, [4], [cotangent], name="fan_out")


def test_fan_out_program_compiles_equal():
    assert compare_compiled(_fan_out_program()) == []


def test_planted_overwrite_on_fan_out_is_caught(monkeypatch):
    """A compiler that overwrote a fan-out gradient instead of adding it must be caught."""
    monkeypatch.setattr(compiler, "_ACCUMULATE", "{name} = t")
    problems = compare_compiled(_fan_out_program(), second_order=False)
    assert any("gradient of leaf 0 differs" in p for p in problems), problems


def _broadcast_inside_program():
    """reshape(b, (2, 2)) broadcast against x (3, 2, 2): the reshape's gradient must be reduced over
    the batch axis before the reshape's own VJP sees it (at the edge of the trace the engine would
    reduce a forgotten broadcast itself; inside it nothing would)."""
    rng = np.random.default_rng(1)
    registry = sg.REGISTRY
    steps = [Step(registry["reshape"], (Ref("leaf", 1),), {"shape": (2, 2)}),
             Step(registry["add"], (Ref("leaf", 0), Ref("step", 0)), {}),
             Step(registry["tanh"], (Ref("step", 1),), {})]
    leaves = [rng.standard_normal((3, 2, 2)), rng.standard_normal(4)]
    return Program(leaves, [True, True], [], steps, [2], [rng.uniform(0.5, 1.5, (3, 2, 2))], name="broadcast")


def test_broadcast_inside_program_compiles_equal():
    assert compare_compiled(_broadcast_inside_program()) == []


def test_planted_missing_reduction_is_caught(monkeypatch):
    """A compiler that forgot to undo broadcasting inside the trace must be caught."""
    original = compiler._Plan._observe

    def observe_without_reductions(self):
        wraps, fits = original(self)
        return wraps, {key: how for key, how in (fits or {}).items() if how not in ("lead", "fit")}
    monkeypatch.setattr(compiler._Plan, "_observe", observe_without_reductions)
    problems = compare_compiled(_broadcast_inside_program(), second_order=False)
    assert problems, "a gradient of the broadcast shape went unnoticed"
