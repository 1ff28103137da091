"""The conditional and compiler mutant classes of `scratch-grad mutate` (testing/planted.py, mutate.py):
each is planted and restored, changes behaviour exactly under its condition, and (where today's checks
can see it) is killed. Compiler classes are caught by the mixed comparison (test_compiled.py)."""
import numpy as np
import pytest

import scratch_grad as sg
from scratch_grad import engine
from scratch_grad.compiler import codegen
from scratch_grad.ops.registry import REAL, OpSpec
from scratch_grad.testing import mutate
from scratch_grad.testing.mutate import (COMPILER_CLASSES, CONDITIONAL_CLASSES, Mutant, budget_for, mutants_for, plant,
                                         run_mutant)
from scratch_grad.testing.program import single_op_program


def _snapshot():
    return ({name: spec.vjps for name, spec in sg.REGISTRY.items()},
            (engine._send, engine._accumulate, engine._fit_gradient, codegen._ACCUMULATE, codegen._DEALIAS))


def _some_mutant(klass):
    if klass in COMPILER_CLASSES:
        return Mutant(klass, mutate.ENGINE)
    return next(m for m in mutate.all_mutants() if m.klass == klass)


@pytest.mark.parametrize("klass", CONDITIONAL_CLASSES + COMPILER_CLASSES)
def test_every_new_class_is_planted_and_restored_even_when_the_body_raises(klass):
    before = _snapshot()
    mutant = _some_mutant(klass)
    with mutant.plant():
        assert _snapshot() != before
    assert _snapshot() == before
    with pytest.raises(RuntimeError):
        with mutant.plant():
            raise RuntimeError("inside")
    assert _snapshot() == before


def _gradient(op, x, create_graph=False, **params):
    variable = sg.Variable(x, requires_grad=True)
    (g,) = sg.grad(sg.sum(getattr(sg, op)(variable, **params) * 1.5), variable, create_graph=create_graph)
    return g


def _changed_where(klass, op, x, **params):
    correct = _gradient(op, x, **params)
    with plant(klass, op, 0):
        mutated = _gradient(op, x, **params)
    return ~((correct == mutated) | (np.isnan(correct) & np.isnan(mutated)))


def test_at_zero_puts_nan_exactly_where_the_input_is_zero():
    x = np.array([0.5, 0.0, -1.0, 0.0])
    assert _changed_where("at_zero", "sin", x).tolist() == [False, True, False, True]
    assert not _changed_where("at_zero", "sin", x + 2).any()


def test_at_tie_doubles_the_gradient_of_tied_entries():
    x = np.array([1.0, 3.0, 3.0, 2.0])
    assert _changed_where("at_tie", "max", x).tolist() == [False, True, True, False]
    assert not _changed_where("at_tie", "max", np.array([1.0, 3.0, 2.0])).any()
    a = sg.Variable(np.array([1.0, 2.0]), requires_grad=True)   # a tie between two inputs, position by position
    with plant("at_tie", "maximum", 0):
        (g,) = sg.grad(sg.sum(sg.maximum(a, np.array([1.0, 0.0]))), a)
    assert g.tolist() == [1.0, 1.0]                              # 0.5 at the tie, doubled


def test_at_inf_puts_nan_where_the_input_is_infinite():
    x = np.array([1.0, np.inf, -np.inf])
    with np.errstate(invalid="ignore"):          # the forward sums inf and -inf
        assert _changed_where("at_inf", "neg", x).tolist() == [False, True, True]


def test_on_empty_and_on_0d_raise_only_on_such_inputs():
    with plant("on_empty", "sum", 0):
        assert _gradient("sum", np.ones(3)).tolist() == [1.5] * 3
        with pytest.raises(ZeroDivisionError):
            _gradient("sum", np.ones((2, 0)), axis=1)
    with plant("on_0d", "sin", 0):
        assert _gradient("sin", np.zeros(2)).shape == (2,)
        with pytest.raises(np.exceptions.AxisError):
            _gradient("sin", np.array(0.3))


def test_negative_axis_counts_negative_axes_from_the_front():
    x = np.arange(6.0).reshape(2, 3)
    with plant("negative_axis", "softmax", 0):
        _gradient("softmax", x, axis=1)                         # a non-negative axis: unchanged
    assert not _changed_where("negative_axis", "softmax", x, axis=1).any()
    assert _changed_where("negative_axis", "softmax", x, axis=-1).any()


def test_double_backward_mutants_keep_the_first_order_and_lose_second_order_terms():
    x = np.array([0.3, -1.2, 2.0])
    w = np.array([1.0, 0.5, -0.25])

    def hvp():
        variable = sg.Variable(x, requires_grad=True)
        (g,) = sg.grad(sg.sum(sg.sin(variable) * variable), variable, create_graph=True)
        return _gradient_of(g, w, variable)

    def _gradient_of(g, w, variable):
        (h,) = sg.grad(sg.sum(g * w), variable)
        return h
    first, second = _gradient("sin", x), hvp()
    for klass in ("double_backward_raw", "double_backward_frozen"):
        with plant(klass, "sin", 0):
            assert np.array_equal(_gradient("sin", x), first)
            assert not np.allclose(hvp(), second), klass


def test_alias_mutants_write_into_the_gradient_they_are_handed():
    spec = sg.REGISTRY["mul"]
    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    out = x * y
    g = np.array([1.0, 1.0])
    with plant("alias_returns_g", "mul", 0):
        result = sg.REGISTRY["mul"].vjps[0](g, out, x, y)
    assert result is g and g.tolist() == [3.0, 4.0]
    g = np.array([1.0, 1.0])
    with plant("alias_mutates_g", "mul", 0):
        result = spec.vjps[0](g, out, x, y)
    assert result.tolist() == [3.0, 4.0] and g.tolist() == [2.0, 2.0]


def test_dtype_float64_is_seen_only_by_calling_the_vjp_directly():
    """The engine casts every VJP result to its input's dtype, and float32 -> float64 -> float32 is exact:
    gradients stay bit for bit the same. Only a direct check of the VJP's result dtype sees the mutant."""
    x = np.array([0.3, -1.2], dtype=np.float32)
    with plant("dtype_float64", "sin", 0):
        assert sg.REGISTRY["sin"].vjps[0](np.ones(2, np.float32), np.sin(x), x).dtype == np.float64
        mutated = _gradient("sin", x)
    assert mutated.dtype == np.float32 and np.array_equal(mutated, _gradient("sin", x))


def test_keyword_ignored_drops_one_keyword_from_the_vjp_only():
    x = np.array([[1.0, 2.0, 4.0], [0.5, 0.0, 1.0]])
    correct = _gradient("var", x, axis=1, ddof=1)
    with plant("keyword_ignored", "var", 0, "ddof"):
        assert not np.allclose(_gradient("var", x, axis=1, ddof=1), correct)       # the ddof=0 gradient
        assert np.array_equal(_gradient("var", x, axis=1), _gradient("var", x, axis=1, ddof=0))
    assert [m.detail for m in mutants_for(sg.REGISTRY["std"]) if m.klass == "keyword_ignored"] == \
        ["axis", "keepdims", "ddof"]


def test_scalar_mishandled_changes_only_python_number_inputs():
    x = sg.Variable(np.array([0.5, 2.0]), requires_grad=True)

    def gradient(exponent):
        (g,) = sg.grad(sg.sum(sg.pow(x, exponent)), x)
        return g
    with plant("scalar_mishandled", "pow", 0):
        assert not np.allclose(gradient(3), 3 * x.data ** 2)
        assert np.allclose(gradient(np.array(3.0)), 3 * x.data ** 2)


def test_raising_mutants_raise_their_exception_under_their_condition():
    with plant("vjp_raises", "sin", 0), pytest.raises(ValueError, match="planted"):
        _gradient("sin", np.ones(2))
    with plant("vjp_raises_low_rank", "sin", 0):
        _gradient("sin", np.ones((2, 2)))
        with pytest.raises(IndexError):
            _gradient("sin", np.ones(2))
    with plant("vjp_raises_create_graph", "sin", 0):
        _gradient("sin", np.ones(2))
        with pytest.raises(TypeError):
            _gradient("sin", np.ones(2), create_graph=True)


def test_conditional_classes_apply_across_the_registry_from_each_entry():
    """No op list: a new entry gets the classes its signature and flags call for."""
    spec = OpSpec("scaled_sum", lambda x, axis=None, scale=1.0: np.sum(x, axis=axis) * scale,
                  (lambda g, out, x, axis=None, scale=1.0: np.broadcast_to(g, np.shape(x)) * scale,),
                  lambda x, axis=None, scale=1.0: x.sum(dim=axis) * scale, (REAL,), "reduction",
                  twice_differentiable=False)
    labels = {m.label for m in mutants_for(spec)}
    assert {"negative_axis:scaled_sum[0]", "keyword_ignored:scaled_sum[0](axis)",
            "keyword_ignored:scaled_sum[0](scale)", "at_zero:scaled_sum[0]", "vjp_raises:scaled_sum[0]"} <= labels
    assert not any(label.startswith(("double_backward", "scalar_mishandled")) for label in labels)
    assert not any(m.klass == "negative_axis" for m in mutants_for(sg.REGISTRY["sin"]))


def test_behaviour_not_gradients_decides_equivalence():
    """alias_mutates_g on one op leaves the gradient right and doubles the cotangent in place."""
    program = single_op_program(sg.REGISTRY["relu"], (np.array([0.5, -1.0, 2.0]),), {})
    sample = mutate._Sample("op", 0, program)
    mutant = Mutant("alias_mutates_g", "relu", 0)
    assert mutate._changes(mutant, sample)
    run = mutate._fresh(program)
    with mutant.plant():
        gradient = run.scratch_gradients()[1][0]
    assert np.array_equal(gradient, program.scratch_gradients()[1][0])            # the gradient is right
    assert np.array_equal(run.cotangents[0], 2 * program.cotangents[0])           # the cotangent is not
    assert not mutate._changes(Mutant("on_empty", "relu", 0), sample)    # no empty input: nothing changes


@pytest.mark.parametrize("label", ["at_zero:relu[0]", "at_tie:max[0]", "on_0d:sin[0]", "negative_axis:sum[0]",
                                   "double_backward_raw:sin[0]", "double_backward_frozen:mul[1]",
                                   "alias_returns_g:mul[0]", "alias_mutates_g:mul[1]",
                                   "keyword_ignored:sum[0](axis)", "scalar_mishandled:mul[0]", "vjp_raises:exp[0]",
                                   "vjp_raises_low_rank:tanh[0]", "vjp_raises_create_graph:cos[0]"])
def test_todays_checks_kill_the_classes_they_can_see(label):
    mutant = next(m for m in mutate.all_mutants() if m.label == label)
    result = run_mutant(mutant, budget_for("ci"))
    assert result["status"] == "killed", result


def test_an_exception_that_escapes_the_checks_is_reported_not_a_kill(monkeypatch):
    def crashing_check(mutant, sample):
        raise KeyError("escaped")
    monkeypatch.setattr(mutate, "_check", crashing_check)
    result = run_mutant(Mutant("sign_flip", "sin", 0), budget_for("ci"))
    assert result["status"] == "survived"
    assert "escaped the checks" in result["crash"] and "KeyError" in result["crash"]


def test_a_change_below_the_results_resolution_is_not_behaviour():
    a = np.array([15.0, 1e-16, 2.0])
    assert not mutate._differ([a], [np.array([15.0, 2e-16, 2.0])], mutate.ROUNDING_ULPS)     # 1e-16 of 15: rounding
    assert mutate._differ([a], [np.array([15.0, 2e-16, 2.0])])                               # but not bit for bit
    assert mutate._differ([a], [np.array([15.0, 1e-3, 2.0])], mutate.ROUNDING_ULPS)
    assert mutate._differ([a], [np.array([15.0, np.nan, 2.0])], mutate.ROUNDING_ULPS)
    assert mutate._differ([a], [a.astype(np.float32)], mutate.ROUNDING_ULPS)
