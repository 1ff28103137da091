"""Random graphs of registry ops (up to ~20 nodes: fan-out, a leaf used twice, broadcasting,
reductions, matmuls, shape ops, as the ops' samplers draw them), reduced to a scalar by random
cotangents; every leaf's gradient checked three ways. A failure shrinks to a minimal graph and
prints and saves a standalone reproducer."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratch_grad.testing.strategies import budget, check_graph_example


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@settings(max_examples=budget().graph_examples)
@given(data=st.data())
def test_random_graph_parity(dtype, data):
    check_graph_example(data, dtype, max_ops=budget().max_ops)
