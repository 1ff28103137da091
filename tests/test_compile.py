"""sg.compile: replays equal eager mode as parameters change, new signatures trace again, what would
freeze in a trace is refused while tracing, and the compiled node behaves as any op for the engine
(version checks, retain_graph, create_graph, no_grad, the three-way checker)."""
import tracemalloc

import numpy as np
import pytest

import scratch_grad as sg
from scratch_grad.errors import DomainError, DTypeError, GraphError
from scratch_grad.testing import CheckFailure, check_fn


def _mlp(rng, dtype=np.float64, sizes=(6, 5, 3)):
    weights = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        weights.append(sg.Variable(rng.standard_normal((fan_in, fan_out)).astype(dtype) / np.sqrt(fan_in),
                                   requires_grad=True))
        weights.append(sg.Variable((0.1 * rng.standard_normal(fan_out)).astype(dtype), requires_grad=True))

    def loss(x, t):
        h = x
        for k in range(0, len(weights), 2):
            h = sg.sigmoid(h @ weights[k] + weights[k + 1])
        return ((h - t) ** 2).sum() / (2 * x.shape[0])
    return weights, loss


def _grads(weights):
    grads = [w.grad.copy() for w in weights]
    for w in weights:
        w.grad = None
    return grads


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_training_with_a_compiled_loss_equals_eager_training_bit_for_bit(dtype):
    """Twenty SGD steps, each on a new batch: the replays see the parameters' in-place updates."""
    rng = np.random.default_rng(0)
    eager_weights, eager_loss = _mlp(np.random.default_rng(1), dtype)
    weights, loss = _mlp(np.random.default_rng(1), dtype)
    compiled = sg.compile(loss)
    for step in range(20):
        x = sg.Variable(rng.random((4, 6)).astype(dtype))
        t = sg.Variable(rng.random((4, 3)).astype(dtype))
        expected = eager_loss(x, t)
        expected.backward()
        got = compiled(x, t)
        got.backward()
        assert got.item() == expected.item() and got.dtype == expected.dtype
        for ours, theirs in zip(_grads(weights), _grads(eager_weights)):
            assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
        for w in weights + eager_weights:
            w.sub_(0.01 * np.asarray(w.data))        # an in-place update, as an optimizer makes
    assert compiled.trace_count == 1


def test_a_new_signature_traces_again_and_the_old_trace_is_kept():
    weights, loss = _mlp(np.random.default_rng(2))
    compiled = sg.compile(loss)
    rng = np.random.default_rng(3)
    small = (sg.Variable(rng.random((4, 6))), sg.Variable(rng.random((4, 3))))
    large = (sg.Variable(rng.random((7, 6))), sg.Variable(rng.random((7, 3))))
    single = (sg.Variable(rng.random((4, 6)).astype(np.float32)), sg.Variable(rng.random((4, 3)).astype(np.float32)))
    for args in (small, large, small, single, large):
        assert compiled(*args).item() == loss(*args).item()
    assert compiled.trace_count == 3
    compiled.reset()
    compiled(*small)
    assert compiled.trace_count == 4


def test_requires_grad_and_grad_mode_select_traces():
    w = sg.Variable(np.ones((3, 2)), requires_grad=True)
    compiled = sg.compile(lambda x: (x @ w).sum())
    x = sg.Variable(np.arange(6.0).reshape(2, 3))
    compiled(x).backward()
    assert x.grad is None and np.array_equal(w.grad, x.data.T @ np.ones((2, 2)))
    w.grad = None
    x.requires_grad_(True)
    compiled(x).backward()                                   # now x gets a gradient too
    assert np.array_equal(x.grad, np.ones((2, 2)) @ w.data.T)
    with sg.no_grad():
        out = compiled(x)
    assert not out.requires_grad and out.item() == (x.data @ w.data).sum()
    assert compiled.trace_count == 3


def test_hashable_arguments_select_traces_by_value():
    w = sg.Variable(np.ones(3), requires_grad=True)
    compiled = sg.compile(lambda x, scale, mode: (x * w * scale).sum() if mode == "sum" else (x * w * scale).mean())
    x = sg.Variable(np.arange(3.0))
    assert compiled(x, 2.0, "sum").item() == 6.0
    assert compiled(x, 3.0, "sum").item() == 9.0
    assert compiled(x, 3.0, "mean").item() == 3.0
    assert compiled(x, 2.0, "sum").item() == 6.0
    assert compiled.trace_count == 3


def test_the_same_variable_twice_and_then_two_variables():
    compiled = sg.compile(lambda a, b: (a * b).sum())
    x = sg.Variable(np.array([1.0, 2.0]), requires_grad=True)
    y = sg.Variable(np.array([3.0, 5.0]), requires_grad=True)
    compiled(x, x).backward()
    assert np.array_equal(x.grad, 2 * x.data)
    x.grad = None
    compiled(x, y).backward()
    assert np.array_equal(x.grad, y.data) and np.array_equal(y.grad, x.data)
    assert compiled(y, y).item() == 34.0


def test_raw_array_arguments_are_read_at_every_call_and_saved_by_value():
    w = sg.Variable(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    compiled = sg.compile(lambda x: (sg.sin(w) * x).sum())
    x = np.array([0.5, 1.0, 2.0])
    assert compiled(x).item() == pytest.approx((np.sin(w.data) * x).sum())
    x2 = np.array([4.0, 5.0, 6.0])
    out = compiled(x2)
    x2[:] = 0.0                                    # changed after the call: the gradient uses its old value
    out.backward()
    assert np.array_equal(w.grad, np.cos(w.data) * np.array([4.0, 5.0, 6.0]))
    assert compiled.trace_count == 1


def test_detach_and_no_grad_inside_are_recomputed_at_every_call():
    def fn(x):
        with sg.no_grad():
            scale = sg.exp(x).sum()
        return (x * x.detach() * scale).sum()
    compiled = sg.compile(fn)
    for values in ([1.0, 2.0], [-1.0, 0.5], [3.0, 3.0]):
        x = sg.Variable(np.array(values), requires_grad=True)
        out = compiled(x)
        out.backward()
        x_eager = sg.Variable(np.array(values), requires_grad=True)
        fn(x_eager).backward()
        assert out.item() == fn(x_eager).item()
        assert np.array_equal(x.grad, x_eager.grad)                   # d/dx of x * c: c, no gradient via detach
    assert compiled.trace_count == 1


def test_a_compiled_function_inside_another_is_inlined():
    w = sg.Variable(np.array([0.5, -1.5]), requires_grad=True)
    inner = sg.compile(lambda x: sg.tanh(x * w))
    outer = sg.compile(lambda x: (inner(x) ** 2).sum())
    x = sg.Variable(np.array([1.0, 2.0]))
    outer(x).backward()
    expected = 2 * np.tanh(x.data * w.data) * (1 - np.tanh(x.data * w.data) ** 2) * x.data
    np.testing.assert_allclose(w.grad, expected, rtol=1e-12)
    assert inner.trace_count == 0 and outer.trace_count == 1


def test_a_domain_error_at_a_replay_is_raised_as_in_eager_mode():
    compiled = sg.compile(lambda x: sg.log(x).sum())
    compiled(sg.Variable(np.array([1.0, 2.0])))
    with pytest.raises(DomainError, match="op 'log'"):
        compiled(sg.Variable(np.array([1.0, -2.0])))


@pytest.mark.parametrize("body, what", [
    (lambda x: x * float(x.sum()), "float()"),
    (lambda x: x * x.sum().item(), "item()"),
    (lambda x: x * (2.0 if x.sum() > 0 else 1.0), "comparison"),
    (lambda x: x * np.asarray(x).max(), "NumPy conversion"),
    (lambda x: sg.Variable(x.data * 2) * x, ".data"),
    (lambda x: x.sum() if x.sum() else x.mean(), "comparison|bool"),
])
def test_value_reads_while_tracing_are_refused(body, what):
    compiled = sg.compile(lambda x: body(x).sum())
    with pytest.raises(GraphError, match=f"read the values of a Variable .*({what})"):
        compiled(sg.Variable(np.array([1.0, 2.0]), requires_grad=True))
    assert compiled.trace_count == 0


def test_in_place_changes_backward_and_dropout_inside_are_refused():
    w = sg.Variable(np.ones(2), requires_grad=True)
    x = sg.Variable(np.array([1.0, 2.0]))

    def updates(x):
        w.sub_(0.1)
        return (w * x).sum()

    def steps(x):
        loss = (w * x).sum()
        loss.backward()
        return loss
    with pytest.raises(GraphError, match=r"in place \(sub_\)"):
        sg.compile(updates)(x)
    with pytest.raises(GraphError, match=r"backward\(\) called inside a compiled function"):
        sg.compile(steps)(x)
    with pytest.raises(GraphError, match="dropout"):
        sg.compile(lambda x: sg.dropout(w * x, p=0.5).sum())(x)
    assert np.array_equal(w.data, np.ones(2)) and w.grad is None
    assert sg.compile(lambda x: sg.dropout(w * x, p=0.5, training=False).sum())(x).item() == 3.0


def test_bad_arguments_and_results_name_what_is_wrong():
    with pytest.raises(DTypeError, match="argument 1 is a list"):
        sg.compile(lambda x, ws: x.sum())(sg.Variable(np.ones(2)), [sg.Variable(np.ones(2))])
    with pytest.raises(GraphError, match="must return one Variable, got NoneType"):
        sg.compile(lambda x: None)(sg.Variable(np.ones(2)))
    with pytest.raises(GraphError, match="no op computed inside it"):
        sg.compile(lambda x: x)(sg.Variable(np.ones(2)))
    with pytest.raises(TypeError, match="positional arguments only"):
        sg.compile(lambda x: x.sum())(x=sg.Variable(np.ones(2)))


def test_a_parameter_changed_between_forward_and_backward_is_caught_as_in_eager_mode():
    w = sg.Variable(np.array([1.0, 2.0]), requires_grad=True)
    compiled = sg.compile(lambda x: (w * w * x).sum())
    out = compiled(sg.Variable(np.array([3.0, 4.0])))
    w.sub_(np.array([0.5, 0.5]))
    with pytest.raises(GraphError, match="modified in place"):
        out.backward()


def test_retain_graph_accumulates_and_a_freed_graph_is_refused():
    w = sg.Variable(np.array([1.0, 2.0]), requires_grad=True)
    compiled = sg.compile(lambda x: (sg.exp(w) * x).sum())
    out = compiled(sg.Variable(np.array([3.0, 4.0])))
    out.backward(retain_graph=True)
    out.backward()
    np.testing.assert_array_equal(w.grad, 2 * np.exp(w.data) * np.array([3.0, 4.0]))
    with pytest.raises(GraphError, match="already freed"):
        out.backward()


def test_double_backward_through_a_compiled_function_equals_eager_mode():
    w = sg.Variable(np.array([0.3, -0.7, 1.1]), requires_grad=True)

    def fn(x):
        return (sg.tanh(x * w) ** 3).sum()
    compiled = sg.compile(fn)
    x = sg.Variable(np.array([1.0, 2.0, -1.0]))
    v = np.array([1.0, -2.0, 0.5])
    results = []
    for f in (fn, compiled, compiled):
        (g,) = sg.grad(f(x), w, create_graph=True)
        (hvp,) = sg.grad((g * v).sum(), w)
        results.append((g.data.copy(), hvp))
    for g, hvp in results[1:]:
        np.testing.assert_array_equal(g, results[0][0])
        np.testing.assert_allclose(hvp, results[0][1], rtol=1e-13)


def test_the_three_way_checker_checks_compiled_functions_and_catches_a_wrong_vjp():
    rng = np.random.default_rng(4)
    w = sg.Variable(rng.standard_normal((3, 2)), requires_grad=True)
    compiled = sg.compile(lambda x: sg.sigmoid(x @ w))
    check_fn(compiled, [rng.standard_normal((4, 3))])
    with_aux = sg.compile(lambda x: (sg.sigmoid(x @ w), x @ w), has_aux=True)   # the output is checked
    check_fn(with_aux, [rng.standard_normal((4, 3))])
    spec = sg.REGISTRY["sigmoid"]
    right = spec.vjps
    object.__setattr__(spec, "vjps", (lambda g, out, x: 1.01 * right[0](g, out, x),))
    try:
        broken = sg.compile(lambda x: sg.sigmoid(x @ w))
        with pytest.raises(CheckFailure, match="compiled <lambda>"):
            check_fn(broken, [rng.standard_normal((4, 3))])
        broken = sg.compile(lambda x: (sg.sigmoid(x @ w), x @ w), has_aux=True)
        with pytest.raises(CheckFailure, match="compiled <lambda>"):
            check_fn(broken, [rng.standard_normal((4, 3))])
    finally:
        object.__setattr__(spec, "vjps", right)


def test_code_shows_the_generated_forward_backward_and_guards():
    w = sg.Variable(np.ones((3, 2)), requires_grad=True)
    compiled = sg.compile(lambda x: sg.tanh(x @ w).sum())
    assert compiled.code() is None
    compiled(sg.Variable(np.ones((4, 3))))
    code = compiled.code()
    for part in ("def forward(", "# matmul", "# tanh", "def backward(g, saved):", "def run(*args):", "return MISS"):
        assert part in code


def _chain(x, steps=8):
    y = x
    for _ in range(steps):
        y = y * 1.5 + 0.5          # mul's and add's VJPs read neither their input nor their output
    return y.sum()


def _retained_and_backward_peak(fn, x):
    """Bytes NumPy still holds after fn(x) (what the graph keeps for backward), and the peak above
    that during backward(). NumPy reports its allocations to tracemalloc."""
    fn(x).backward()                               # a compiled function traces here
    x.grad = None
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = fn(x)
        retained = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.reset_peak()
        during = tracemalloc.get_traced_memory()[0]
        out.backward()
        backward_peak = tracemalloc.get_traced_memory()[1] - during
    finally:
        tracemalloc.stop()
    return retained, backward_peak


def test_a_compiled_function_keeps_only_what_its_backward_reads():
    """16 ops on a 1 MB array: eager mode's graph holds every value (its Variables are its nodes);
    the compiled forward frees each value no VJP reads, and the backward frees each gradient once its
    node has run, as NumPy code by hand would."""
    megabyte = 2 ** 20
    x = sg.Variable(np.random.default_rng(0).standard_normal(megabyte // 8), requires_grad=True)
    eager_retained, eager_peak = _retained_and_backward_peak(_chain, x)
    retained, backward_peak = _retained_and_backward_peak(sg.compile(_chain), x)
    assert eager_retained > 15 * megabyte         # the probe sees NumPy's arrays
    # one array: sum's input, whose shape its VJP reads
    assert retained < 1.5 * megabyte, f"the compiled forward kept {retained / megabyte:.1f} MB for backward"
    # the seed broadcast to x's shape, two gradients in flight, x.grad: not one per op
    assert backward_peak < 4.5 * megabyte, f"the compiled backward peaked at {backward_peak / megabyte:.1f} MB"
    assert eager_peak < 4.5 * megabyte


def test_reads_finds_the_parameters_a_vjp_reads_and_assumes_all_when_unsure():
    from functools import partial

    from scratch_grad.compiler.analysis import reads as _reads
    assert _reads(lambda g, out, x: g * out, 3) == (True, True, False)
    assert _reads(lambda g, out, x, y: g, 4) == (True, False, False, False)

    def captured(g, out, x):
        return (lambda: g * x)()                   # read inside an inner function
    assert _reads(captured, 3) == (True, False, True)

    def rebound(g, out, x):
        x = 2.0                                    # a read of the new value counts too: erring on keeping
        return g * x
    assert _reads(rebound, 3) == (True, False, True)
    class Rule:
        def vjp(self, g, out, x):
            return g
    for unsure in (lambda g, *rest: g, lambda g, out, x: locals()["x"], partial(lambda g, out, x: g),
                   Rule().vjp,                     # a bound method: its parameters are shifted by self
                   lambda g, out: g):              # fewer parameters than arguments: *args or an error
        assert _reads(unsure, 3) == (True, True, True)


def test_has_aux_returns_the_aux_values_of_eager_mode_without_gradient():
    rng = np.random.default_rng(0)
    w = sg.Variable(rng.standard_normal((5, 3)), requires_grad=True)

    def loss_and_logits(x, t):
        logits = sg.tanh(x @ w)
        return sg.cross_entropy(logits, t), (logits, logits.sum())
    compiled = sg.compile(loss_and_logits, has_aux=True)
    t = np.array([0, 2, 1, 2])
    for _ in range(2):                              # the trace, then a replay
        x = rng.standard_normal((4, 5))
        loss, (logits, total) = compiled(x, t)
        loss.backward()
        grad_compiled, w.grad = w.grad, None
        eager_loss, (eager_logits, eager_total) = loss_and_logits(sg.Variable(x), t)
        eager_loss.backward()
        assert np.array_equal(grad_compiled, w.grad)
        w.grad = None
        assert np.array_equal(logits.data, eager_logits.data) and np.array_equal(total.data, eager_total.data)
        assert loss.requires_grad and not logits.requires_grad and not total.requires_grad
    with pytest.raises(GraphError, match="does not require grad"):
        logits.sum().backward()
    as_list = sg.compile(lambda x: ((x @ w).sum(), [x @ w, w]), has_aux=True)
    _, aux = as_list(sg.Variable(np.ones((2, 5))))
    assert isinstance(aux, list) and aux[0].shape == (2, 3) and np.array_equal(aux[1].data, w.data)


@pytest.mark.parametrize("fn, has_aux, message", [
    (lambda x: (x.sum(), x * 2), False, "returned a tuple; .* has_aux=True"),
    (lambda x: x.sum(), True, r"must return a pair \(output, aux\), got Variable"),
    (lambda x: (x.sum(), x * 2, x), True, "got a tuple of 3"),
    (lambda x: (x.sum(), {"y": x * 2}), True, "aux of dict"),
    (lambda x: (x.sum(), sg.Variable(np.zeros(2))), True, "aux value 0 .* would be frozen"),
])
def test_wrong_results_with_or_without_has_aux_are_refused(fn, has_aux, message):
    with pytest.raises(GraphError, match=message):
        sg.compile(fn, has_aux=has_aux)(sg.Variable(np.ones(3), requires_grad=True))
