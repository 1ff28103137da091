"""The checker is checked: it must FAIL on planted bugs of every class, classify what it sees,
and never flag a correct op (false-positive rate 0 over many random examples)."""
import json
from collections import defaultdict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import scratch_grad as sg
from scratch_grad.ops.registry import REAL, OpSpec
from scratch_grad.ops.sampling import sample_inputs
from scratch_grad.testing import CheckFailure, check_fn, check_program, check_sample, op_names
from scratch_grad.testing.gen import RandomGen
from scratch_grad.testing.mutate import (CLASSES, COMPILER_CLASSES, Mutant, all_mutants, budget_for, plant, run_mutant,
                                         run_mutation)
from scratch_grad.testing.program import single_op_program
from scratch_grad.testing.strategies import NO_SHRINK, budget, check_edge_sweep, check_graph_example, check_op_example


# ---- planted bugs are caught ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mutation_summary():
    return run_mutation(profile="ci", workers=1)


def test_every_planted_mutant_is_killed_by_the_ci_budget(mutation_summary):
    summary = mutation_summary
    assert {"planted", "killed", "kill_rate", "survivors"} <= set(summary)
    assert summary["survivors"] == [], "the suite is blind to: " + ", ".join(r["mutant"] for r in summary["survivors"])
    assert summary["kill_rate"] == 1.0 and summary["killed"] == summary["planted"] > 0
    planted_classes = {klass for klass, stats in summary["per_class"].items() if stats["planted"]}
    assert planted_classes == set(CLASSES)          # every class changed something somewhere
    json.dumps(summary)                             # the --json payload is plain data


def _killed_examples(summary, per_class=2):
    """Up to per_class killed mutants of each class, with whether a graph (not an op sample) killed them.
    Compiler classes are killed by the compiled = eager comparisons, whose properties are in
    test_compiled.py (test_random_graphs_with_compiled_calls_inside_equal_eager_mode)."""
    chosen = defaultdict(list)
    for record in summary["mutants"]:
        if record["status"] == "killed" and record["class"] not in COMPILER_CLASSES \
                and len(chosen[record["class"]]) < per_class:
            chosen[record["class"]].append((Mutant.from_result(record), record["detected_by"].startswith("graph")))
    return [m for klass in sorted(chosen) for m in chosen[klass]]


def test_the_hypothesis_properties_fail_on_planted_bugs_of_every_class(mutation_summary, tmp_path):
    """The pytest suite's own properties (not only the CLI's sampler) catch each class (no shrinking:
    detection is the question here): at least one of its two killed mutants within the ci budget. The
    properties draw at random (an edge sample one time in four, an empty one in twelve), so a mutant that
    fires on one rare input may go unseen in 40 examples where the CLI's sampler, which schedules its
    edge samples, never misses it: both mutants of a class unseen means the properties cannot reach it."""
    caught = []
    for mutant, in_graphs in _killed_examples(mutation_summary):
        with mutant.plant():
            for dtype in ("float64", "float32"):
                if mutant.op == "(engine)" or in_graphs:
                    require = None if mutant.op == "(engine)" else mutant.op

                    @settings(max_examples=budget("ci").graph_examples, derandomize=True, database=None,
                              phases=NO_SHRINK)
                    @given(data=st.data())
                    def prop(data):
                        check_graph_example(data, dtype, require_op=require, directory=str(tmp_path))
                else:
                    @settings(max_examples=budget("ci").op_examples, derandomize=True, database=None,
                              phases=NO_SHRINK)
                    @given(data=st.data())
                    def prop(data):
                        check_op_example(data, sg.REGISTRY[mutant.op], dtype, directory=str(tmp_path))
                try:
                    prop()
                    if mutant.op != "(engine)" and not in_graphs:
                        check_edge_sweep(sg.REGISTRY[mutant.op], dtype, directory=str(tmp_path))
                except CheckFailure:
                    caught.append(mutant.label)
                    break
    chosen = _killed_examples(mutation_summary)
    missed = {m.klass for m, _ in chosen} - {m.klass for m, _ in chosen if m.label in caught}
    assert not missed, f"no mutant of these classes was caught by the properties: {sorted(missed)}"
    assert len(caught) >= len(chosen) * 3 // 4, (caught, [m.label for m, _ in chosen])


def test_a_planted_bug_fails_with_a_message_naming_op_input_shape_dtype_and_values():
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    y = np.linspace(0.5, 2, 6, dtype=np.float32).reshape(2, 3)
    with plant("scaled_x1.001", "mul", 1), pytest.raises(CheckFailure) as caught:
        check_fn(lambda a, b: a * b, [x, y])
    message = str(caught.value)
    for expected in ("function '<lambda>' of 1 op (mul)", "float32", "input 1, shape (2, 3), dtype float32",
                     "engine bug (scratch_grad disagrees with torch and finite differences)",
                     "largest error at entry", "x tolerance", "scratch_grad", "torch", "finite differences"):
        assert expected in message, expected
    finding = caught.value.report.failures()[0]
    assert finding.index == 1 and finding.shape == (2, 3) and finding.ratio > 1
    np.testing.assert_allclose(finding.analytic, 1.001 * finding.torch, rtol=1e-6)


# ---- classification ---------------------------------------------------------------------------------------

def test_a_sign_flip_is_an_engine_bug():
    spec = sg.REGISTRY["tanh"]
    program = single_op_program(spec, (np.array([0.3, -0.8]),), {})
    with plant("sign_flip", "tanh", 0):
        report = check_program(program)
    assert not report.passed
    assert report.failures()[0].classification.startswith("engine bug")


def test_a_changed_kink_convention_is_a_kink_convention_failure():
    program = single_op_program(sg.REGISTRY["relu"], (np.array([0.0, 1.0, -1.0, 0.0]),), {})
    assert check_program(program).passed          # relu'(0) = 0, as torch
    with plant("kink_right", "relu", 0):
        report = check_program(program)
    assert not report.passed
    assert report.failures()[0].classification.startswith("kink/convention")


class _WrongBackwardSquare(torch.autograd.Function):
    """x^2 whose backward is wrong (3x instead of 2x): a broken reference."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * g * x


def test_a_wrong_torch_reference_is_a_reference_mismatch_not_an_engine_failure():
    spec = OpSpec("square_wrong_reference", np.square, (lambda g, out, x: g * 2 * x,), _WrongBackwardSquare.apply,
                  (REAL,), "elementwise", twice_differentiable=False)
    report = check_sample(spec, (np.array([0.5, -1.5, 2.0]),), {})
    assert report.passed                               # scratch_grad is right: finite differences confirm it
    assert any(note.startswith("reference mismatch") for note in report.notes())


def _biased(program, eps):
    """The program's FD objective plus eps * sum(x^2): finite differences of a slightly different function."""
    exact = program.astype(np.float64).scalar_raw

    def biased(leaves):
        value, scale = exact(leaves)
        return value + eps * float(np.sum(leaves[0] ** 2)), scale
    return biased


def test_finite_differences_off_by_a_few_of_their_own_errors_are_classified_as_noise():
    program = single_op_program(sg.REGISTRY["sin"], (np.array([0.4, -1.1]),), {})
    clean = check_program(program, second_order=False)
    fd = [f for f in clean.findings if f.check == "vjp_fd"][0]
    # a bias whose derivative misses by 3 tolerances at the worst entry: FD's error model was off
    eps = 3 * fd.tolerance / (2 * 1.1)
    report = check_program(program, objective=_biased(program, eps), second_order=False, forward_mode=False)
    assert report.passed
    assert "finite-difference noise" in report.notes()


def test_a_clean_finite_difference_outvotes_two_analytic_answers_from_one_program():
    """scratch_grad and torch replay the same recorded program; if finite differences of the function
    itself disagree far beyond their error, the recording is not the function: a graph cut."""
    program = single_op_program(sg.REGISTRY["sin"], (np.array([0.4, -1.1]),), {})
    report = check_program(program, objective=_biased(program, 1e-3), second_order=False)
    assert not report.passed
    assert report.failures()[0].classification.startswith("graph cut")
    # the example: detach() inside the function; torch replays the trace (a constant times x)
    with pytest.raises(CheckFailure) as caught:
        check_fn(lambda x: (x.detach() * x).sum(), [np.array([0.3, 1.0])])
    assert "graph cut" in str(caught.value)
    with pytest.raises(CheckFailure, match="graph cut"):
        check_fn(lambda x: (sg.Variable(x.data) * x).sum(), [np.array([0.3, 1.0])])
    assert check_fn(lambda x: (x * x).sum(), [np.array([0.3, 1.0])]).passed


def test_forward_values_and_dtypes_are_compared():
    spec = OpSpec("exp_off_by_ulps", lambda x: np.exp(x) * (1 + 1e-6), (lambda g, out, x: g * out,), torch.exp,
                  (REAL,), "elementwise")
    report = check_sample(spec, (np.array([0.1, 0.2]),), {})
    assert [f.check for f in report.failures()][:1] == ["forward"]
    upcasting = OpSpec("exp_upcast", lambda x: np.exp(x).astype(np.float64), (lambda g, out, x: g * out,), torch.exp,
                       (REAL,), "elementwise")
    report = check_sample(upcasting, (np.array([0.1, 0.2], dtype=np.float32),), {})
    assert report.failures()[0].classification == "dtype mismatch"


def test_large_inputs_use_projection_mode_and_small_ones_the_full_jacobian():
    small = check_fn(lambda x: sg.tanh(x).sum(), [np.linspace(-1, 1, 6)])
    large = check_fn(lambda x: sg.tanh(x).sum(), [np.linspace(-1, 1, 200)])
    assert not [f for f in small.findings if f.check == "vjp_fd"][0].projected
    assert [f for f in large.findings if f.check == "vjp_fd"][0].projected
    with plant("scaled_x1.001", "tanh", 0), pytest.raises(CheckFailure):
        check_fn(lambda x: sg.tanh(x).sum(), [np.linspace(-1, 1, 200)])


def test_second_order_is_checked_against_torch_and_finite_differences():
    report = check_fn(lambda x, w: sg.sum(sg.sigmoid(x @ w) ** 2), [np.random.default_rng(0).normal(size=(3, 2)),
                                                                      np.random.default_rng(1).normal(size=(2, 2))])
    checks = {f.check for f in report.findings}
    assert {"second_torch", "second_fd"} <= checks
    # a bug that exists only in the second order: sigmoid's VJP right on arrays, wrong on Variables
    original = sg.REGISTRY["sigmoid"].vjps[0]

    def second_order_bug(g, out, x):
        result = original(g, out, x)
        return result * 1.01 if isinstance(result, sg.Variable) else result

    spec = sg.REGISTRY["sigmoid"]
    object.__setattr__(spec, "vjps", (second_order_bug,))
    try:
        report = check_fn(lambda x: sg.sum(sg.sigmoid(x) * x), [np.array([0.2, -0.7])], raise_on_failure=False)
    finally:
        object.__setattr__(spec, "vjps", (original,))
    assert {f.check for f in report.failures()} >= {"second_torch"}
    # forward mode is the VJP of the VJP under create_graph: the bug shows there too, never in first order
    assert all(f.check.startswith(("second", "jvp")) for f in report.failures())


# ---- correct ops are never flagged ---------------------------------------------------------------------------

def _torch_twin(spec):
    """spec with forward and VJPs computed by its own torch reference in the checked dtype: correct by
    construction, so any failure of the checker on it is a false positive of the checker."""
    def tensors(arrays, want=None):
        result = []
        for k, a in enumerate(arrays):
            if isinstance(a, np.ndarray):
                t = torch.as_tensor(np.array(a, order="C"))
                if k == want:
                    t.requires_grad_(True)
                result.append(t)
            else:
                result.append(a)
        return result

    def forward(*xs, **params):
        with torch.no_grad():
            return spec.torch(*tensors(xs), **params).numpy()

    def gradient(g, xs, want, params):
        args = tensors(xs, want)
        result = spec.torch(*args, **params)
        (grad,) = torch.autograd.grad(result, [args[want]], torch.as_tensor(np.array(g, order="C")), allow_unused=True)
        return np.zeros_like(xs[want]) if grad is None else grad.numpy()

    def make_vjp(position):
        if spec.variadic:                 # the engine passes the input's position as `index`
            def variadic_vjp(g, out, *xs, index, **params):
                return gradient(g, xs, index, params)
            return variadic_vjp

        def vjp(g, out, *xs, **params):
            return gradient(g, xs, position, params)
        return vjp

    vjps = tuple(None if v is None else make_vjp(k) for k, v in enumerate(spec.vjps))
    return OpSpec(spec.name, forward, vjps, spec.torch, spec.domain, spec.kind, smooth=spec.smooth,
                  twice_differentiable=False, sample=spec.sample, variadic=spec.variadic, mp=spec.mp,
                  params=spec.params, conventions=spec.conventions)


EXAMPLES_PER_OP = 30


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_checker_never_flags_a_correct_op(dtype):
    """Every registry op's torch twin, over many random examples (kinks and ties included): 0 failures,
    the high-precision reference included (torch's formulas are accurate on ordinary inputs)."""
    examples = 0
    false_positives = []
    for name in op_names():
        twin = _torch_twin(sg.REGISTRY[name])
        for k in range(EXAMPLES_PER_OP):
            gen = RandomGen(seed=(7, k), dtype=dtype, kinks=not twin.smooth and k % 3 == 2)
            inputs, params = sample_inputs(twin, gen)
            report = check_sample(twin, inputs, params, cotangent_gen=gen, second_order=False, seed=k)
            examples += 1
            if not report.passed:
                false_positives.append(report.message())
    assert examples >= EXAMPLES_PER_OP * len(op_names())
    assert false_positives == []


def test_equivalent_mutants_are_reported_as_such_not_as_survivors():
    # add's two VJPs are both `g`: sending input 0 the gradient of input 1 changes nothing
    result = run_mutant(Mutant("wrong_input", "add", 0), budget_for("ci"))
    assert result["status"] == "equivalent" and result["distinguishing"] == 0
    assert all(m.op in op_names() or m.op == "(engine)" for m in all_mutants())
