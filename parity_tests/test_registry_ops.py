"""Every registry op, in float64 and float32, checked three ways on hypothesis-drawn inputs.

The parametrization reads the registry (never a hand-kept list): an op added to the registry is
collected here with no test written (test_registry_driven.py proves it). Each example draws
shapes (0-d, size-1 axes, broadcasting pairs, batched matmuls, random axes and keepdims) and
values from the op's own sampler through HypothesisGen, sometimes as non-contiguous views, and
for non-smooth ops sometimes exactly at kinks and ties; then forward parity, VJP vs torch, VJP vs
finite differences and, where declared, second order are checked (scratch_grad.testing.oracle).
"""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratch_grad.ops import REGISTRY
from scratch_grad.testing import op_names
from scratch_grad.testing.strategies import budget, check_edge_sweep, check_op_example

DTYPES = ("float64", "float32")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", op_names())
@settings(max_examples=budget().op_examples)
@given(data=st.data())
def test_op_parity(name, dtype, data):
    check_op_example(data, REGISTRY[name], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", op_names())
def test_op_edge_sweep(name, dtype):
    """The op's edge samples on a schedule (0-d, empty, non-finite, ulp neighbours...): what the random
    draws above reach only sometimes."""
    check_edge_sweep(REGISTRY[name], dtype)
