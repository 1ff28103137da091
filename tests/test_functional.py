"""sg.jvp, sg.jacobian and sg.hessian, checked for every registry op declared twice differentiable.

Each op runs on its own sampler's inputs (`sample_inputs` with a seeded RandomGen) and is compared
with torch.func (jvp, jacrev, hessian of the same op through its registry `torch` reference) and,
for the JVP, with finite differences of the float64 forward. Tolerances come from the project's
error model (scratch_grad.testing.tolerance), calibrated in float32 by torch's own float32 run.
Planted wrong VJPs show that the same comparisons fail when forward mode is wrong."""
import numpy as np
import pytest
import torch

import scratch_grad as sg
from scratch_grad.engine import apply
from scratch_grad.engine import raw as _raw
from scratch_grad.ops.registry import REAL, OpSpec
from scratch_grad.ops.sampling import sample_inputs
from scratch_grad.testing.finite_diff import differentiate
from scratch_grad.testing.gen import RandomGen
from scratch_grad.testing.program import single_op_program
from scratch_grad.testing.tolerance import error_ratio, result_tolerance
from scratch_grad.trace import torch_constant

TWICE_DIFFERENTIABLE = sorted(name for name, spec in sg.REGISTRY.items() if spec.twice_differentiable)
SAMPLES = 2


def as64(tensor):
    """A torch result as a float64 array (force: torch's lazy ZeroTensor gradients)."""
    return tensor.detach().numpy(force=True).astype(np.float64)


class OpCase:
    """One sampled call of an op, as a scratch_grad function and a torch function of its leaves."""

    def __init__(self, spec, inputs, params, seed):
        self.spec, self.params = spec, params
        self.program = single_op_program(spec, inputs, params, rng=np.random.default_rng(seed))
        rng = np.random.default_rng((seed, 1))
        self.dtype = self.program.dtype
        self.leaves = [np.array(v) for v in self.program.leaves]
        self.tangents = [rng.uniform(-1, 1, v.shape).astype(self.dtype) for v in self.leaves]
        self.cotangent = self.program.cotangents[0]

    def _arguments(self, leaves, constants):
        return [leaves[r.index] if r.kind == "leaf" else constants[r.index] for r in self.program.steps[0].args]

    def scratch(self, *leaves):
        return apply(self.spec, self._arguments(leaves, self.program.constants), self.params)

    def scratch_scalar(self, *leaves):
        return sg.sum(self.scratch(*leaves) * self.cotangent)

    def torch_functions(self, torch_dtype):
        constants = [torch_constant(c, torch_dtype) for c in self.program.constants]
        cotangent = torch.tensor(np.array(self.cotangent), dtype=torch_dtype)

        def function(*leaves):
            return self.spec.torch(*self._arguments(leaves, constants), **self.params)

        def scalar(*leaves):
            return (function(*leaves) * cotangent).sum()
        return function, scalar

    def torch_results(self, dtype):
        """(outputs, jvp, jacobian blocks, hessian blocks) of torch.func in dtype, as float64 arrays."""
        torch_dtype = getattr(torch, np.dtype(dtype).name)
        function, scalar = self.torch_functions(torch_dtype)
        leaves = tuple(torch.tensor(v, dtype=torch_dtype) for v in self.leaves)
        tangents = tuple(torch.tensor(t, dtype=torch_dtype) for t in self.tangents)
        out, tangent_out = torch.func.jvp(function, leaves, tangents)
        # torch.func vmaps over the entries of an input, which fails on an empty one: its blocks
        # (no entries) are made here, the others differentiated
        argnums = tuple(k for k, leaf in enumerate(leaves) if leaf.numel())
        jacobian = dict(zip(argnums, torch.func.jacrev(function, argnums=argnums)(*leaves))) if argnums else {}
        hessian = torch.func.hessian(scalar, argnums=argnums)(*leaves) if argnums else ()
        hessian = {(i, j): block for i, row in zip(argnums, hessian) for j, block in zip(argnums, row)}
        shapes = [tuple(leaf.shape) for leaf in leaves]
        jacobian_blocks = [as64(jacobian[j]) if j in jacobian else np.zeros(tuple(out.shape) + shapes[j])
                           for j in range(len(leaves))]
        hessian_blocks = [[as64(hessian[i, j]) if (i, j) in hessian else np.zeros(shapes[i] + shapes[j])
                           for j in range(len(leaves))] for i in range(len(leaves))]
        return as64(out), as64(tangent_out), jacobian_blocks, hessian_blocks

    def scale(self):
        """Magnitude of the terms the derivatives sum (a tangent or cotangent entry times an input)."""
        largest = max((float(np.abs(v).max()) for v in self.leaves if v.size), default=0.0)
        weights = [np.abs(t).max() for t in self.tangents if t.size] + [np.abs(self.cotangent).max(initial=0.0)]
        return float(max(weights)) * max(1.0, largest)


def sampled_cases(name, dtype, samples=SAMPLES):
    spec = sg.REGISTRY[name]
    cases = []
    for k in range(samples):
        inputs, params = sample_inputs(spec, RandomGen(seed=(16, k), dtype=dtype))
        case = OpCase(spec, inputs, params, seed=k)
        if case.leaves:
            cases.append(case)
    return cases


def worst_ratio(ours, reference64, reference_low, dtype, depth, floor):
    """Largest |ours - reference| / tolerance (the oracle's error model); inf on a shape mismatch."""
    ours = np.asarray(ours)
    if ours.shape != np.shape(reference64):
        return np.inf
    if ours.size == 0:
        return 0.0
    tolerance = result_tolerance(reference64, dtype, depth, reference_low, floor, ours)
    return float(np.max(error_ratio(ours, reference64, tolerance)[1]))


def forward_mode_ratios(case):
    """{"jvp"|"jacobian"|"hessian": worst ratio against torch.func} for one case."""
    dtype = case.dtype
    # the reference: torch in float64 on the same values; its float32 run calibrates the tolerance
    # (how much this computation amplifies rounding), as in the oracle
    reference = case.torch_results(np.float64)
    low = case.torch_results(np.float32)
    _, ref_jvp, ref_jacobian, ref_hessian = reference
    _, low_jvp, low_jacobian, low_hessian = low
    floor = case.scale()
    _, tangent_out = sg.jvp(case.scratch, case.leaves, case.tangents)
    jacobian = sg.jacobian(case.scratch, tuple(case.leaves))
    hessian = sg.hessian(case.scratch_scalar, tuple(case.leaves))
    ratios = {"jvp": worst_ratio(tangent_out, ref_jvp, low_jvp, dtype, 3, floor)}
    ratios["jacobian"] = max(worst_ratio(j, r, lo, dtype, 3, floor)
                             for j, r, lo in zip(jacobian, ref_jacobian, low_jacobian))
    ratios["hessian"] = max(worst_ratio(h, r, lo, dtype, 6, floor)
                            for row, ref_row, low_row in zip(hessian, ref_hessian, low_hessian)
                            for h, r, lo in zip(row, ref_row, low_row))
    dtypes_ok = (np.asarray(tangent_out).dtype == dtype and all(j.dtype == dtype for j in jacobian)
                 and all(h.dtype == dtype for row in hessian for h in row))
    return ratios, dtypes_ok


def jvp_fd_ratio(case):
    """|<J t, c> - d/ds L(x + s t)| / tolerance, L = <f(x), c>, by the oracle's float64 finite
    differences (Richardson); None where the FD sees a kink (no derivative there)."""
    program64 = case.program.astype(np.float64)
    tangents = [t.astype(np.float64) for t in case.tangents]

    def along(points):
        moved = [x.astype(np.float64) + points[0] * t for x, t in zip(case.leaves, tangents)]
        return program64.scalar_raw(moved)

    fd = differentiate(along, [np.array(0.0)], 0, np.random.default_rng(0), "full")
    if bool(fd.kink):
        return None
    _, tangent_out = sg.jvp(case.scratch, [x.astype(np.float64) for x in case.leaves], tangents)
    terms = np.abs(tangent_out) * np.abs(np.asarray(case.cotangent, dtype=np.float64))
    ours = float(np.sum(tangent_out * case.cotangent))
    tolerance = float(fd.tolerance) + 64 * np.finfo(np.float64).eps * (float(np.sum(terms)) + case.scale())
    return abs(ours - float(fd.value)) / tolerance


# ---- every twice-differentiable op --------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", TWICE_DIFFERENTIABLE)
def test_jvp_jacobian_hessian_match_torch_func(name, dtype):
    cases = sampled_cases(name, dtype)
    assert cases, f"op '{name}': its sampler gave no differentiable input in {SAMPLES} draws"
    for case in cases:
        ratios, dtypes_ok = forward_mode_ratios(case)
        assert dtypes_ok, f"op '{name}': a result is not in the input dtype {dtype}"
        for what, ratio in ratios.items():
            assert ratio <= 1.0, (f"op '{name}' ({dtype}, params {case.params}): sg.{what} is {ratio:.3g} "
                                  "tolerances from torch.func")


@pytest.mark.parametrize("name", TWICE_DIFFERENTIABLE)
def test_jvp_matches_finite_differences(name):
    checked = 0
    for case in sampled_cases(name, "float64"):
        ratio = jvp_fd_ratio(case)
        if ratio is not None:
            checked += 1
            assert ratio <= 1.0, f"op '{name}' (params {case.params}): <jvp, c> is {ratio:.3g} FD tolerances off"
    assert checked, f"op '{name}': every sample sat on a kink; no JVP was checked against finite differences"


# ---- the checks fail when forward mode is wrong -------------------------------------------------------

def _planted(name, vjp):
    """A copy of a registry op (not registered) whose VJP is replaced."""
    spec = sg.REGISTRY[name]
    return OpSpec(f"{name}_planted", spec.forward, (vjp,), spec.torch, spec.domain, spec.kind, sample=spec.sample)


def _planted_case(spec, dtype="float64"):
    inputs, params = sample_inputs(spec, RandomGen(seed=(16, 0), dtype=dtype))
    return OpCase(spec, inputs, params, seed=0)


def test_a_vjp_one_percent_too_large_fails_jvp_against_torch_and_fd():
    case = _planted_case(_planted("sin", lambda g, out, x: 1.01 * g * sg.cos(x)))
    ratios, _ = forward_mode_ratios(case)
    assert ratios["jvp"] > 1e3 and ratios["jacobian"] > 1e3
    assert jvp_fd_ratio(case) > 1e3
    assert forward_mode_ratios(_planted_case(sg.REGISTRY["sin"]))[0]["jvp"] <= 1.0    # the real sin passes


def test_a_vjp_that_drops_g_from_the_graph_gives_a_zero_jvp_and_fails():
    # right values in a plain backward, but g's raw array is used: under create_graph the result
    # no longer depends on the cotangent, so the VJP of the VJP (the JVP) is lost
    case = _planted_case(_planted("exp", lambda g, out, x: _raw(g) * out))
    _, tangent_out = sg.jvp(case.scratch, case.leaves, case.tangents)
    assert not np.any(tangent_out)
    assert forward_mode_ratios(case)[0]["jvp"] > 1e3


def test_a_vjp_whose_derivative_factor_is_constant_fails_hessian_only():
    # cos(x) read from the raw array: first order (jvp, jacobian) right, the second derivative lost
    case = _planted_case(_planted("sin", lambda g, out, x: g * np.cos(_raw(x))))
    ratios, _ = forward_mode_ratios(case)
    assert ratios["jvp"] <= 1.0 and ratios["jacobian"] <= 1.0
    assert ratios["hessian"] > 1e3


# ---- shapes and structure -------------------------------------------------------------------------------

def test_jacobian_and_hessian_layouts_follow_torch():
    x, w = np.random.default_rng(0).standard_normal((3, 4)), np.random.default_rng(1).standard_normal((4, 2))
    assert sg.jacobian(sg.tanh, x).shape == (3, 4, 3, 4)
    blocks = sg.jacobian(lambda a, b: (a @ b, sg.sum(a)), (x, w))
    assert [[b.shape for b in row] for row in blocks] == [[(3, 2, 3, 4), (3, 2, 4, 2)], [(3, 4), (4, 2)]]
    assert sg.hessian(lambda a: sg.sum(sg.sin(a)), x).shape == (3, 4, 3, 4)
    assert sg.hessian(lambda a: sg.sin(a), x[0]).shape == (4, 4, 4)       # non-scalar output, like torch.func
    h = sg.hessian(lambda a, b: sg.sum(sg.tanh(a @ b)), (x, w))
    assert [[b.shape for b in row] for row in h] == [[(3, 4, 3, 4), (3, 4, 4, 2)], [(4, 2, 3, 4), (4, 2, 4, 2)]]
    np.testing.assert_allclose(h[0][1], np.moveaxis(h[1][0], (0, 1), (2, 3)).reshape(3, 4, 4, 2), atol=1e-12)


def test_jvp_returns_the_output_structure_and_zero_for_constant_outputs():
    x = np.array([0.5, -1.0])
    out, tangent = sg.jvp(lambda a: (sg.exp(a), sg.Variable(np.ones(3))), (x,), (np.ones(2),))
    assert isinstance(out, tuple) and len(out) == 2
    np.testing.assert_allclose(tangent[0], np.exp(x))
    np.testing.assert_array_equal(tangent[1], np.zeros(3))
    assert sg.jvp(lambda a: a * 0.0 + 1.0, (x,), (np.ones(2),))[1].tolist() == [0.0, 0.0]
    assert sg.jacobian(lambda a: sg.Variable(np.ones(3)) + 1.0, x).tolist() == np.zeros((3, 2)).tolist()
    np.testing.assert_array_equal(sg.hessian(lambda a: sg.sum(a * 2.0), x), np.zeros((2, 2)))


def test_jvp_accepts_variables_numbers_and_float32():
    x = sg.Variable(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    out, tangent = sg.jvp(lambda a: a * a, [x], [np.array([1.0, 0.0], dtype=np.float32)])
    assert out.dtype == tangent.dtype == np.float32 and tangent.tolist() == [2.0, 0.0]
    assert x.grad is None                                      # functional: nothing accumulated
    assert sg.jvp(lambda a: a * a * a, (2.0,), (1.0,))[1] == 12.0


# ---- bad input ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("primals, tangents, error, message", [
    ("x", ("t",), sg.DTypeError, "tuple or list"),
    ((np.ones(2),), np.ones(2), sg.DTypeError, "tuple or list"),
    (([1.0, 2.0],), (np.ones(2),), sg.DTypeError, "input 0 is a list"),
    ((np.array([1, 2]),), (np.array([1, 2]),), sg.DTypeError, "not floating point"),
    ((np.ones(2),), (np.ones(3),), sg.ShapeError, r"tangent 0 has shape \(3,\)"),
    ((np.ones(2),), (np.ones(2, dtype=np.float32),), sg.DTypeError, "tangent 0 has dtype float32"),
    ((np.ones(2), np.ones(2)), (np.ones(2),), sg.ShapeError, "2 primals but 1 tangents"),
])
def test_jvp_refuses_bad_input_with_a_clear_error(primals, tangents, error, message):
    with pytest.raises(error, match=message):
        sg.jvp(lambda *xs: xs[0], primals, tangents)


def test_fn_must_return_variables():
    with pytest.raises(sg.GraphError, match="output 0 is a ndarray"):
        sg.jvp(lambda a: np.ones(2), (np.ones(2),), (np.ones(2),))
    with pytest.raises(sg.GraphError, match="single Variable"):
        sg.hessian(lambda a: (sg.sum(a), sg.sum(a)), np.ones(2))


def test_an_op_not_twice_differentiable_is_refused_by_jvp_and_hessian_not_by_jacobian():
    once = OpSpec("square_once", np.square, (lambda g, out, x: g * 2 * _raw(x),), torch.square, (REAL,),
                  "elementwise", twice_differentiable=False)

    def fn(a):
        return sg.sum(apply(once, (sg.sin(a),), {}))
    x = np.array([0.3, 0.7])
    for transform in (lambda: sg.jvp(fn, (x,), (np.ones(2),)), lambda: sg.hessian(fn, x)):
        with pytest.raises(sg.GraphError, match="op 'square_once' is declared twice_differentiable=False"):
            transform()
    np.testing.assert_allclose(sg.jacobian(fn, x), 2 * np.sin(x) * np.cos(x))
