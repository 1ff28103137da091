"""The engine's user-facing behaviour: Variable, operators, backward/grad, higher order, errors.

Gradients are compared with torch.autograd (float64, random inputs drawn per test from a seeded
generator); the registry-wide three-way checks live in parity_tests/."""
import gc
import weakref

import numpy as np
import pytest
import torch

import scratch_grad as sg


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def torch_grads(fn, *arrays):
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    fn(*tensors).backward()
    return [t.grad.numpy() for t in tensors]


# ---- Variable ---------------------------------------------------------------------------------------

def test_variable_from_scalars_lists_and_arrays():
    assert sg.Variable(2.5).data.shape == () and sg.Variable(2.5).dtype == np.float64
    nested = sg.Variable([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert nested.shape == (2, 2) and nested.requires_grad
    f32 = sg.Variable(np.ones(3, dtype=np.float32), requires_grad=True)
    (f32 * 2.0).sum().backward()
    assert f32.grad.dtype == np.float32 and f32.grad.shape == (3,)
    np.testing.assert_array_equal(f32.grad, [2, 2, 2])


def test_variable_copies_and_protects_its_data():
    source = np.ones(3)
    x = sg.Variable(source, requires_grad=True)
    source[0] = 5.0                                    # the caller's array is not shared
    assert x.data[0] == 1.0
    with pytest.raises(ValueError):
        x.data[0] = 7.0                                # saved arrays cannot be mutated behind our back


def test_integer_data_cannot_require_grad_but_works_as_a_constant():
    with pytest.raises(sg.DTypeError, match="floating-point"):
        sg.Variable([1, 2, 3], requires_grad=True)
    w = sg.Variable(rand(3), requires_grad=True)
    ints = sg.Variable(np.array([1, 2, 3]))
    (w * ints).sum().backward()
    np.testing.assert_array_equal(w.grad, [1.0, 2.0, 3.0])


def test_operators_and_methods_match_torch():
    a, b = rand(3, 4, seed=1), rand(4, 3, seed=2)

    def expression(lib, x, y):
        exp = torch.exp if lib is torch else sg.exp
        z = (x @ y) / (1.0 + exp(-(x @ y))) - 2.0 * x[1:, ::2].sum() + (x ** 2).mean(axis=1, keepdims=True)
        return (z.T * 0.5).reshape(-1).sum() - (3.0 - x[0]).sum()

    x, y = sg.Variable(a, requires_grad=True), sg.Variable(b, requires_grad=True)
    expression(sg, x, y).backward()
    gx, gy = torch_grads(lambda x, y: expression(torch, x, y), a, b)
    np.testing.assert_allclose(x.grad, gx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y.grad, gy, rtol=1e-12, atol=1e-12)


def test_power_operator_records_square_for_a_float_square_and_pow_otherwise():
    a = rand(5, seed=3)
    x = sg.Variable(a, requires_grad=True)
    for exponent in (2, 2.0):
        y = x ** exponent
        assert y._spec.name == "square"
        np.testing.assert_array_equal(y.data, a ** 2)
        y.sum().backward()
        np.testing.assert_array_equal(x.grad, 2 * a)     # exact: 2x is x + x, then one product with g = 1
        x.grad = None
    assert (x ** 3)._spec.name == "pow" and (abs(x) ** 0.5)._spec.name == "pow"
    assert (x ** sg.Variable(np.float64(2.0)))._spec.name == "pow"   # a Variable exponent may need its gradient
    assert (x ** np.full(5, 2.0))._spec.name == "pow" and (x ** sg.Variable(np.full(5, 2.0)))._spec.name == "pow"
    for raw in (np.array([True, False]), np.array([-3, 4], dtype=np.int32), np.float32(1.5)):
        for exponent in (2, 2.0):
            expected = raw ** exponent              # NumPy's own dtype rules (a float exponent promotes ints)
            result = sg.Variable(raw) ** exponent
            assert result.dtype == expected.dtype and np.array_equal(result.data, expected), (raw, exponent)


def test_numpy_array_on_the_left_defers_to_the_variable():
    x = sg.Variable(rand(3), requires_grad=True)
    y = np.full(3, 2.0) * x - np.ones(3) / (x * x + 1)
    assert isinstance(y, sg.Variable)
    y.sum().backward()
    expected = 2 + 2 * rand(3) / (rand(3) ** 2 + 1) ** 2
    np.testing.assert_allclose(x.grad, expected, rtol=1e-12)


# ---- backward ---------------------------------------------------------------------------------------

def test_gradients_accumulate_across_backward_calls_and_reset():
    x = sg.Variable(rand(4), requires_grad=True)
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(4, 6.0))
    x.grad = None
    (x * 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones(4))


def test_fan_out_sums_every_consumer():
    a = rand(3, seed=3)
    x = sg.Variable(a, requires_grad=True)
    h = sg.tanh(x)
    (h * h + sg.sin(h) + h).sum().backward()       # h feeds four consumers
    (expected,) = torch_grads(lambda t: (torch.tanh(t) ** 2 + torch.sin(torch.tanh(t)) + torch.tanh(t)).sum(), a)
    np.testing.assert_allclose(x.grad, expected, rtol=1e-12)


def test_backward_needs_a_gradient_for_non_scalar_outputs():
    x = sg.Variable(rand(2, 3), requires_grad=True)
    y = x * 2.0
    with pytest.raises(sg.GraphError, match=r"shape \(2, 3\).*gradient="):
        y.backward()
    with pytest.raises(sg.ShapeError, match=r"gradient has shape \(3,\) but the output has shape \(2, 3\)"):
        y.backward(np.ones(3))
    y.backward(np.full((2, 3), 0.5))
    np.testing.assert_array_equal(x.grad, np.ones((2, 3)))


def test_backward_on_output_that_does_not_require_grad():
    with pytest.raises(sg.GraphError, match="does not require grad"):
        (sg.Variable(rand(2)) * 2.0).sum().backward()


def test_second_backward_through_freed_graph_is_a_clear_error_unless_retained():
    x = sg.Variable(rand(3), requires_grad=True)
    loss = sg.exp(x).sum()
    loss.backward()
    with pytest.raises(sg.GraphError, match="already freed.*retain_graph"):
        loss.backward()
    loss = sg.exp(x).sum()
    x.grad = None
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(x.grad, 2 * np.exp(x.data))


def test_in_place_change_of_a_saved_input_is_detected():
    x = sg.Variable(rand(3), requires_grad=True)
    y = sg.exp(x).sum()
    x.sub_(1.0)                                    # bumps x's version: exp saved the old value
    with pytest.raises(sg.GraphError, match=r"op '(exp|sum)'.*modified in place"):
        y.backward()
    z = (x * x).sum()
    x.data = np.zeros(3)
    with pytest.raises(sg.GraphError, match="modified in place"):
        z.backward()


def test_in_place_updates_write_through_and_never_touch_another_variables_data():
    w = sg.Variable([1.0, 2.0, 3.0], requires_grad=True)
    seen = w.data                                   # read-only view of the parameter's own buffer
    w.sub_(np.array([1.0, 1.0, 1.0])).mul_(2.0).add_(sg.Variable([0.5, 0.5, 0.5]))
    np.testing.assert_array_equal(seen, [0.5, 2.5, 4.5])
    assert not w.data.flags.writeable and w._version == 3
    view = w.reshape(3)                             # an op output sharing w's memory
    view.zero_()
    np.testing.assert_array_equal(w.data, [0.5, 2.5, 4.5])
    np.testing.assert_array_equal(view.data, [0.0, 0.0, 0.0])


def test_bad_in_place_updates_name_the_method_shapes_and_dtypes():
    w = sg.Variable([1.0, 2.0, 3.0], requires_grad=True)
    with pytest.raises(sg.ShapeError, match=r"sub_: cannot update shape \(3,\) float64 in place with shape \(2,\)"):
        w.sub_(np.ones(2))
    counts = sg.Variable(np.array([1, 2]))
    with pytest.raises(sg.DTypeError, match=r"add_: cannot update shape \(2,\) int64 in place with shape \(2,\) float64"):
        counts.add_(np.array([0.5, 0.5]))
    assert w._version == 0 and counts._version == 0   # a failed update changes nothing


def test_raw_writable_arrays_are_saved_by_value():
    w = sg.Variable(rand(3), requires_grad=True)
    constant = np.array([1.0, 2.0, 3.0])
    y = (w * constant).sum()
    constant[:] = 100.0                           # the caller reuses its buffer before backward
    y.backward()
    np.testing.assert_array_equal(w.grad, [1.0, 2.0, 3.0])


def test_deep_chain_of_a_million_ops_has_no_recursion_limit():
    x = sg.Variable(np.array(0.5), requires_grad=True)
    h = x
    for _ in range(1_000_000):
        h = h * 1.0
    h.backward()
    assert x.grad == 1.0


def test_each_vjp_runs_once_even_with_heavy_fan_out():
    calls = []
    spec = sg.REGISTRY["sin"]
    original = spec.vjps

    def counting(g, out, x):
        calls.append(1)
        return original[0](g, out, x)
    object.__setattr__(spec, "vjps", (counting,))
    try:
        x = sg.Variable(np.array([0.3]), requires_grad=True)
        h = x
        for _ in range(200):                        # each level uses the previous one twice
            h = sg.sin(h) + h
        h.sum().backward()
    finally:
        object.__setattr__(spec, "vjps", original)
    assert len(calls) == 200                      # a recursive walk without memo would do 2**200


def test_backward_frees_intermediates_unless_retained():
    for retain, should_be_alive in ((False, False), (True, True)):
        x = sg.Variable(rand(100), requires_grad=True)
        middle = sg.tanh(x)
        probe = weakref.ref(middle)
        loss = sg.exp(middle * 2.0).sum()
        del middle
        loss.backward(retain_graph=retain)
        gc.collect()
        assert (probe() is not None) == should_be_alive


def test_no_grad_detach_and_requires_grad_propagation():
    x = sg.Variable(rand(3), requires_grad=True)
    constant = sg.Variable(rand(3))
    assert (x * constant).requires_grad and not (constant * 2.0).requires_grad
    with sg.no_grad():
        y = x * 2.0
        with sg.enable_grad():
            assert (x * 2.0).requires_grad
    assert not y.requires_grad and y.is_leaf
    d = x.detach()
    assert not d.requires_grad and np.shares_memory(d.data, x.data)
    (x * d).sum().backward()
    np.testing.assert_array_equal(x.grad, x.data)        # no gradient flowed through the detached copy


def test_leaves_that_do_not_require_grad_cost_no_vjp():
    calls = []
    spec = sg.REGISTRY["mul"]
    original = spec.vjps
    wrapped = tuple((lambda f, k: (lambda *a: (calls.append(k), f(*a))[1]))(f, k) for k, f in enumerate(original))
    object.__setattr__(spec, "vjps", wrapped)
    try:
        w = sg.Variable(rand(3), requires_grad=True)
        (w * sg.Variable(rand(3))).sum().backward()
    finally:
        object.__setattr__(spec, "vjps", original)
    assert calls == [0]                          # only the input that requires grad got a VJP call


# ---- functional grad and higher order ---------------------------------------------------------------

def test_grad_returns_gradients_without_touching_dot_grad():
    x = sg.Variable(rand(3), requires_grad=True)
    y = sg.Variable(rand(3, seed=1), requires_grad=True)
    gx, gy = sg.grad((x * y).sum(), [x, y])
    np.testing.assert_array_equal(gx, y.data)
    np.testing.assert_array_equal(gy, x.data)
    assert x.grad is None and y.grad is None


def test_grad_of_an_intermediate_and_unused_inputs():
    x = sg.Variable(rand(3), requires_grad=True)
    h = sg.exp(x)
    (gh,) = sg.grad((h * h).sum(), h)
    np.testing.assert_allclose(gh, 2 * np.exp(x.data))
    z = sg.Variable(rand(3), requires_grad=True)
    with pytest.raises(sg.GraphError, match="not used"):
        sg.grad((x * 2.0).sum(), [x, z])
    assert sg.grad((x * 2.0).sum(), [x, z], allow_unused=True)[1] is None


def test_hessian_vector_product_matches_torch():
    a, v = rand(4, seed=5), rand(4, seed=6)
    m = rand(4, 4, seed=7)

    def f(lib, x):
        tanh, exp = (torch.tanh, torch.exp) if lib is torch else (sg.tanh, sg.exp)
        matrix = torch.tensor(m) if lib is torch else m
        return (tanh(matrix @ x) * exp(0.1 * x)).sum() + (x * x * x).sum()

    x = sg.Variable(a, requires_grad=True)
    (g,) = sg.grad(f(sg, x), x, create_graph=True)
    assert isinstance(g, sg.Variable) and g.requires_grad
    (hv,) = sg.grad((g * v).sum(), x)

    xt = torch.tensor(a, requires_grad=True)
    (gt,) = torch.autograd.grad(f(torch, xt), xt, create_graph=True)
    (hvt,) = torch.autograd.grad((gt * torch.tensor(v)).sum(), xt)
    np.testing.assert_allclose(g.data, gt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(hv, hvt.numpy(), rtol=1e-10)


def test_double_backward_through_backward_create_graph():
    x = sg.Variable(np.array([0.7, -0.3]), requires_grad=True)
    (sg.sin(x) * x).sum().backward(create_graph=True)
    first = x.grad                                  # cos(x) x + sin(x), a Variable
    x.grad = None
    first.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * np.cos(x.data) - x.data * np.sin(x.data), rtol=1e-12)


def test_in_place_check_with_constant_inputs_of_many_input_ops():
    x = sg.Variable(rand(4), requires_grad=True)
    mask = np.array([True, False, True, False])
    y = sg.where(mask, x * x, 2.0 * x)              # a three-input node whose first input is a constant
    (g,) = sg.grad(y.sum(), x, create_graph=True)
    (h,) = sg.grad((g * g).sum(), x)
    np.testing.assert_allclose(h, np.where(mask, 8 * x.data, 0.0), rtol=1e-12)
    z = sg.where(mask, x, 0.0).sum()
    x.add_(1.0)
    with pytest.raises(sg.GraphError, match="op 'where': input 1 .* modified in place"):
        z.backward()


def test_third_derivative():
    x = sg.Variable(np.array(0.4), requires_grad=True)
    y = x ** 4
    (d1,) = sg.grad(y, x, create_graph=True)
    (d2,) = sg.grad(d1, x, create_graph=True)
    (d3,) = sg.grad(d2, x)
    np.testing.assert_allclose(d3, 24 * 0.4, rtol=1e-12)


# ---- clear errors on bad input ------------------------------------------------------------------------

def test_shape_mismatch_names_the_op_inputs_shapes_and_dtypes():
    x = sg.Variable(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(sg.ShapeError, match=r"op 'add'.*input 0: shape \(2, 3\) float64.*input 1: shape \(4,\) float64"):
        x + np.ones(4)
    with pytest.raises(sg.ShapeError, match=r"op 'matmul'.*\(2, 3\).*\(2, 3\)"):
        x @ x


def test_wrong_axis_is_an_axis_error():
    with pytest.raises(sg.AxisError, match=r"op 'sum'.*shape \(2, 3\).*axis"):
        sg.Variable(np.ones((2, 3))).sum(axis=2)


def test_nan_producing_input_names_op_value_and_index():
    x = sg.Variable(np.array([1.0, 2.0, -3.0]), requires_grad=True)
    with pytest.raises(sg.DomainError, match=r"op 'log': input 0 .* x > 0, e.g. -3.0 at index \(2,\)"):
        sg.log(x)
    with pytest.raises(sg.DomainError, match=r"op 'sqrt'"):
        sg.sqrt(x)
    nan_in = sg.Variable(np.array([np.nan, 1.0]))
    assert np.isnan(sg.log(nan_in).data[0])        # NaN that came in is passed on, not blamed on log


def test_errors_are_package_exceptions():
    for error in (sg.ShapeError, sg.AxisError, sg.DTypeError, sg.DomainError, sg.GraphError):
        assert issubclass(error, sg.ScratchGradError)


def test_vjp_returning_a_wrong_shape_is_reported_with_the_op():
    spec = sg.OpSpec("bad_shape_op", np.sin, (lambda g, out, x: np.ones(7),), torch.sin, (sg.Domain(),),
                     "elementwise")
    bad = sg.ops.registry.make_function(spec)
    x = sg.Variable(rand(3), requires_grad=True)
    with pytest.raises(sg.ShapeError, match=r"VJP of op 'bad_shape_op' for input 0 .*\(7,\).*\(3,\)"):
        bad(x).sum().backward()



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_on_large_arrays_matches_expit_to_a_few_ulps_with_no_overflow_warning(dtype):
    # arrays of 1024+ elements take the vectorized 1/(1+e^-x) path (the parity suite samples small ones)
    import warnings
    import scipy.special
    x = np.concatenate([np.linspace(-800, 800, 4001), [-np.inf, np.inf, 0.0]]).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = sg.sigmoid(sg.Variable(x, requires_grad=True))
    expected = scipy.special.expit(x)
    tiny = np.finfo(dtype).tiny                      # below it expit gives subnormals, the formula 0
    normal = expected >= tiny
    np.testing.assert_array_max_ulp(out.data[normal], expected[normal], maxulp=4)
    assert np.all(out.data[~normal] <= tiny) and out.dtype == dtype
    reference = torch.sigmoid(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out.data[normal], reference[normal], rtol=4 * np.finfo(dtype).eps)


# ---- shared version counters: detach() and x.data (torch's detach shares the counter) ----------------

def _uses(kind, x, w):
    """(w * <x as a constant>).sum() for the ways a Variable's values reach an op without its graph."""
    constant = {"detach": lambda: x.detach(), "data": lambda: x.data, "numpy": lambda: x.numpy(),
                "asarray": lambda: np.asarray(x)}[kind]()
    return (constant * w).sum() if kind == "data" else (w * constant).sum()


@pytest.mark.parametrize("kind", ["detach", "data", "numpy", "asarray"])
@pytest.mark.parametrize("change", ["sub_", "setitem", "zero_", "data ="])
def test_in_place_change_after_detach_or_data_was_used_raises(kind, change):
    x = sg.Variable(np.array([1.0, 2.0]), requires_grad=True)
    w = sg.Variable(np.array([3.0, 4.0]), requires_grad=True)
    y = _uses(kind, x, w)
    {"sub_": lambda: x.sub_(1.0), "setitem": lambda: x.__setitem__(0, 5.0), "zero_": lambda: x.zero_(),
     "data =": lambda: setattr(x, "data", np.zeros(2))}[change]()
    with pytest.raises(sg.GraphError, match=r"op 'mul'.*modified in place"):
        y.backward()                               # before: w.grad silently held x's new values


@pytest.mark.parametrize("kind", ["detach", "data"])
def test_detach_and_data_without_an_in_place_change_give_the_gradient(kind):
    x = sg.Variable(np.array([1.0, 2.0]), requires_grad=True)
    w = sg.Variable(np.array([3.0, 4.0]), requires_grad=True)
    _uses(kind, x, w).backward()
    np.testing.assert_array_equal(w.grad, [1.0, 2.0])
    assert x.grad is None                          # a constant: no gradient flows back to x


def test_in_place_change_of_a_detached_variable_reaches_x_and_its_graphs():
    x = sg.Variable(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    d = x.detach()
    d.sub_(1.0)                                    # shares x's array and version counter, as in torch
    np.testing.assert_array_equal(x.data, [0.0, 1.0])
    with pytest.raises(sg.GraphError, match="modified in place"):
        y.backward()
    assert not d.requires_grad and d.is_leaf


def test_detach_in_a_loop_keeps_the_counter_family_small():
    import gc
    x = sg.Variable(np.ones(2), requires_grad=True)
    for _ in range(200):
        x.detach()
    gc.collect()
    x.detach()
    assert len(x._family) <= 20                    # freed members are pruned


def test_data_of_an_op_result_is_read_only():
    y = sg.Variable(np.ones(2), requires_grad=True) * 2.0
    with pytest.raises(ValueError):
        y.data[0] = 7.0                            # y's array is saved by the graph of every later op


# ---- NumPy-only keywords are refused by every op -----------------------------------------------------

@pytest.mark.parametrize("keyword", ["out", "where", "dtype", "casting"])
@pytest.mark.parametrize("name", sorted(sg.REGISTRY))
def test_every_op_refuses_numpy_only_keywords(name, keyword):
    from scratch_grad.ops.sampling import sample_inputs
    from scratch_grad.testing.gen import RandomGen
    spec = sg.REGISTRY[name]
    inputs, params = sample_inputs(spec, RandomGen(seed=0, dtype="float64"))
    function = sg.ops.registry.make_function(spec)          # the entry's public function, as sg.<op> is made
    args = [sg.Variable(v, requires_grad=True) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
            for v in inputs]
    value = {"out": np.empty(3), "where": True, "dtype": np.float32, "casting": "unsafe"}[keyword]
    with pytest.raises(sg.ArgumentError, match=rf"op '{name}' got the keyword '{keyword}'"):
        function(*args, **params, **{keyword: value})


def test_exp_out_is_refused_and_nothing_is_written():
    x = sg.Variable(np.array([0.0, 1.0]), requires_grad=True)
    buffer = np.full(2, 7.0)
    with pytest.raises(sg.ArgumentError, match="op 'exp'.*out"):
        sg.exp(x, out=buffer)
    np.testing.assert_array_equal(buffer, [7.0, 7.0])
    with pytest.raises(sg.ArgumentError, match="op 'sum'.*dtype.*its keywords are axis, keepdims"):
        x.sum(dtype=np.float32)
    for call in (lambda: sg.concatenate([x, x], out=buffer), lambda: sg.stack([x, x], out=buffer),
                 lambda: sg.einsum("i,i", x, x, out=buffer), lambda: sg.split(x, 2, out=buffer)):
        with pytest.raises(sg.ArgumentError, match="out"):
            call()
    assert issubclass(sg.ArgumentError, (sg.ScratchGradError, TypeError))


# ---- domain checks on raw arrays, as on Variables ----------------------------------------------------

def test_raw_array_outside_the_domain_is_a_domain_error_as_for_a_variable():
    with pytest.raises(sg.DomainError, match=r"op 'log': input 0 .* e.g. -1.0 at index \(0,\)"):
        sg.log(np.array([-1.0, 2.0]))
    with pytest.raises(sg.DomainError, match="op 'log'"):
        sg.log(-1.0)
    with pytest.raises(sg.DomainError, match="op 'pow'"):
        sg.pow(np.array(-8.0), 1 / 3)
    with pytest.raises(sg.DomainError, match="op 'sqrt'"):
        sg.sqrt(np.array([4.0, -1.0]))
    assert np.isnan(sg.log(np.array([np.nan]))[0])           # NaN that came in is passed on
    np.testing.assert_array_equal(sg.log(np.array([1.0, 0.0])), [0.0, -np.inf])


def test_backward_through_a_nan_gradient_does_not_run_domain_checks():
    # VJPs call ops on raw arrays with checking off: a NaN there is a value, not a user error
    x = sg.Variable(np.array([-1.0, 2.0]), requires_grad=True)
    y = sg.pow(sg.Variable(np.array([2.0, 2.0])), x)       # d/dy 2^y = 2^y log 2: fine
    y.sum().backward()
    base = sg.Variable(np.array([-2.0, 0.0]), requires_grad=True)
    exponent = sg.Variable(np.array([2.0, 3.0]), requires_grad=True)
    (base ** exponent).sum().backward()                     # log(-2) inside the exponent's VJP: NaN, as torch
    assert np.isnan(exponent.grad[0]) and exponent.grad[1] == 0.0


# ---- masks select, as torch's: a NaN or inf in the incoming gradient stays out of zeroed entries -------

@pytest.mark.parametrize("name, call, torch_call", [
    ("relu", lambda x: sg.relu(x), lambda t: torch.relu(t)),
    ("clip", lambda x: sg.clip(x, -0.5, 0.5), lambda t: torch.clamp(t, -0.5, 0.5)),
    ("maximum", lambda x: sg.maximum(x, sg.Variable(np.full(4, 0.25))), lambda t: torch.maximum(t, torch.full((4,), 0.25, dtype=t.dtype))),
    ("minimum", lambda x: sg.minimum(x, sg.Variable(np.full(4, 0.25))), lambda t: torch.minimum(t, torch.full((4,), 0.25, dtype=t.dtype))),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_masked_vjps_keep_non_finite_incoming_gradients_out_of_zeroed_entries(name, call, torch_call, dtype):
    x = np.array([-1.0, 2.0, 0.25, 0.1], dtype=dtype)
    for size in (4, 2000):                           # small arrays and the large-array path alike
        values = np.resize(x, size)
        incoming = np.resize(np.array([np.nan, np.inf, -np.inf, 1.5], dtype=dtype), size)
        if name in ("maximum", "minimum") and size != 4:
            continue
        v = sg.Variable(values, requires_grad=True)
        (ours,) = sg.grad(call(v), v, grad_outputs=incoming)
        t = torch.tensor(values, requires_grad=True)
        (theirs,) = torch.autograd.grad(torch_call(t), t, torch.tensor(incoming))
        np.testing.assert_array_equal(ours, theirs.numpy(), err_msg=name)


def test_second_order_through_relu_of_a_zero_vector_norm_matches_torch():
    # found by the random graphs: norm's second order at the zero vector is NaN (as torch); relu,
    # whose input made that zero vector, must keep it out of its inactive entries as torch does
    x = np.array([-0.5, -1.9, -0.01])
    direction = np.array([0.3, -0.7, 1.1])
    v = sg.Variable(x, requires_grad=True)
    (g,) = sg.grad(sg.norm(sg.relu(v)), v, create_graph=True)
    (ours,) = sg.grad(sg.sum(g * direction), v, allow_unused=True)
    t = torch.tensor(x, requires_grad=True)
    (tg,) = torch.autograd.grad(torch.linalg.vector_norm(torch.relu(t)), t, create_graph=True)
    (theirs,) = torch.autograd.grad((tg * torch.tensor(direction)).sum(), t)
    np.testing.assert_array_equal(ours, theirs.numpy())


@pytest.mark.parametrize("values", [[-1e-30], [1e-30, -1e-30], [3e-25, 4e-25]])
def test_float32_norm_and_std_of_tiny_values_are_not_lost_to_underflowing_squares(values):
    # in float32 the squares underflow to 0 (the norm came out as 0, its gradient as the zero subgradient);
    # the reductions square in float64, as torch's float32 kernels accumulate (its norm of a 1-element
    # input is |x| too)
    x64 = np.array(values)
    x = sg.Variable(x64.astype(np.float32), requires_grad=True)
    y = sg.norm(x)
    y.backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    np.testing.assert_allclose(y.data, np.sqrt(np.sum(x64 ** 2)), rtol=1e-6)
    np.testing.assert_allclose(x.grad, x64 / np.sqrt(np.sum(x64 ** 2)), rtol=1e-6)
    if len(values) > 1:
        np.testing.assert_allclose(sg.std(x).data, np.std(x64), rtol=1e-6)


def test_prod_gradient_where_the_product_underflows_is_the_product_of_the_others():
    # prod([1e-200, 1e-200]) is 0, and prod / x_i = 0 where the gradient is 1e-200 (torch shares the error)
    x = sg.Variable(np.array([[1e-200, 1e-200], [1e200, 2e200]]), requires_grad=True)
    sg.prod(x, axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[1e-200, 1e-200], [2e200, 1e200]])
