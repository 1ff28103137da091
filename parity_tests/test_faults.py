"""faults.py: an exception is the engine's (a finding) or the checker's own (a loud bug), told apart by
where it was raised, and attributed to its op when the traceback shows it."""
import numpy as np

import scratch_grad as sg
from scratch_grad.testing.compiled import program_function
from scratch_grad.testing.faults import CheckerError, checker_error, describe, fault_op, origin, raised_by_checker
from scratch_grad.testing.mutate import plant
from scratch_grad.testing.program import Program
from scratch_grad.trace import Ref, Step


def _raised(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the exception is the subject
        return exc
    raise AssertionError("nothing raised")


def _backward_of_sin():
    x = sg.Variable(np.linspace(-1, 1, 4), requires_grad=True)
    sg.sin(x).sum().backward()


def test_an_exception_raised_by_numpy_inside_a_vjp_is_the_engines_and_names_the_op():
    spec = sg.REGISTRY["sin"]
    original = spec.vjps

    def reshaping_vjp(g, out, x):
        return np.reshape(g, (5,))              # NumPy raises, on behalf of this op code
    object.__setattr__(spec, "vjps", (reshaping_vjp,))
    try:
        exc = _raised(_backward_of_sin)
    finally:
        object.__setattr__(spec, "vjps", original)
    assert isinstance(exc, ValueError)
    assert origin(exc) == "engine" and not raised_by_checker(exc)
    assert fault_op(exc) == "sin"
    assert describe(exc).startswith("ValueError: ") and "in reshaping_vjp" in describe(exc)


def test_a_planted_mutant_is_engine_code_though_it_lives_in_the_testing_package():
    for klass in ("vjp_raises", "on_0d"):                  # raised in planted.py's wrapper itself
        with plant(klass, "exp", 0):
            exc = _raised(lambda: sg.exp(sg.Variable(np.array(1.0), requires_grad=True)).sum().backward())
        assert origin(exc) == "engine", klass
        assert fault_op(exc) == "exp", klass


def test_an_exception_of_the_checkers_own_code_is_the_checkers():
    steps = [Step(sg.REGISTRY["sin"], (Ref("leaf", 3),), {})]         # there is no leaf 3
    program = Program([np.ones(2)], [True], [], steps, [0], [np.ones(2)])
    exc = _raised(lambda: program_function(program)(sg.Variable(np.ones(2))))
    assert isinstance(exc, IndexError)
    assert raised_by_checker(exc)
    error = checker_error(exc, "a test")
    assert isinstance(error, CheckerError)
    assert "bug in the checker (a test)" in str(error) and "compiled.py" in str(error)


def test_numpy_raising_for_the_checker_is_the_checkers():
    from scratch_grad.testing import compiled
    exc = _raised(lambda: compiled._where(np.zeros(0), np.zeros(0)))     # np.argmax of nothing
    assert isinstance(exc, ValueError)
    assert raised_by_checker(exc)


def test_user_code_and_the_engine_are_code_under_check():
    exc = _raised(lambda: sg.reshape(sg.Variable(np.ones(3)), (4,)))
    assert origin(exc) == "engine" and fault_op(exc) == "reshape"

    def user_function():
        raise KeyError("a user's bug")
    assert origin(_raised(user_function)) == "engine"
    assert fault_op(_raised(user_function)) is None
