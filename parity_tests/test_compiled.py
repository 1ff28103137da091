"""sg.compile against eager mode, on the random graphs of every registry op: values and gradients
equal bit for bit at the trace and at a replay on new values, double backward to a tight tolerance
(scratch_grad/testing/compiled.py), also with compiled calls inside eager graphs. The comparisons must
catch compiler bugs (planted below) and report an op's exceptions instead of raising them."""
import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import scratch_grad as sg
from scratch_grad.compiler import analysis, codegen
from scratch_grad.testing.compiled import candidate_segments, compare_compiled, compare_mixed, with_boundary_uses
from scratch_grad.testing.faults import CheckerError
from scratch_grad.testing.gen import RandomGen
from scratch_grad.testing.graphs import build_graph
from scratch_grad.testing.mutate import plant
from scratch_grad.testing.program import Program
from scratch_grad.testing.strategies import HypothesisGen, budget
from scratch_grad.trace import Ref, Step


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
    monkeypatch.setattr(codegen, "_ACCUMULATE", "{name} = t")
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
    original = analysis.observe

    def observe_without_reductions(trace, edges_in_order):
        observed = original(trace, edges_in_order)
        fits = {key: how for key, how in (observed.fits or {}).items() if how not in ("lead", "fit")}
        return dataclasses.replace(observed, fits=fits)
    monkeypatch.setattr(analysis, "observe", observe_without_reductions)
    problems = compare_compiled(_broadcast_inside_program(), second_order=False)
    assert problems, "a gradient of the broadcast shape went unnoticed"


# ---- mixed: compiled calls inside eager graphs --------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@settings(max_examples=budget().graph_examples, deadline=None)
@given(data=st.data())
def test_random_graphs_with_compiled_calls_inside_equal_eager_mode(dtype, data):
    program = build_graph(HypothesisGen(data, dtype), max_ops=budget().max_ops, attempts=1)
    assume(program is not None)
    problems = compare_mixed(program, seed=data.draw(st.integers(0, 2 ** 16), label="segment seed"))
    assert not problems, f"{program.meta.get('ops')}: " + "; ".join(problems)


def _boundary_program(dtype=np.float64):
    """exp(x) eagerly, then sin(x + y): x is read on both sides of a call compiling the second part."""
    rng = np.random.default_rng(2)
    registry = sg.REGISTRY
    steps = [Step(registry["exp"], (Ref("leaf", 0),), {}),
             Step(registry["add"], (Ref("leaf", 0), Ref("leaf", 1)), {}),
             Step(registry["sin"], (Ref("step", 1),), {})]
    leaves = [rng.standard_normal(3).astype(dtype), rng.standard_normal(3).astype(dtype)]
    cotangents = [rng.uniform(0.5, 1.5, 3).astype(dtype) for _ in range(2)]
    return Program(leaves, [True, True], [], steps, [0, 2], cotangents, name="boundary")


def test_segments_are_single_exit_runs_that_keep_eager_summation_order():
    program = _fan_out_program()      # x feeds sin, mul and matmul; mul and matmul feed add
    for segment in candidate_segments(program):
        inside = range(segment.start, segment.stop)
        read_outside = {r.index for j, step in enumerate(program.steps) if j not in inside
                        for r in step.args if r.kind == "step"} | set(program.outputs)
        assert [j for j in inside if j in read_outside] == [segment.exit]
        reads_of_x = sum(r == Ref("leaf", 0) for j in inside for r in program.steps[j].args)
        assert reads_of_x <= 1 or segment.stop == len(program.steps) or not any(
            r == Ref("leaf", 0) for step in program.steps[segment.stop:] for r in step.args)
    # steps 0-1 read x twice (sin, mul) and matmul reads it after them: eager mode would add matmul's
    # gradient of x first, so compiling them alone cannot be bitwise and is not a candidate
    assert all((s.start, s.stop) != (0, 2) for s in candidate_segments(program))


def test_boundary_uses_put_leaves_and_the_result_on_both_sides_of_each_call():
    program = _boundary_program()
    segments = [s for s in candidate_segments(program) if (s.start, s.stop) == (1, 3)]
    augmented, (segment,) = with_boundary_uses(program, segments, seed=0)
    inside = range(segment.start, segment.stop)
    before = [step for j, step in enumerate(augmented.steps) if j < segment.start]
    after = [step for j, step in enumerate(augmented.steps) if j >= segment.stop]
    for key in segment.inputs:         # every value the call reads is read by eager code before it
        assert any(Ref(*key) in step.args for step in before), key
    assert any(Ref("step", segment.exit) in step.args for step in after)    # and its result after it
    assert {augmented.steps[j].spec.name for j in inside} >= {"add", "sin", "mul"}
    # the added steps change no value the program had
    np.testing.assert_array_equal(augmented.evaluate_raw(augmented.leaves)[segment.exit],
                                  program.evaluate_raw(program.leaves)[2])


def test_mixed_boundary_program_compiles_equal():
    assert compare_mixed(_boundary_program(), seed=0) == []
    assert compare_mixed(_boundary_program(np.float32), seed=0) == []


@pytest.mark.parametrize("klass", ["compiled_shared_gradient", "compiled_inplace_fan_out"])
def test_a_compiled_call_sharing_a_buffer_with_eager_code_is_caught_by_the_mixed_comparison(klass):
    """Planted compiler bugs at the boundary: one gradient buffer handed to two inputs of the call (the
    engine accumulates into it in place), and fan-out summed in place into the g that eager code
    handed the call. The first is invisible when the whole program is compiled."""
    program = _boundary_program()
    with plant(klass, "(engine)"):
        if klass == "compiled_shared_gradient":
            assert compare_compiled(program) == []        # compiled whole, no buffer crosses a boundary
        problems = [p for seed in range(4) for p in compare_mixed(program, seed=seed)]
    assert any("gradient of leaf" in p and "differs" in p for p in problems), problems


def test_the_mixed_comparison_catches_buffer_sharing_on_random_graphs():
    """Not only on a graph made for it: 60 random graphs of the ci stream catch both planted bugs."""
    programs = [p for k in range(60) for p in [build_graph(RandomGen(seed=(0, 2, k)))] if p is not None]
    assert all(compare_mixed(p, seed=k) == [] for k, p in enumerate(programs[:20]))
    for klass in ("compiled_shared_gradient", "compiled_inplace_fan_out"):
        with plant(klass, "(engine)"):
            assert any(compare_mixed(p, seed=k) for k, p in enumerate(programs)), klass


# ---- exceptions are reported, the checker's own ones raised ------------------------------------------------

def _sin_program(dtype=np.float64):
    steps = [Step(sg.REGISTRY["sin"], (Ref("leaf", 0),), {}), Step(sg.REGISTRY["mul"], (Ref("step", 0), Ref("leaf", 0)), {})]
    return Program([np.linspace(-1, 1, 4).astype(dtype)], [True], [], steps, [1], [np.ones(4, dtype)], name="sin")


@pytest.mark.parametrize("compare", [compare_compiled, compare_mixed])
def test_a_vjp_that_raises_is_a_reported_problem_naming_the_op(compare):
    with plant("vjp_raises", "sin", 0):
        problems = compare(_sin_program())
    assert any("eager mode raised op 'sin': ValueError" in p for p in problems), problems
    assert any("compiled mode raised op 'sin': ValueError" in p for p in problems), problems


def test_a_vjp_that_raises_only_under_create_graph_is_reported_by_the_second_order_comparison():
    with plant("vjp_raises_create_graph", "sin", 0):
        problems = compare_compiled(_sin_program())
    assert any(p.startswith("second order: eager mode raised op 'sin': TypeError") for p in problems), problems


def test_an_exception_of_the_checker_itself_is_raised_as_a_checker_bug():
    program = _sin_program()
    program.steps[1] = Step(sg.REGISTRY["mul"], (Ref("step", 0), Ref("leaf", 7)), {})   # no leaf 7: the checker's bug
    with pytest.raises(CheckerError, match="bug in the checker .* IndexError"):
        compare_compiled(program)
