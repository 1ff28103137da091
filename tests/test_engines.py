"""Engine adapters (scratch_grad.testing.engines): the protocol, the runner, the built-in adapters
and the example student engine (examples/student_engine), each compared with torch.

The torch adapter is a self-check: its op table is the registry's torch references, so the
runner's replay must agree with Program.run_torch bit for bit. The other adapters run on a few
single-op programs of the ops they provide (chosen from the registry by kind, not by hand), and
planted bugs, in the student engine and in a wrapped copy of a third-party op, must be caught."""
import types

import numpy as np
import pytest
import torch

import scratch_grad as sg
from scratch_grad.errors import EngineError, NotProvidedError
from scratch_grad.ops.sampling import sample_inputs
from scratch_grad.testing.engines import (BUILTIN_ENGINES, Capabilities, load_engine, not_provided_ops,
                                          prepared_vjp, provided_ops, run_program)
from scratch_grad.testing.gen import RandomGen
from scratch_grad.testing.graphs import build_graph
from scratch_grad.testing.oracle import check_program, check_sample
from scratch_grad.testing.program import single_op_program

TOLERANCE = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 1e-4}


def installed(name):
    """The built-in adapter, or a skip when its engine is not installed."""
    try:
        return load_engine(name)
    except EngineError as exc:
        pytest.skip(str(exc))


def op_program(name, seed, dtype="float64"):
    spec = sg.REGISTRY[name]
    gen = RandomGen(seed=(16, seed), dtype=dtype)
    inputs, params = sample_inputs(spec, gen)
    return single_op_program(spec, inputs, params, cotangent_gen=gen)


def agree(ours, reference, dtype):
    """Every array of `ours` close to torch's (normwise: rtol times the reference's scale)."""
    rtol = TOLERANCE[np.dtype(dtype)]
    for a, b in zip(ours, reference):
        if np.shape(a) != np.shape(b):
            return False
        scale = max(1.0, float(np.max(np.abs(b)))) if np.size(b) else 1.0
        if not np.allclose(a, b, rtol=rtol, atol=rtol * scale):
            return False
    return len(ours) == len(reference)


# ---- torch adapter: the self-check ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_adapter_replays_random_graphs_exactly_as_run_torch(dtype):
    engine = load_engine("torch")
    checked = 0
    for k in range(8):
        program = build_graph(RandomGen(seed=(4, k), dtype=dtype))
        if program is None:
            continue
        result = run_program(program, engine, second_order=program.twice_differentiable())
        outputs, grads, second = program.run_torch(dtype, second_order_directions=result.directions)
        for ours, theirs in zip(result.outputs + result.gradients, outputs + grads):
            np.testing.assert_array_equal(ours, theirs)
        if result.second is not None:   # torch sums <g, w> first, the runner contracts g with w in its VJP
            assert agree(result.second, second, dtype)
        checked += 1
    assert checked >= 6


@pytest.mark.parametrize("name", sorted(sg.REGISTRY))
def test_torch_adapter_runs_every_registry_op_as_run_torch(name):
    program = op_program(name, seed=0)
    result = run_program(program, load_engine("torch"))
    outputs, grads, _ = program.run_torch(np.float64)
    for ours, theirs in zip(result.outputs + result.gradients, outputs + grads):
        np.testing.assert_array_equal(ours, theirs)


def test_scratch_grad_adapter_agrees_with_torch_on_random_graphs_in_every_mode():
    ours, reference = load_engine("scratch_grad"), load_engine("torch")
    assert not_provided_ops(ours) == []
    for k in range(8):
        program = build_graph(RandomGen(seed=(5, k)))
        a = run_program(program, ours)
        b = run_program(program, reference, directions=a.directions, tangents=a.tangents,
                        second_order=a.second is not None)
        assert agree(a.outputs + a.gradients + a.jvp, b.outputs + b.gradients + b.jvp, np.float64)
        assert (a.second is None) == (b.second is None) and (a.second is None or agree(a.second, b.second, np.float64))


@pytest.mark.parametrize("engine", ["scratch_grad", "torch"])
def test_var_beyond_its_degrees_of_freedom_has_no_high_precision_reference(engine):
    # var with ddof > n divides by max(n - ddof, 0) = 0 in NumPy, torch and scratch_grad (inf); the mpmath
    # definition divided by n - ddof < 0 and failed both engines' forward with "engine bug" (-2.33 vs inf)
    x = np.array([[1.0, 2.0, 4.0]])
    program = single_op_program(sg.REGISTRY["var"], (x,), {"axis": -1, "ddof": 5})
    report = check_program(program, engine=load_engine(engine), high_precision_reference=True)
    assert report.passed, report


def test_a_wrong_var_is_still_caught_by_the_high_precision_reference():
    # the must-FAIL side: torch.var ignoring ddof (dividing by n) inside the limits the reference keeps
    def var_ignoring_ddof(x, axis=None, keepdims=False, ddof=0):
        return torch.var(x, dim=axis, keepdim=keepdims, correction=0)
    x = np.array([[1.0, 2.0, 4.0]])
    program = single_op_program(sg.REGISTRY["var"], (x,), {"axis": -1, "ddof": 1})
    wrong = _with_ops(load_engine("torch"), var=var_ignoring_ddof)
    report = check_program(program, engine=wrong, high_precision_reference=True)
    assert not report.passed
    assert any(f.check == "forward_mp" and not f.passed for f in report.findings)


# ---- every installed adapter on a few ops it provides -------------------------------------------------

def smooth_elementwise(engine, limit=4):
    """Up to `limit` ops the engine provides among the registry's smooth elementwise ops (where every
    engine should agree with torch: no kinks, no conventions), in registry order."""
    return [name for name in provided_ops(engine)
            if sg.REGISTRY[name].kind == "elementwise" and sg.REGISTRY[name].smooth][:limit]


@pytest.mark.parametrize("name", sorted(BUILTIN_ENGINES))
def test_each_installed_adapter_agrees_with_torch_on_smooth_elementwise_ops(name):
    engine = installed(name)
    reference = load_engine("torch")
    ops = smooth_elementwise(engine)
    assert len(ops) >= 4, f"engine '{name}' provides too few smooth elementwise ops to be checked: {ops}"
    dtypes = engine.capabilities.dtypes
    for k, op in enumerate(ops):
        for dtype in [dtypes[k % len(dtypes)]]:    # the dtypes in turn: JAX's eager mode compiles each new shape
            program = op_program(op, seed=k, dtype=dtype)
            result = run_program(program, engine)
            expected = run_program(program, reference, directions=result.directions, tangents=result.tangents)
            assert agree(result.outputs, expected.outputs, dtype), f"{name} {op} {dtype}: forward"
            assert agree(result.gradients, expected.gradients, dtype), f"{name} {op} {dtype}: gradient"
            assert result.gradients[0].dtype == np.dtype(dtype), f"{name} {op}: gradient dtype"
            # a mode the engine declares is computed, or the engine's own failure is kept (autograd has no JVP of erf)
            if engine.capabilities.second_order:
                assert result.second is not None or "second" in result.errors
                assert result.second is None or agree(result.second, expected.second, dtype), f"{name} {op}: 2nd"
            if engine.capabilities.forward_mode:
                assert result.jvp is not None or "jvp" in result.errors
                assert result.jvp is None or agree(result.jvp, expected.jvp, dtype), f"{name} {op}: jvp"


# ---- planted bugs are caught ------------------------------------------------------------------------------

def test_the_student_engine_planted_mean_bug_is_caught_and_the_fix_passes(monkeypatch):
    import examples.student_engine.engine as student
    engine, reference = load_engine("student"), load_engine("torch")
    x = np.random.default_rng(0).standard_normal((3, 4))
    by_axis = single_op_program(sg.REGISTRY["mean"], (x,), {"axis": 1, "keepdims": False})
    whole = single_op_program(sg.REGISTRY["mean"], (x,), {})
    monkeypatch.setattr(student, "FIXED", False)
    assert agree(run_program(whole, engine).gradients, run_program(whole, reference).gradients, np.float64)
    wrong = run_program(by_axis, engine).gradients[0]
    right = run_program(by_axis, reference).gradients[0]
    np.testing.assert_allclose(wrong * x.shape[0], right)     # divided by 12 instead of 4
    monkeypatch.setattr(student, "FIXED", True)
    assert agree(run_program(by_axis, engine).gradients, [right], np.float64)


def _with_ops(engine, **replaced):
    """A copy of an adapter (a module) with some op table entries replaced."""
    copy = types.SimpleNamespace(**{a: getattr(engine, a) for a in ("name", "capabilities", "tensor", "to_numpy",
                                                                   "vjp", "jvp") if hasattr(engine, a)})
    copy.ops = {**engine.ops, **replaced}
    return copy


def test_a_wrapped_autograd_op_with_a_wrong_vjp_is_caught():
    from autograd.extend import defvjp, primitive
    engine = installed("autograd")

    @primitive
    def sin_wrong(x):
        return np.sin(x)
    defvjp(sin_wrong, lambda ans, x: lambda g: 1.01 * g * np.cos(x))     # 1% too large

    program = op_program("sin", seed=0)
    reference = run_program(program, load_engine("torch"), second_order=False, forward_mode=False)
    right = run_program(program, engine, second_order=False, forward_mode=False)
    wrong = run_program(program, _with_ops(engine, sin=sin_wrong), second_order=False, forward_mode=False)
    assert agree(right.gradients, reference.gradients, np.float64)
    assert agree(wrong.outputs, reference.outputs, np.float64)
    assert not agree(wrong.gradients, reference.gradients, np.float64)


def test_the_oracle_fails_a_wrapped_autograd_op_with_a_wrong_vjp_and_passes_the_real_one():
    # the same planted bug through the oracle itself (check_sample with engine=, as parity --engine runs
    # it): the verdict is an engine bug against torch and finite differences, the real np.sin passes
    from autograd.extend import defjvp, defvjp, primitive
    engine = installed("autograd")

    @primitive
    def sin_wrong(x):
        return np.sin(x)
    defvjp(sin_wrong, lambda ans, x: lambda g: 1.01 * g * np.cos(x))     # 1% too large in reverse mode
    defjvp(sin_wrong, lambda g, ans, x: g * np.cos(x))                   # forward mode right

    spec = sg.REGISTRY["sin"]
    x = np.random.default_rng(1).uniform(-3, 3, size=(3, 4))
    right = check_sample(spec, (x,), {}, engine=engine)
    assert right.passed, right
    wrong = check_sample(spec, (x,), {}, engine=_with_ops(engine, sin=sin_wrong))
    failed = {f.check: f.classification for f in wrong.failures()}
    assert "vjp_torch" in failed and "vjp_fd" in failed, failed
    assert "engine bug" in failed["vjp_torch"] and "autograd" in failed["vjp_torch"]
    assert not {"forward", "jvp_torch"} & set(failed), failed            # only the wrong VJP is blamed


def test_a_wrapped_jax_op_with_a_wrong_vjp_is_caught_in_reverse_but_not_forward_mode():
    engine = installed("jax")
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def sin_wrong(x):
        return jnp.sin(x)
    sin_wrong.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (1.01 * g * jnp.cos(x),))

    program = op_program("sin", seed=0)
    wrong = run_program(program, _with_ops(engine, sin=sin_wrong), second_order=False)
    reference = run_program(program, load_engine("torch"), second_order=False, tangents=wrong.tangents)
    assert not agree(wrong.gradients, reference.gradients, np.float64)
    assert "jvp" in wrong.errors      # a custom_vjp function has no forward mode in JAX: reported, not hidden


def test_prepared_vjp_times_the_same_work_run_program_checks():
    # benchmarks/bench_ops.py times other engines through prepared_vjp: it must compute what run_program
    # compares (outputs and first gradients), repeatably, and refuse what the engine lacks
    program = op_program("matmul", seed=2)
    call = prepared_vjp(program, load_engine("torch"))
    expected = run_program(program, load_engine("torch"), second_order=False, forward_mode=False)
    for _ in range(2):       # fixed leaves: a second call gives the same, nothing accumulates
        outputs, grads = call()
        for ours, theirs in zip(outputs + grads, expected.outputs + expected.gradients):
            np.testing.assert_array_equal(ours, theirs)
    with pytest.raises(NotProvidedError, match="op 'sin'"):
        prepared_vjp(op_program("sin", seed=0), load_engine("student"))


# ---- not provided, and the protocol's errors -------------------------------------------------------------

def test_missing_ops_params_dtypes_and_modes_are_reported_as_not_provided():
    engine = load_engine("student")
    assert sorted(provided_ops(engine) + not_provided_ops(engine)) == sorted(sg.REGISTRY)
    x = np.random.default_rng(0).standard_normal((2, 3))
    graph = single_op_program(sg.REGISTRY["sin"], (x,), {})
    with pytest.raises(NotProvidedError, match="engine 'student' does not provide: op 'sin'") as caught:
        run_program(graph, engine)
    assert caught.value.ops == ("sin",)
    batched = single_op_program(sg.REGISTRY["matmul"], (np.ones((2, 2, 3)), np.ones((3, 2))), {})
    with pytest.raises(NotProvidedError, match="op 'matmul'.*2-D"):
        run_program(batched, engine)
    with pytest.raises(NotProvidedError, match="dtype float32"):
        run_program(op_program("exp", 0, "float32"), engine)
    with pytest.raises(NotProvidedError, match="second order"):
        run_program(op_program("exp", 0), engine, second_order=True)
    with pytest.raises(NotProvidedError, match="forward mode"):
        run_program(op_program("exp", 0), engine, forward_mode=True)


def test_a_param_value_an_adapter_cannot_express_is_not_provided_not_an_engine_failure():
    # the student engine's matmul is 2-D only: raised inside the replay, the oracle must not call it
    # "student raised" (a failure); parity counts it as not provided (single ops and random graphs)
    engine = load_engine("student")
    batched = single_op_program(sg.REGISTRY["matmul"], (np.ones((2, 2, 3)), np.ones((3, 2))), {})
    with pytest.raises(NotProvidedError, match="2-D"):
        check_program(batched, engine=engine)


@pytest.mark.parametrize("name", ["autograd", "mygrad", "jax"])
@pytest.mark.parametrize("op, params", [("sum", {"axis": (0,)}), ("mean", {"axis": -1}), ("var", {"axis": 0}),
                                        ("softmax", {"axis": 0})])
def test_numpy_style_adapters_reduce_a_0d_input_over_axis_0_as_torch_does(name, op, params):
    # the registry (as torch) reduces a 0-d input over axis 0 or -1 (over nothing); NumPy-style APIs refuse
    # any axis there, so the adapters pass axis=None (numpy_axis) instead of reporting an AxisError
    engine = installed(name)
    if (name, op) == ("autograd", "softmax"):
        pytest.skip("autograd's own logsumexp(keepdims=True) VJP gives a 0-d input a (1,) gradient (README)")
    program = single_op_program(sg.REGISTRY[op], (np.array(0.7),), params)
    result = run_program(program, engine, second_order=False, forward_mode=False)
    expected = run_program(program, load_engine("torch"), second_order=False, forward_mode=False)
    assert agree(result.outputs + result.gradients, expected.outputs + expected.gradients, np.float64)


def _adapter(**overrides):
    fields = dict(name="mine", capabilities=Capabilities(), ops={"exp": np.exp}, tensor=np.array,
                  to_numpy=np.array, vjp=lambda fn, primals, cotangents, create_graph=False: (None, None))
    fields.update(overrides)
    return types.SimpleNamespace(**{k: v for k, v in fields.items() if v is not None})


@pytest.mark.parametrize("spec, message", [
    ("no_such_engine", "cannot import no_such_engine"),
    ("scratch_grad.testing.engines.torch_adapter:nothing", "has no attribute 'nothing'"),
    (_adapter(vjp=None), "lacks vjp"),
    (_adapter(capabilities={"second_order": True}), "must be a scratch_grad.testing.engines.Capabilities"),
    (_adapter(capabilities=Capabilities(forward_mode=True)), "declares forward_mode but has no jvp"),
    (_adapter(capabilities=Capabilities(dtypes=("float16",))), "dtypes must be among"),
    (_adapter(ops={"exp": np.exp, "expp": np.exp}), "'expp', not registry ops"),
])
def test_load_engine_refuses_what_breaks_the_protocol(spec, message):
    with pytest.raises(EngineError, match=message):
        load_engine(spec)


def test_load_engine_accepts_names_modules_attributes_classes_and_objects():
    assert load_engine().name == "scratch_grad"
    assert load_engine("examples.student_engine.adapter").name == "student"
    assert load_engine("scratch_grad.testing.engines.torch_adapter").name == "torch"
    mine = _adapter()
    assert load_engine(mine) is mine

    class Engine:
        name, capabilities, ops = "cls", Capabilities(), {}
        tensor = to_numpy = staticmethod(np.array)

        def vjp(self, fn, primals, cotangents, create_graph=False):
            return None, None
    assert load_engine(Engine).name == "cls"
    assert provided_ops(load_engine(Engine)) == []


def test_torch_adapter_in_place_detection_is_real():
    # the capability the adapter declares: a saved tensor changed in place makes backward fail
    engine = load_engine("torch")
    assert engine.capabilities.in_place_detection
    x = engine.tensor(np.ones(3), requires_grad=True)
    y = torch.exp(x)
    y.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
