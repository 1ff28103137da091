"""The oracle at the edges: inf and NaN inputs, huge magnitudes, domain boundaries, derivative tails, graph
cuts, exceptions, the engine's contract. Each verdict is checked both ways: a planted wrong gradient must
FAIL, a correct engine at the same edge must PASS."""
import math

import numpy as np
import pytest
import torch

import scratch_grad as sg
from scratch_grad.ops.lazy_torch import mpmath
from scratch_grad.ops.registry import REAL, OpSpec
from scratch_grad.testing import CheckFailure, check_fn, check_program, check_sample
from scratch_grad.testing.mutate import plant
from scratch_grad.testing.program import single_op_program


def _classes(report):
    return [f.classification for f in report.failures()]


# ---- inf, NaN, huge magnitudes ------------------------------------------------------------------------------

def test_an_inf_input_does_not_make_the_tolerance_infinite():
    x = np.array([np.inf, 0.5, -1.25])
    assert check_sample(sg.REGISTRY["exp"], (x,), {}).passed
    with plant("scaled_x1.001", "exp", 0):
        report = check_sample(sg.REGISTRY["exp"], (x,), {})
    assert not report.passed                       # the 0.1% error at a finite entry is still seen
    failure = [f for f in report.failures() if f.check == "vjp_torch"][0]
    assert failure.position in ((1,), (2,))


def test_nan_positions_that_match_torch_pass_and_extra_nans_fail():
    x = np.array([0.3, np.nan, -0.7])
    assert check_sample(sg.REGISTRY["sin"], (x,), {}).passed
    spec = OpSpec("sin_nan_gradient", np.sin, (lambda g, out, x: g * sg.cos(x) * np.where(x > 0, np.nan, 1.0),),
                  torch.sin, (REAL,), "elementwise", twice_differentiable=False)
    assert not check_sample(spec, (x,), {}).passed


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_sign_flipped_softmax_vjp_is_caught_at_logits_of_1e8(dtype):
    logits = np.array([[1e8, 1e8, -1e8], [3e7, 3e7, 3e7]], dtype=dtype)   # ties: the gradient is not zero
    assert check_sample(sg.REGISTRY["softmax"], (logits,), {"axis": -1}).passed
    with plant("sign_flip", "softmax", 0):
        report = check_sample(sg.REGISTRY["softmax"], (logits,), {"axis": -1})
    assert not report.passed


# ---- finite differences at domain edges ---------------------------------------------------------------------

def test_finite_differences_stay_inside_the_domain_near_its_edge():
    report = check_fn(lambda x: sg.sqrt(x).sum(), [np.array([5e-4, 2e-6, 1.0])])    # used to raise DomainError
    assert report.passed
    with plant("scaled_x1.001", "sqrt", 0), pytest.raises(CheckFailure):
        check_fn(lambda x: sg.sqrt(x).sum(), [np.array([5e-4, 2e-6, 1.0])])


def test_a_one_sided_difference_is_used_where_only_one_side_exists():
    from scratch_grad.testing.finite_diff import differentiate

    def objective(points):        # defined for x >= 0 only (as a domain check would refuse the rest)
        x = points[0]
        if np.any(x < 0):
            raise sg.DomainError("outside")
        value = np.sum(3 * x + x * x)
        return float(value), float(abs(value))

    fd = differentiate(objective, [np.array([0.0, 4.0])], 0, np.random.default_rng(0), "full")
    assert fd.one_sided[0] and not fd.one_sided[1]           # at the edge itself: one side only
    assert fd.value[0] == pytest.approx(3.0, rel=1e-9) and fd.value[1] == pytest.approx(11.0, rel=1e-9)
    assert not fd.unavailable.any()


# ---- the high-precision reference ----------------------------------------------------------------------------

def _tanh_spec(vjp, name):
    return OpSpec(name, np.tanh, (vjp,), torch.tanh, (REAL,), "elementwise", twice_differentiable=False,
                  mp=lambda x: mpmath.tanh(x))


def test_a_derivative_tail_lost_by_scratch_grad_and_torch_alike_fails_against_the_high_precision_reference():
    x = np.array([20.0, -19.0, 0.5])
    lossy = _tanh_spec(lambda g, out, x: g * (1 - out * out), "tanh_one_minus_square")   # torch's formula
    report = check_sample(lossy, (x,), {})
    assert not report.passed
    failure = [f for f in report.failures() if f.check == "vjp_mp"][0]
    assert failure.classification.startswith("shared error")
    assert failure.analytic == 0.0 and failure.mp == pytest.approx(4 * math.exp(-40), rel=1e-6)

    def accurate(g, out, x):          # 4 e^{-2|x|} / (1 + e^{-2|x|})^2: no cancellation in the tails
        e = np.exp(-2 * np.abs(x))
        return g * (4 * e / (1 + e) ** 2)
    assert check_sample(_tanh_spec(accurate, "tanh_accurate"), (x,), {}).passed


def test_scratch_grad_more_accurate_than_torch_is_classified_as_such_not_failed():
    # torch's softplus returns x above its threshold of 20 (gradient exactly 1); the exact value differs
    def forward(x):
        return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
    spec = OpSpec("softplus_exact", forward, (lambda g, out, x: g * sg.sigmoid(x),), torch.nn.functional.softplus,
                  (REAL,), "elementwise", twice_differentiable=False, mp=lambda x: mpmath.log1p(mpmath.exp(x)))
    report = check_sample(spec, (np.array([21.0, 25.0, 30.0]),), {})
    assert report.passed, report.message()
    assert any(note.startswith("reference imprecise") for note in report.notes())


# ---- graph cuts, exceptions, second order of a wrong first order ---------------------------------------------

def test_an_exception_from_a_vjp_is_a_finding_not_a_crash():
    def raising(g, out, x):
        raise IndexError("index 3 is out of bounds")
    spec = OpSpec("exp_raising", np.exp, (raising,), torch.exp, (REAL,), "elementwise", twice_differentiable=False)
    report = check_sample(spec, (np.array([0.1, 0.2]),), {})
    assert not report.passed
    failure = report.failures()[0]
    assert failure.classification == "scratch_grad raised"
    assert "IndexError: index 3 is out of bounds" in failure.detail and "raising" in failure.detail


def test_an_exception_from_the_checker_itself_stays_loud(monkeypatch):
    from scratch_grad.testing import oracle

    def broken(*args, **kwargs):
        raise KeyError("a checker bug")
    monkeypatch.setattr(oracle, "_mp_finding", broken)
    with pytest.raises(KeyError, match="a checker bug"):
        check_sample(sg.REGISTRY["exp"], (np.array([0.1]),), {})


def test_second_order_of_a_wrong_first_order_vjp_is_a_failure_not_a_reference_mismatch():
    # sin whose VJP is g * 1.01 cos(x), written with ops: consistently wrong, so finite differences of its
    # first gradient agree with its second order; torch disagrees with both
    spec = OpSpec("sin_scaled", np.sin, (lambda g, out, x: g * (1.01 * sg.cos(x)),), torch.sin, (REAL,),
                  "elementwise")
    report = check_sample(spec, (np.array([0.3, -0.8]),), {})
    second = [f for f in report.findings if f.check == "second_torch"][0]
    assert not second.passed and second.classification.startswith("engine bug")


# ---- the engine's contract -----------------------------------------------------------------------------------

def _exp_spec(vjp, name):
    return OpSpec(name, np.exp, (vjp,), torch.exp, (REAL,), "elementwise", twice_differentiable=False)


def test_a_vjp_that_writes_into_its_incoming_gradient_is_caught():
    def in_place(g, out, x):
        result = g * out
        if isinstance(g, np.ndarray) and g.flags.writeable:
            g *= 2
        return result
    report = check_sample(_exp_spec(in_place, "exp_in_place"), (np.array([0.1, 0.2]),), {})
    assert "cotangent 0 mutated (the in-flowing gradient was written into)" in _classes(report)


def test_a_float32_vjp_that_computes_in_float64_is_caught():
    spec = _exp_spec(lambda g, out, x: (g * out).astype(np.float64), "exp_float64_vjp")
    report = check_sample(spec, (np.array([0.1, 0.2], dtype=np.float32),), {})
    assert any(c.startswith("VJP result dtype float64") for c in _classes(report))
    assert check_sample(sg.REGISTRY["exp"], (np.array([0.1, 0.2], dtype=np.float32),), {}).passed


def test_a_vjp_that_is_not_reentrant_is_caught():
    calls = []

    def drifting(g, out, x):
        calls.append(1)
        return g * out * (1 + 1e-3 * len(calls))
    report = check_sample(_exp_spec(drifting, "exp_drifting"), (np.array([0.1, 0.2]),), {})
    assert any(c.startswith("not reentrant") for c in _classes(report))


def test_a_zero_cotangent_must_give_exact_zeros():
    spec = _exp_spec(lambda g, out, x: g * out + 1e-300, "exp_offset")
    report = check_sample(spec, (np.array([0.1, 0.2]),), {})
    assert "non-zero gradient from a zero cotangent" in _classes(report)


def test_correct_ops_satisfy_the_contract_at_the_edges():
    for name, inputs, params in [("sqrt", (np.array([0.0, 4.0]),), {}), ("exp", (np.array([800.0, -np.inf]),), {}),
                                 ("sum", (np.zeros((2, 0)),), {"axis": 1})]:
        report = check_program(single_op_program(sg.REGISTRY[name], inputs, params), label=name)
        assert [f for f in report.findings if f.check == "invariants" and not f.passed] == [], report.message()


def test_a_float32_gradient_that_overflows_like_torch_float32_is_not_blamed():
    # -1/x^2 at x = 1.2e-38 is 7e75: inf in float32, as torch's own float32 run gives; finite in float64
    tiny = np.float32(1.1754945e-38)
    for name, inputs in [("reciprocal", (np.array([tiny, 2.0], dtype=np.float32),)),
                         ("pow", (np.array([tiny], dtype=np.float32), np.array([-2.0], dtype=np.float32))),
                         ("div", (np.array([1.0], dtype=np.float32), np.array([-tiny], dtype=np.float32)))]:
        assert check_sample(sg.REGISTRY[name], inputs, {}).passed, name
    with plant("sign_flip", "reciprocal", 0):
        assert not check_sample(sg.REGISTRY["reciprocal"], (np.array([tiny, 2.0], dtype=np.float32),), {}).passed


def test_a_vjp_that_raises_is_a_classified_failure_with_a_reproducer_in_parity_and_the_compiled_comparison(tmp_path):
    """Issue 18: an exception from an op is a finding like any mismatch, in `parity --op` (its own checks
    and the random graphs around it) and in the compiled comparison, never a crash of the run."""
    from scratch_grad.testing.compiled import compare_compiled
    from scratch_grad.testing.parity import run_parity

    from .broken_ops import RAISING_LOGCOSH, registered
    with registered(RAISING_LOGCOSH):
        result = run_parity(ops=[RAISING_LOGCOSH.name], samples=3, graphs=4, workers=1, dtypes=("float64",),
                            reproducer_dir=str(tmp_path))
        program = single_op_program(RAISING_LOGCOSH, (np.array([0.3, -0.2]),), {})
        problems = compare_compiled(program)
    row = result.rows[RAISING_LOGCOSH.name]
    assert not result.passed and result.failed_ops == [RAISING_LOGCOSH.name]
    assert row.cells["vjp_torch"].classifications["scratch_grad raised"] >= 3
    assert not row.cells["graphs"].passed
    assert "IndexError" in row.messages()[0] and "scratch_grad raised" in row.messages()[0]
    scripts = list(tmp_path.glob("logcosh_raising-*.py"))
    assert len(scripts) == 1                       # one reproducer for the one distinct failure
    import subprocess
    import sys
    run = subprocess.run([sys.executable, str(scripts[0])], cwd=tmp_path.parent, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1 and "IndexError" in run.stdout + run.stderr
    assert problems and all("IndexError" in p and "logcosh_raising" in p for p in problems)


def test_a_declared_convention_point_is_not_outvoted_by_finite_differences_but_a_wrong_gradient_elsewhere_is():
    """clip at x == min == max: torch.clamp passes g (its [min, max] is inclusive) where the function is
    flat; the entry declares that point (OpSpec.conventions), so FD and mpmath do not outvote torch there
    (must PASS). A VJP that passes g everywhere is still wrong at x = 0.3 (must FAIL)."""
    import dataclasses
    spec = sg.REGISTRY["clip"]
    x = np.array([0.0, 0.3, -0.4])
    assert check_sample(spec, [x], {"min": 0.0, "max": 0.0}, seed=0).passed
    leaky = dataclasses.replace(spec, vjps=(lambda g, out, x, min=None, max=None: g * 1.0,))
    report = check_sample(leaky, [x], {"min": 0.0, "max": 0.0}, seed=0)
    assert not report.passed and any(f.check == "vjp_torch" for f in report.failures())
