"""The generator protocol (testing/gen.py: Gen): RandomGen, HypothesisGen and the graph builder's
_WiringGen are held to one set of methods with the same parameters, so a sampler written against one
runs under all three."""
import inspect

from scratch_grad.testing.gen import Gen, RandomGen
from scratch_grad.testing.graphs import _WiringGen
from scratch_grad.testing.strategies import HypothesisGen


def _methods(cls):
    return {name: value for name, value in vars(cls).items() if callable(value) and not name.startswith("_")}


def _parameters(function):
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values()]


def _mismatches(cls, exempt=()):
    """The protocol methods cls lacks (besides `exempt`) and those whose parameters differ."""
    protocol, methods = _methods(Gen), _methods(cls)
    missing = set(protocol) - set(methods) - set(exempt)
    differing = {name for name in set(protocol) & set(methods)
                 if _parameters(methods[name]) != _parameters(protocol[name])}
    return missing, differing


def test_every_generator_has_every_method_of_the_protocol_with_its_parameters():
    assert {"array", "scalar", "shape", "axis", "permutation", "broadcastable_shapes"} <= set(_methods(Gen))
    for cls in (RandomGen, HypothesisGen):
        assert _mismatches(cls) == (set(), set()), cls.__name__
    # the wiring generator answers a sampler's questions inside a graph; cotangents are never drawn there
    assert _mismatches(_WiringGen, exempt=("plain",)) == (set(), set())


def test_the_check_sees_a_missing_method_and_a_changed_parameter():
    class Drifted:
        plain = edge_mode = integer = real = choice = boolean = broadcastable_shapes = RandomGen.integer
        permutation, axis, array, scalar, integers = (RandomGen.permutation, RandomGen.axis, RandomGen.array,
                                                      RandomGen.scalar, RandomGen.integers)

        def shape(self, min_dims=0, max_dims=3):         # lost min_side and max_side
            return ()
    missing, differing = _mismatches(Drifted)
    assert "mask" in missing and "shape" in differing
