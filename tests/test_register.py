"""register() is the one place an op is added: it makes `sg.<name>`, `scratch_grad.ops.<name>` and, where the
entry asks for it, the Variable method, for the package's ops and for a user's op registered from outside."""
import numpy as np
import pytest
import torch

import scratch_grad as sg
from scratch_grad import engine
from scratch_grad.ops import REGISTRY
from scratch_grad.ops.registry import REAL, OpSpec, register, unregister


def _cube_spec(name, method=None):
    return OpSpec(name, lambda x: x ** 3, (lambda g, out, x: g * 3 * x * x,), lambda x: x ** 3, (REAL,),
                  "elementwise", method=method)


@pytest.fixture
def user_op():
    """A user's op, registered as their module would, and removed after the test."""
    names = []

    def make(name, method=None):
        names.append(name)
        return register(_cube_spec(name, method))
    yield make
    for name in names:
        unregister(name)


def test_a_users_op_becomes_sg_name_and_a_variable_method(user_op):
    fn = user_op("cube_user", method=True)
    assert sg.cube_user is fn and sg.ops.cube_user is fn
    from scratch_grad.ops import cube_user
    assert cube_user is fn
    x = sg.Variable([1.0, -2.0], requires_grad=True)
    y = x.cube_user()
    assert y._spec is REGISTRY["cube_user"]
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 12.0])
    assert sg.cube_user(np.array([2.0])) == 8.0          # raw arrays: NumPy, no graph


def test_an_entry_names_its_method_or_asks_for_none(user_op):
    user_op("cube_named", method="cubed")
    user_op("cube_plain")
    x = sg.Variable([2.0])
    assert x.cubed().item() == 8.0
    assert not hasattr(sg.Variable, "cube_named") and not hasattr(sg.Variable, "cube_plain")
    assert sg.cube_plain(x).item() == 8.0


def test_unregister_removes_the_function_the_method_and_the_entry():
    register(_cube_spec("cube_gone", method=True))
    unregister("cube_gone")
    assert "cube_gone" not in REGISTRY
    assert not hasattr(sg.Variable, "cube_gone")
    with pytest.raises(AttributeError, match="module 'scratch_grad' has no attribute 'cube_gone'"):
        sg.cube_gone
    with pytest.raises(AttributeError, match="scratch_grad.ops"):
        sg.ops.cube_gone


def test_a_method_may_not_replace_a_variable_attribute_and_a_name_may_not_replace_a_public_function():
    for taken in ("data", "backward", "sum", "exp"):
        with pytest.raises(ValueError, match=f"Variable already has an attribute '{taken}'"):
            register(_cube_spec("cube_clash", method=taken))
        assert "cube_clash" not in REGISTRY and not hasattr(sg, "cube_clash")
    assert sg.Variable.exp is sg.exp and isinstance(sg.Variable.data, property)
    with pytest.raises(ValueError, match="the name is taken by the public function"):
        register(_cube_spec("power"))                  # NumPy's alias of pow
    assert sg.power is sg.pow
    with pytest.raises(ValueError, match="registered twice"):
        register(_cube_spec("exp"))


def test_an_entry_dropped_from_the_registry_directly_can_be_registered_again():
    """Older tests clean up with REGISTRY.pop: registering the same name afterwards must still work."""
    register(_cube_spec("cube_again"))
    REGISTRY.pop("cube_again")
    try:
        fn = register(_cube_spec("cube_again", method=True))
        assert sg.cube_again is fn and sg.Variable.cube_again is fn
    finally:
        unregister("cube_again")


def test_every_op_entry_that_asks_for_a_method_has_it_and_is_its_public_function():
    methods = {name: spec.method for name, spec in REGISTRY.items() if spec.method}
    assert {"exp", "log", "tanh", "matmul", "pow", "flip"} <= set(methods)
    for name, method in methods.items():
        attribute = name if method is True else method
        assert getattr(sg.Variable, attribute) is getattr(sg, name), name
    assert sg.Variable.astype is sg.astype                # exported, outside the registry


def test_variable_operators_are_the_ops_of_the_one_table_in_the_engine():
    bound = {(attribute, op) for attribute, op, make in engine.VARIABLE_OPERATORS if make is None}
    assert ("__add__", "add") in bound and ("__getitem__", "take") in bound
    for attribute, op in bound:
        assert getattr(sg.Variable, attribute) is getattr(engine.OPS, op) is getattr(sg, op), attribute
    x = sg.Variable(np.arange(6.0).reshape(2, 3), requires_grad=True)
    y = (2 - x) / (1 + x) * x ** 2 @ x.T + (-x).sum(axis=1, keepdims=True).reshape(2, 1) + abs(x)[0, :2].mean()
    t = torch.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    ty = (2 - t) / (1 + t) * t ** 2 @ t.T + (-t).sum(dim=1, keepdim=True).reshape(2, 1) + t.abs()[0, :2].mean()
    y.backward(np.ones((2, 2)))
    ty.backward(torch.ones(2, 2))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy())
    np.testing.assert_allclose(x.grad, t.grad.numpy())
