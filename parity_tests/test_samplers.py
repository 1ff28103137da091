"""The samplers reach every parameter, call form and edge of every op: read from the registry and
from each forward's signature, never from a hand-kept list of ops.

A suite is worth the bugs its samplers reach: a keyword that is never drawn (ddof), a call form
that is never tried (`x ** 3`, `2.0 - x`), an edge that is never drawn (a zero for prod, axis 0 on
a 0-d input, a permutation that is not its own inverse given with negative axes) lets a wrong
gradient pass every check. The tests run the samplers many times, in plain, kink and edge mode,
and list what was never drawn: the list must be empty. Call forms are checked with both
generators (RandomGen and HypothesisGen; Python numbers per op with RandomGen), edges per op with
RandomGen (the samplers ask the generator for them through the same protocol calls), and each
generator's own edge draws (and Python numbers) per domain and per protocol method with both.
"""
import inspect
import math
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scratch_grad.ops import REGISTRY
from scratch_grad.ops.sampling import sample_inputs
from scratch_grad.testing.gen import EDGE_ODDS, RandomGen, edge_points, sample_modes
from scratch_grad.testing.strategies import HypothesisGen

DRAWS = 240            # RandomGen draws per op and mode
EXAMPLES = 50          # hypothesis examples per op (a third of them in edge mode)
GENERATORS = ("RandomGen", "HypothesisGen")


def _draws(spec, generator):
    """(inputs, params, edges) of many draws of spec's sampler with one generator, in every mode."""
    draws = []
    if generator == "RandomGen":
        for k in range(DRAWS):
            for dtype, edges in (("float64", False), ("float32", True), ("float64", True)):
                gen = RandomGen(seed=(11, k), dtype=dtype, kinks=not spec.smooth and k % 3 == 2, edges=edges)
                draws.append(sample_inputs(spec, gen) + (edges,))
        return draws

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data(), mode=st.sampled_from(["plain", "edges", "kinks"]), dtype=st.sampled_from(["float64", "float32"]))
    def draw(data, mode, dtype):
        gen = HypothesisGen(data, dtype, kinks=mode == "kinks" and not spec.smooth, edges=mode == "edges")
        draws.append(sample_inputs(spec, gen) + (mode == "edges",))
    draw()
    return draws


_CACHE = {}


def draws_of(name, generator):
    key = (name, generator)
    if key not in _CACHE:
        _CACHE[key] = _draws(REGISTRY[name], generator)
    return _CACHE[key]


# ---- the call signature ---------------------------------------------------------------------------------

def call_signature(spec):
    """(positional inputs that may be omitted, keywords) of the op's forward. A forward that is NumPy's
    own function has NumPy's signature, not the op's: a ufunc's keywords (out, where, casting,
    dtype...) are NumPy's machinery, and np.where(condition) alone is another function."""
    if isinstance(spec.forward, np.ufunc) or getattr(spec.forward, "__module__", "") == "numpy":
        return (), ()
    parameters = list(inspect.signature(spec.forward).parameters.values())
    variadic = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    n_inputs = 0 if variadic else spec.arity
    inputs, rest = parameters[:n_inputs], parameters[n_inputs:]
    optional = tuple(k for k, p in enumerate(inputs) if p.default is not p.empty)
    keywords = tuple(p.name for p in rest if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    return optional, keywords


def undrawn_call_forms(name, generator):
    spec = REGISTRY[name]
    optional, keywords = call_signature(spec)
    draws = draws_of(name, generator)
    missing = [f"keyword '{k}'" for k in keywords if not any(k in params for _, params, _ in draws)]
    for k in optional:
        if not any(len(inputs) > k for inputs, _, _ in draws):
            missing.append(f"optional input {k} given")
        if not any(len(inputs) <= k for inputs, _, _ in draws):
            missing.append(f"optional input {k} omitted")
    if spec.kind == "binary" and generator == "RandomGen":   # HypothesisGen.scalar: see the generator test
        for k, domain in enumerate(spec.domain):
            if domain.differentiable:
                for kind in (int, float):
                    if not any(type(inputs[k]) is kind for inputs, _, _ in draws):
                        missing.append(f"a Python {kind.__name__} as input {k}")
    return missing


@pytest.mark.parametrize("generator", GENERATORS)
def test_every_keyword_and_call_form_of_every_forward_is_drawn(generator):
    """Reads each forward's signature: a keyword added to a forward and forgotten by its sampler
    fails here (a VJP that ignores it would pass every check), and so does an optional input
    (a bias) never given or never omitted, and a binary op never called with a Python int or float
    on one of its sides."""
    undrawn = {name: undrawn_call_forms(name, generator) for name in sorted(REGISTRY)}
    undrawn = {name: missing for name, missing in undrawn.items() if missing}
    assert not undrawn, "never drawn: " + "; ".join(f"{n}: {', '.join(m)}" for n, m in undrawn.items())


def test_the_signature_reader_sees_keywords_optional_inputs_and_ufunc_machinery():
    """must-FAIL and must-PASS cases of the reader the test above relies on."""
    assert call_signature(REGISTRY["var"]) == ((), ("axis", "keepdims", "ddof"))
    assert call_signature(REGISTRY["conv2d"]) == ((2,), ("stride", "padding"))
    assert call_signature(REGISTRY["einsum"]) == ((), ("subscripts",))
    assert call_signature(REGISTRY["exp"]) == ((), ())        # np.exp's out=/where= are NumPy's
    forgetful = REGISTRY["var"].__class__(**{**_fields(REGISTRY["var"]), "name": "var_forgetful",
                                              "sample": lambda gen: ((gen.array((3,)),), {"axis": 0})})
    _CACHE.pop(("var_forgetful", "RandomGen"), None)
    REGISTRY["var_forgetful"] = forgetful
    try:
        assert undrawn_call_forms("var_forgetful", "RandomGen") == ["keyword 'keepdims'", "keyword 'ddof'"]
    finally:
        del REGISTRY["var_forgetful"]
        _CACHE.pop(("var_forgetful", "RandomGen"), None)


def _fields(spec):
    from dataclasses import fields
    return {f.name: getattr(spec, f.name) for f in fields(spec) if f.init}


# ---- the edges ---------------------------------------------------------------------------------------------

def _float_arrays(inputs, spec):
    domains = list(spec.domain) * len(inputs) if spec.variadic else spec.domain
    for value, domain in zip(inputs, domains):
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and domain.differentiable:
            yield value, domain


def _has_ulp_pair(values):
    finite = np.unique(values[np.isfinite(values)])
    if finite.size < 2:
        return False
    return bool(np.any(np.nextafter(finite[:-1], np.inf, dtype=finite.dtype) == finite[1:]))


def value_families(spec, draws):
    """The value edges an op's declared domains call for, and which of them its edge draws hit.

    For every differentiable input: exact ties, two entries one ulp apart, an exact zero, a tiny
    and a large magnitude (domain.large) where the domain has them, each closed bound, the value
    just inside each finite bound, each declared infinity, NaN if declared."""
    wanted, seen = set(), set()
    for inputs, _, edges in draws:
        if not edges:
            continue
        for values, domain in _float_arrays(inputs, spec):
            tiny = math.sqrt(float(np.finfo(values.dtype).tiny))
            points = [p for p in edge_points(domain, values.dtype) if math.isfinite(p)]
            wanted |= {"ties", "ulp"}
            if 0.0 in points:
                wanted.add("zero")
            if any(0 < abs(p) <= tiny for p in points):
                wanted.add("tiny")
            if any(abs(p) >= domain.large for p in points):
                wanted.add("large")
            wanted |= {f"closed bound {b}" for b in domain.closed}
            wanted |= {f"just inside {b}" for b in (domain.low, domain.high) if math.isfinite(b)}
            wanted |= {f"{v}" for v in domain.infinities} | ({"nan"} if domain.nan else set())
            flat = values.ravel()
            finite = flat[np.isfinite(flat)]
            if np.any(flat == 0):
                seen.add("zero")
            if finite.size > np.unique(finite).size:
                seen.add("ties")
            if _has_ulp_pair(flat):
                seen.add("ulp")
            if np.any((finite != 0) & (np.abs(finite) <= tiny)):
                seen.add("tiny")
            if np.any(np.abs(finite) >= domain.large):
                seen.add("large")
            seen |= {f"closed bound {b}" for b in domain.closed if np.any(flat == b)}
            for bound, inward in ((domain.low, np.inf), (domain.high, -np.inf)):
                if math.isfinite(bound):
                    inside = np.nextafter(np.asarray(bound, values.dtype), np.asarray(inward, values.dtype))
                    if np.any(flat == inside):
                        seen.add(f"just inside {bound}")
            seen |= {f"{v}" for v in domain.infinities if np.any(flat == v)}
            if np.any(np.isnan(flat)):
                seen.add("nan")
    return wanted, seen


def _negative_axes(axis):
    return axis is not None and any(a < 0 for a in np.atleast_1d(axis))


def structural_families(spec, draws):
    """The structural edges the op's signature and kind call for, and which of them its draws hit:
    - an `axis` keyword: a negative axis; for reductions also a 0-d input with an axis (0 or -1),
      a reduction over a size-0 axis (an empty input where spec.reduces_empty is False) and an
      input with tied values;
    - an `axes` keyword: a permutation with negative axes that is not its own inverse;
    - an `index` keyword holding a NumPy index: an integer array with a repeated and a negative entry;
    - both `min` and `max` keywords: an array bound that broadcasts against x with another shape,
      and a bound min > max somewhere;
    - a `subscripts` keyword: implicit and explicit outputs, an index repeated within an operand,
      an ellipsis, an explicit output out of sorted order, three operands;
    - kinds elementwise and binary: an input with a size-0 dimension."""
    _, keywords = call_signature(spec)
    wanted, seen = set(), set()
    for inputs, params, _ in draws:
        x = inputs[0] if inputs else None
        if "axis" in keywords:
            wanted.add("negative axis")
            if _negative_axes(params.get("axis")):
                seen.add("negative axis")
            if spec.kind == "reduction":
                wanted |= {"0-d input with an axis", "ties"}
                axis = params.get("axis")
                if np.ndim(x) == 0 and axis is not None:
                    seen.add("0-d input with an axis")
                flat = np.ravel(x)
                if flat.size > np.unique(flat).size:
                    seen.add("ties")
                if spec.reduces_empty:
                    wanted.add("reduction over an empty axis")
                    axes = range(np.ndim(x)) if axis is None else np.atleast_1d(axis)
                    if np.ndim(x) and any(np.shape(x)[a] == 0 for a in axes):
                        seen.add("reduction over an empty axis")
                else:
                    wanted.add("empty input")
                    if np.size(x) == 0:
                        seen.add("empty input")
        if "axes" in keywords:
            wanted.add("non-involutive permutation with negative axes")
            axes = params.get("axes")
            if axes is not None and _negative_axes(axes):
                normal = [a % len(axes) for a in axes]
                if any(normal[normal[i]] != i for i in range(len(axes))):
                    seen.add("non-involutive permutation with negative axes")
        if isinstance(params.get("index"), tuple):      # a NumPy index (split's index is a piece number)
            wanted.add("repeated and negative integer indices")
            for part in params["index"]:
                if isinstance(part, np.ndarray) and part.dtype.kind == "i" and part.size > np.unique(part).size \
                        and np.any(part < 0):
                    seen.add("repeated and negative integer indices")
        if "min" in keywords and "max" in keywords:
            wanted |= {"array bound broadcasting against x", "min > max"}
            bounds = [params.get(k) for k in ("min", "max")]
            if any(isinstance(b, np.ndarray) and b.shape != np.shape(x) for b in bounds):
                seen.add("array bound broadcasting against x")
            if all(b is not None for b in bounds) and np.any(np.asarray(bounds[0]) > np.asarray(bounds[1])):
                seen.add("min > max")
        if "subscripts" in keywords:
            wanted |= {"implicit output", "explicit output", "repeated index in an operand", "ellipsis",
                       "unsorted explicit output", "three operands"}
            subscripts = params["subscripts"]
            lhs, arrow, rhs = subscripts.partition("->")
            seen.add("explicit output" if arrow else "implicit output")
            if any(len(set(t.replace("...", ""))) < len(t.replace("...", "")) for t in lhs.split(",")):
                seen.add("repeated index in an operand")
            if "..." in subscripts:
                seen.add("ellipsis")
            letters = rhs.replace("...", "")
            if arrow and list(letters) != sorted(letters):
                seen.add("unsorted explicit output")
            if len(inputs) >= 3:
                seen.add("three operands")
        if spec.kind in ("elementwise", "binary"):
            wanted.add("size-0 dimension")
            if any(isinstance(v, np.ndarray) and v.size == 0 for v in inputs):
                seen.add("size-0 dimension")
    return wanted, seen


def test_every_edge_family_is_drawn_for_every_op_it_applies_to():
    """Which edges apply is read from each entry (its domains' declarations, its forward's keywords,
    its kind), so an op added to the registry is held to the same standard with no list to update."""
    missing = {}
    for name in sorted(REGISTRY):
        spec = REGISTRY[name]
        draws = draws_of(name, "RandomGen")
        wanted, seen = value_families(spec, draws)
        wanted_structure, seen_structure = structural_families(spec, draws)
        absent = sorted((wanted - seen) | (wanted_structure - seen_structure))
        if absent:
            missing[name] = absent
    assert not missing, "edges never drawn: " + "; ".join(f"{n}: {', '.join(m)}" for n, m in missing.items())


def test_the_edge_census_fails_on_a_sampler_that_stays_inside_the_old_box():
    """must-FAIL: a reduction sampler with values in [-2, 2], no 0-d input, no negative axis is
    reported for every edge it misses; must-PASS: the registry's own sum is not."""
    spec = REGISTRY["sum"]

    def boxed(gen):
        shape = gen.shape(min_dims=1)
        return (np.random.default_rng(gen.integer(0, 99)).uniform(-2, 2, shape).astype(gen.dtype),), \
            {"axis": None, "keepdims": False}
    draws = [boxed(RandomGen(seed=k, edges=k % 2 == 1)) + (k % 2 == 1,) for k in range(200)]
    wanted, seen = value_families(spec, draws)
    wanted_structure, seen_structure = structural_families(spec, draws)
    absent = (wanted - seen) | (wanted_structure - seen_structure)
    assert {"zero", "ulp", "tiny", "large", "-inf", "inf", "nan", "negative axis", "0-d input with an axis",
            "reduction over an empty axis"} <= absent
    real_draws = draws_of("sum", "RandomGen")
    wanted, seen = value_families(spec, real_draws)
    wanted_structure, seen_structure = structural_families(spec, real_draws)
    assert wanted <= seen and wanted_structure <= seen_structure


def _domains():
    """Every distinct differentiable input domain of the registry."""
    found = []
    for spec in REGISTRY.values():
        for domain in spec.domain:
            if domain.differentiable and domain not in found:
                found.append(domain)
    return found


def _protocol_draws(generator, count):
    """count edge-mode draws of the protocol's methods: an array per registry domain (4x4, so that
    ties and ulp neighbours have room), shapes, axes, permutations, Python numbers."""
    draws = []

    def one(gen):
        draws.append({"arrays": [(gen.array((4, 4), d), d) for d in _domains()],
                      "shape": gen.shape(min_side=0), "axis0": gen.axis(0), "axis3": gen.axis(3),
                      "permutation": gen.permutation(4), "scalar": gen.scalar()})
    if generator == "RandomGen":
        for k in range(count):
            one(RandomGen(seed=(3, k), dtype=("float32", "float64")[k % 2], edges=True))
        return draws

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data(), dtype=st.sampled_from(["float64", "float32"]))
    def draw(data, dtype):
        one(HypothesisGen(data, dtype, edges=True))
    draw()
    return draws


@pytest.mark.parametrize("generator", GENERATORS)
def test_each_generator_draws_every_edge_in_edge_mode(generator):
    """Both generators, method by method: every domain's value edges, 0-d and size-0 shapes, axis 0
    and -1 on a 0-d input, negative ints and unsorted tuples with negatives for axes, permutations
    that are not their own inverse, Python ints, floats and edge points as numbers."""
    draws = _protocol_draws(generator, 150 if generator == "RandomGen" else 250)
    missing = []
    for k, domain in enumerate(_domains()):
        spec = REGISTRY["exp"].__class__(**{**_fields(REGISTRY["exp"]), "domain": (domain,)})
        wanted, seen = value_families(spec, [((d["arrays"][k][0],), {}, True) for d in draws])
        missing += [f"{domain.description}: {family}" for family in sorted(wanted - seen)]
    checks = {
        "0-d shape": any(d["shape"] == () for d in draws),
        "size-0 dimension": any(0 in d["shape"] for d in draws),
        "axis 0 and -1 on 0-d": {0, -1} <= {d["axis0"] for d in draws},
        "negative int axis": any(isinstance(d["axis3"], int) and d["axis3"] < 0 for d in draws),
        "unsorted tuple axis with a negative": any(isinstance(d["axis3"], tuple) and _negative_axes(d["axis3"]) and
                                                   list(np.mod(d["axis3"], 3)) != sorted(np.mod(d["axis3"], 3))
                                                   for d in draws),
        "only non-involutive permutations": all(any(p[p[i]] != i for i in range(4)) for p in
                                                (d["permutation"] for d in draws)),
        "Python int": any(type(d["scalar"]) is int for d in draws),
        "Python float": any(type(d["scalar"]) is float for d in draws),
        "infinite Python float": any(type(d["scalar"]) is float and math.isinf(d["scalar"]) for d in draws),
    }
    missing += [name for name, ok in checks.items() if not ok]
    assert not missing, f"{generator} never drew: " + ", ".join(missing)


# ---- how often ------------------------------------------------------------------------------------------------

def test_a_quarter_of_the_cli_loops_samples_are_edge_samples():
    """parity, mutate and check_op draw their k-th sample with sample_modes(spec, k)."""
    spec = REGISTRY["max"]
    modes = [sample_modes(spec, k) for k in range(40)]
    assert sum(m["edges"] for m in modes) == 40 // EDGE_ODDS
    assert sum(m["kinks"] for m in modes) == 13
    assert not any(sample_modes(REGISTRY["exp"], k)["kinks"] for k in range(40))


def test_a_quarter_of_the_hypothesis_examples_are_edge_samples(monkeypatch):
    """check_op_example, which the pytest properties run, with the ci profile's example count. Over
    20 derandomized examples hypothesis' share varies from op to op (it mutates earlier examples
    rather than drawing each afresh); over a dozen ops and both dtypes it is about a quarter."""
    from scratch_grad.testing import oracle, strategies
    modes = []
    original = strategies.HypothesisGen.__init__

    def recording(self, data, dtype=np.float64, max_side=4, kinks=False, layouts=True, edges=False):
        modes.append(edges)
        original(self, data, dtype, max_side, kinks, layouts, edges)

    class Passed:
        passed = True
    monkeypatch.setattr(strategies.HypothesisGen, "__init__", recording)
    monkeypatch.setattr(oracle, "check_sample", lambda *args, **kwargs: Passed())
    names = sorted(REGISTRY)[::5]
    for name in names:
        for dtype in ("float64", "float32"):
            strategies.op_property(REGISTRY[name], dtype, max_examples=strategies.BUDGETS["ci"].op_examples,
                                   derandomize=True, database=None)()
    fraction = sum(modes) / len(modes)
    assert 0.15 <= fraction <= 0.35, (fraction, len(modes))


def test_edge_points_respect_the_domain_and_its_declarations():
    """Nothing a correct engine could not take: no pole, no undeclared infinity, nothing outside
    the bounds; and every declared edge is there."""
    from scratch_grad.ops.registry import LOGITS, NONZERO, POSITIVE
    for dtype in (np.float32, np.float64):
        positive = edge_points(POSITIVE, dtype)
        assert 0.0 in positive and math.inf in positive and -math.inf not in positive
        assert all(v >= 0 or math.isnan(v) for v in positive)
        assert float(np.nextafter(dtype(0), dtype(1))) in positive      # just inside the bound
        assert 0.0 not in edge_points(NONZERO, dtype)                    # a pole is never drawn
        logits = edge_points(LOGITS, dtype)
        assert -math.inf in logits and math.inf not in logits and 1e8 in logits
