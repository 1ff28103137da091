"""Engine properties the gradient oracle cannot see one op at a time: accumulation across backward
calls, fan-out, no_grad, detach, deep chains, linear-time backward, freed graphs, in-place
mutation detection, and a clear error (op, input, shape, dtype) on every kind of bad input."""
import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scratch_grad as sg
from scratch_grad import AxisError, DomainError, DTypeError, GraphError, ShapeError
from scratch_grad.testing import check_fn


@contextlib.contextmanager
def counting_vjps(*names):
    """Count the calls of each named op's VJPs (the specs are restored after)."""
    counts = {name: 0 for name in names}
    originals = {name: sg.REGISTRY[name].vjps for name in names}

    def counted(name, vjp):
        def wrapper(*args, **params):
            counts[name] += 1
            return vjp(*args, **params)
        return wrapper

    for name in names:
        spec = sg.REGISTRY[name]
        object.__setattr__(spec, "vjps", tuple(None if v is None else counted(name, v) for v in spec.vjps))
    try:
        yield counts
    finally:
        for name, vjps in originals.items():
            object.__setattr__(sg.REGISTRY[name], "vjps", vjps)


# ---- accumulation and fan-out ----------------------------------------------------------------------

def test_gradients_accumulate_across_backward_calls_until_zeroed():
    x = sg.Variable([1.0, -2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data)
    (3.0 * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 3.0)
    x.zero_grad()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data)


@settings(max_examples=25)
@given(consumers=st.integers(2, 12), value=st.floats(-2, 2))
def test_fan_out_sums_the_gradients_of_every_consumer(consumers, value):
    x = sg.Variable(np.array([value, value / 2]), requires_grad=True)
    hidden = sg.tanh(x)
    total = None
    for k in range(1, consumers + 1):
        term = (hidden * float(k)).sum()
        total = term if total is None else total + term
    total.backward()
    expected = (1 - np.tanh(x.data) ** 2) * consumers * (consumers + 1) / 2
    np.testing.assert_allclose(x.grad, expected, rtol=1e-12)


def test_a_value_used_twice_by_one_op_gets_both_gradients():
    x = sg.Variable([1.5, -0.5], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data)
    y = sg.Variable([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    check_fn(lambda a: a @ a, [y.data])         # both operands of matmul are y: three-way check


def test_fan_out_of_an_interior_node_through_broadcasting_matches_torch():
    x = np.array([[0.3, -1.2, 0.7]])
    b = np.array([[0.5], [-0.25]])
    check_fn(lambda x, b: (sg.exp(x + b) * (x - b)).sum(axis=0) @ sg.sin(x).T, [x, b])


# ---- no_grad, detach ----------------------------------------------------------------------------------

def test_no_grad_records_nothing_and_backward_then_fails_clearly():
    x = sg.Variable([1.0, 2.0], requires_grad=True)
    with sg.no_grad():
        y = (x * x).sum()
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(GraphError, match="does not require grad"):
        y.backward()
    assert sg.is_grad_enabled()


def test_no_grad_as_a_decorator_and_enable_grad_inside():
    x = sg.Variable([1.0, 2.0], requires_grad=True)

    @sg.no_grad()
    def frozen(v):
        with sg.enable_grad():
            inner = v * 2.0
        return inner, v * 3.0

    inner, outer = frozen(x)
    assert inner.requires_grad and not outer.requires_grad
    assert sg.is_grad_enabled()


def test_detach_stops_the_gradient_and_shares_the_data():
    x = sg.Variable([1.0, 2.0, 3.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and np.shares_memory(d.data, x.data)
    (d * x).sum().backward()          # only the path through x counts: d is a constant
    np.testing.assert_allclose(x.grad, x.data)


# ---- deep chains, linear-time backward ---------------------------------------------------------------

def test_a_deep_chain_backpropagates_without_recursion():
    x = sg.Variable(np.array([0.5]), requires_grad=True)
    y = x
    depth = 20_000
    for _ in range(depth):
        y = y * 1.0001 + 0.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** depth], rtol=1e-9)


@settings(max_examples=10)
@given(levels=st.integers(2, 40))
def test_backward_runs_each_vjp_once_per_node_even_with_exponentially_many_paths(levels):
    # a ladder: each level feeds both terms of the next, so there are 2^levels paths from x to the
    # output; backprop must still run each node's VJP once (a path-by-path walk would not finish)
    x = sg.Variable(np.array([0.1, 0.2]), requires_grad=True)
    with counting_vjps("sin", "mul", "add") as counts:
        y = x
        for _ in range(levels):
            s = sg.sin(y)
            y = s * 0.5 + s * 0.25          # fan-out of s into two consumers
        y.sum().backward()
    # one VJP call per node and input that needs a gradient: add has two such inputs, mul one
    assert counts == {"sin": levels, "mul": 2 * levels, "add": 2 * levels}
    g = np.ones(2)
    value = x.data
    for _ in range(levels):             # the chain rule by hand: y -> 0.75 sin(y)
        g = g * 0.75 * np.cos(value)
        value = 0.75 * np.sin(value)
    # g now holds d(final)/d(x) accumulated from the output back, in forward order of factors
    np.testing.assert_allclose(x.grad, g, rtol=1e-12)


# ---- freed graphs, in-place mutation ---------------------------------------------------------------------

def test_backward_through_a_freed_graph_fails_clearly_and_retain_graph_allows_it():
    x = sg.Variable([1.0, 2.0], requires_grad=True)
    y = (sg.exp(x) * 2.0).sum()
    y.backward()
    with pytest.raises(GraphError, match="already freed.*retain_graph=True"):
        y.backward()
    x.zero_grad()
    z = (sg.exp(x) * 2.0).sum()
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_allclose(x.grad, 4 * np.exp(x.data))


@pytest.mark.parametrize("mutate", [lambda v: v.add_(1.0), lambda v: v.mul_(2.0), lambda v: v.sub_(1.0),
                                    lambda v: v.zero_(), lambda v: v.__setitem__(0, 5.0)],
                         ids=["add_", "mul_", "sub_", "zero_", "setitem"])
def test_a_saved_input_mutated_in_place_is_detected_at_backward(mutate):
    x = sg.Variable([1.0, 2.0], requires_grad=True)
    w = sg.Variable([3.0, 4.0])
    y = (x * w).sum()
    mutate(w)
    with pytest.raises(GraphError, match=r"op 'mul': input 1 \(shape \(2,\) float64\) was modified in place"):
        y.backward()


def test_the_version_check_covers_every_node_recorded_before_the_latest_in_place_change():
    # backward skips the version check of nodes recorded after the latest in-place change anywhere;
    # interleave changes and recording so that a stale node sits between fresh ones
    w = sg.Variable([3.0, 4.0])
    x = sg.Variable([1.0, 2.0], requires_grad=True)
    w.add_(1.0)                               # before recording: fine, mul saves version 1
    fresh = (x * w).sum()
    other = sg.Variable([0.0, 0.0])
    other.add_(1.0)                           # an unrelated change: fresh is still valid
    fresh.backward()
    np.testing.assert_array_equal(x.grad, [4.0, 5.0])
    stale = x * w                             # recorded at w's version 1
    w.mul_(2.0)
    later = sg.sin(stale).sum()               # recorded after the change, on top of the stale node
    with pytest.raises(GraphError, match=r"op 'mul': input 1 .* \(version 1 -> 2\)"):
        later.backward()


def test_replacing_data_is_detected_and_data_is_read_only():
    x = sg.Variable([1.0, 2.0], requires_grad=True)
    y = sg.sin(x).sum()
    with pytest.raises(ValueError):
        x.data[0] = 3.0                   # read-only: saved arrays cannot change silently
    x.data = np.array([0.0, 0.0])
    with pytest.raises(GraphError, match="modified in place"):
        y.backward()


# ---- clear errors on bad input (each error path) ----------------------------------------------------------

def test_non_scalar_backward_needs_a_gradient():
    y = sg.Variable([1.0, 2.0], requires_grad=True) * 2.0
    with pytest.raises(GraphError, match=r"shape \(2,\) float64.*single-element output"):
        y.backward()


def test_a_gradient_of_the_wrong_shape_or_dtype_is_rejected():
    y = sg.Variable([1.0, 2.0], requires_grad=True) * 2.0
    with pytest.raises(ShapeError, match=r"gradient has shape \(3,\) but the output has shape \(2,\)"):
        y.backward(np.ones(3))
    with pytest.raises(DTypeError, match="gradient must be floating point, got int64"):
        y.backward(np.ones(2, dtype=np.int64))


def test_unsupported_data_and_integer_grads_are_rejected():
    with pytest.raises(DTypeError, match="cannot make an array from list"):
        sg.Variable([[1.0], [1.0, 2.0]])
    with pytest.raises(DTypeError, match=r"unsupported dtype object \(shape \(\)\)"):
        sg.Variable({"a": 1})
    with pytest.raises(DTypeError, match="only floating-point data can require grad, got int64"):
        sg.Variable(np.array([1, 2]), requires_grad=True)
    with pytest.raises(DTypeError, match="unsupported dtype"):
        sg.Variable(np.array(["a"]))


def test_grad_reports_unused_inputs_and_inputs_without_grad():
    x = sg.Variable([1.0], requires_grad=True)
    unused = sg.Variable([2.0], requires_grad=True)
    constant = sg.Variable([3.0])
    y = (x * 2.0).sum()
    with pytest.raises(GraphError, match=r"input 1 \(shape \(1,\) float64\) was not used"):
        sg.grad(y, [x, unused], retain_graph=True)
    assert sg.grad(y, [x, unused], allow_unused=True, retain_graph=True)[1] is None
    with pytest.raises(GraphError, match="input 0 .* does not require grad"):
        sg.grad(y, [constant])
    with pytest.raises(ShapeError, match="2 outputs but 1 grad_outputs"):
        sg.grad([y, y], [x], grad_outputs=[np.ones(())])


def test_op_errors_name_the_op_the_inputs_shapes_and_dtypes():
    a = sg.Variable(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ShapeError, match=r"op 'add'.*input 0: shape \(2, 3\) float64; input 1: shape \(4,\) float64"):
        a + np.ones(4)
    with pytest.raises(AxisError, match="op 'sum'"):
        a.sum(axis=5)
    with pytest.raises(DomainError, match=r"op 'log': input 0 \(shape \(2,\) float64\).*x > 0.*index \(1,\)"):
        sg.log(sg.Variable([1.0, -1.0], requires_grad=True))
    with pytest.raises(GraphError, match="non-leaf"):
        (a * 2.0).requires_grad_(False)
