"""Per-op timings with pytest-benchmark: every registry op, forward + backward, scratch_grad beside torch.

The cases come from the registry and each op's own sampler, so a new op is timed with nothing to write.
One benchmark group per op, so pytest-benchmark's table puts the two engines side by side:

    pip install -c constraints.txt -e ".[bench]"
    pytest benchmarks/bench_ops.py --benchmark-group-by=group              # all ops, shapes up to 4 per side
    pytest benchmarks/bench_ops.py --benchmark-group-by=group -k "sigmoid or matmul"
    SCRATCH_GRAD_BENCH_SIDE=64 SCRATCH_GRAD_BENCH_DTYPE=float32 pytest benchmarks/bench_ops.py ...
    pytest benchmarks/bench_ops.py --benchmark-autosave   # then, after a change: --benchmark-compare

What is timed: the op's public function on prepared leaves (Variables / tensors made beforehand), then
the gradients of <output, cotangent> for every differentiable input (`scratch_grad.grad`,
`torch.autograd.grad`). Like the side-by-side runner, each case is first checked (scratch_grad's output and
gradients against torch's) and a case that disagrees fails instead of being timed. Timings are never
asserted; the test suite runs this file once with --benchmark-disable (tests/test_bench_ops.py), which
calls every case once, to prove that it runs and agrees. The headline numbers stay with
`scratch-grad bench` (ratios measured in one process, interleaved).
"""
import functools
import os

import numpy as np
import pytest

import scratch_grad as sg
from scratch_grad.ops import REGISTRY
from scratch_grad.ops.registry import make_function
from scratch_grad.ops.sampling import sample_inputs
from scratch_grad.testing.gen import RandomGen
from scratch_grad.testing.program import single_op_program

torch = pytest.importorskip("torch")

SIDE = int(os.environ.get("SCRATCH_GRAD_BENCH_SIDE", "4"))            # the sampler's largest dimension
DTYPE = np.dtype(os.environ.get("SCRATCH_GRAD_BENCH_DTYPE", "float64"))
SEED = int(os.environ.get("SCRATCH_GRAD_BENCH_SEED", "0"))
TOLERANCE = {np.dtype("float64"): 1e-9, np.dtype("float32"): 1e-4}   # relative to the largest magnitude


def op_case(name):
    """The op's public function, its arguments and params, the differentiable input positions, a cotangent."""
    spec = REGISTRY[name]
    gen = RandomGen(seed=SEED, dtype=DTYPE, max_side=SIDE, layouts=False)   # smooth points, contiguous inputs
    inputs, params = sample_inputs(spec, gen)
    program = single_op_program(spec, inputs, params, cotangent_gen=gen)
    return spec, inputs, params, program


def scratch_grad_call(spec, inputs, params, program):
    function = make_function(spec)     # the same closure `register` returned for this op
    leaf_positions = iter(range(len(program.leaves)))
    args, wanted = [], []
    for ref in program.steps[0].args:
        if ref.kind == "leaf":
            variable = sg.Variable(program.leaves[next(leaf_positions)], requires_grad=True)
            args.append(variable)
            wanted.append(variable)
        else:
            args.append(program.constants[ref.index])
    cotangent = program.cotangents[0]

    def forward_backward():
        out = function(*args, **params)
        grads = sg.grad(out, wanted, grad_outputs=cotangent, allow_unused=True) if wanted else ()
        return out.data if isinstance(out, sg.Variable) else out, list(grads)

    return forward_backward


def torch_call(spec, inputs, params, program):
    torch_dtype = getattr(torch, DTYPE.name)
    leaf_positions = iter(range(len(program.leaves)))
    args, wanted = [], []
    for ref in program.steps[0].args:
        if ref.kind == "leaf":
            tensor = torch.tensor(np.array(program.leaves[next(leaf_positions)], order="C"), requires_grad=True)
            args.append(tensor)
            wanted.append(tensor)
        else:
            constant = program.constants[ref.index]
            args.append(torch.from_numpy(np.array(constant, order="C")) if isinstance(constant, np.ndarray)
                        else constant)
    cotangent = torch.tensor(np.array(program.cotangents[0], order="C"), dtype=torch_dtype)

    def forward_backward():
        out = spec.torch(*args, **params)
        grads = torch.autograd.grad(out, wanted, cotangent, allow_unused=True) if wanted else ()
        return out.detach().numpy(), [None if g is None else g.numpy() for g in grads]

    return forward_backward


def assert_close(name, what, observed, expected):
    observed, expected = np.asarray(observed, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert observed.shape == expected.shape, f"op '{name}': {what} has shape {observed.shape}, torch's {expected.shape}"
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1.0)
    error = np.abs(observed - expected)
    worst = float(np.max(error, initial=0.0))
    if not worst <= TOLERANCE[DTYPE] * scale:   # also catches NaN
        where = np.unravel_index(int(np.nanargmax(error)), error.shape) if error.size else ()
        raise AssertionError(f"op '{name}': {what} differs from torch's by {worst:.3g} at {tuple(map(int, where))}: "
                             f"scratch_grad {float(observed[where])!r}, torch {float(expected[where])!r} ({DTYPE}, side {SIDE})")


@functools.lru_cache(maxsize=None)
def checked(name):
    """(scratch_grad call, torch call) for an op, after checking that they agree on the case."""
    case = op_case(name)
    ours, theirs = scratch_grad_call(*case), torch_call(*case)
    (out, grads), (expected_out, expected_grads) = ours(), theirs()
    assert_close(name, "the output", out, expected_out)
    # the argument position of each differentiable input (a Python number or a constant array in between
    # is not one: mul(2.0, x) differentiates its input 1 only)
    positions = [k for k, ref in enumerate(case[3].steps[0].args) if ref.kind == "leaf"]
    for index, g, expected in zip(positions, grads, expected_grads):
        if expected is None:        # torch: this input does not reach the output; scratch_grad must agree
            assert g is None or not np.any(g), f"op '{name}': the gradient of input {index} should be zero (torch: unused)"
        else:
            assert_close(name, f"the gradient of input {index}", g, expected)
    return ours, theirs


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("engine", ["scratch_grad", "torch"])
def test_op_forward_backward(benchmark, name, engine):
    ours, theirs = checked(name)
    benchmark.group = name
    benchmark.extra_info.update(dtype=DTYPE.name, side=SIDE)
    benchmark(ours if engine == "scratch_grad" else theirs)
