"""The hypothesis side: a gen that shrinks, the profiles, and the properties the suite runs.

Importing this module imports hypothesis (a test-time dependency); nothing in `scratch_grad` or
the rest of `scratch_grad.testing` does.

Profiles (select with the HYPOTHESIS_PROFILE environment variable; budgets in profiles.py):
    ci    the default: bounded and deterministic (derandomized, so no example database needed: the
          same examples run every time); the whole suite in about a minute on 2 cores
    dev   random, twice the ci budget, failures saved in .hypothesis/ and replayed first
    fuzz  long campaigns (scratch-grad fuzz): many examples, failures saved and replayed first
"""
import math

import numpy as np
from hypothesis import HealthCheck, Phase, given, note, reject, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ..ops.registry import REAL
from .gen import (EDGE_FAMILIES, EDGE_ODDS, LAYOUTS, MARGIN, _interval, _neighbours, edge_points, in_domain,
                  kink_points, non_involution, with_layout)
from .profiles import BUDGETS, Budget, budget, current_profile  # noqa: F401 (re-exported)

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                 HealthCheck.filter_too_much]


def register_profiles():
    """Register ci/dev/fuzz with hypothesis and load the one HYPOTHESIS_PROFILE names. dev and fuzz
    save and replay failures in the example database SCRATCH_GRAD_DATABASE names (a directory or a
    redis://HOST:PORT/DB shared by several machines; testing/database.py), else hypothesis' default
    directory; ci is derandomized and keeps none."""
    from .database import database_from_environment
    name = current_profile()
    shared = {}
    if name != "ci":        # derandomize=True implies no database: do not even reach the server
        database = database_from_environment()
        shared = {"database": database} if database is not None else {}
    settings.register_profile("ci", max_examples=BUDGETS["ci"].op_examples, derandomize=True, deadline=None,
                              print_blob=True, suppress_health_check=_SLOW_IS_FINE)
    settings.register_profile("dev", max_examples=BUDGETS["dev"].op_examples, deadline=None, print_blob=True,
                              suppress_health_check=_SLOW_IS_FINE, **shared)
    settings.register_profile("fuzz", max_examples=BUDGETS["fuzz"].op_examples, deadline=None, print_blob=True,
                              suppress_health_check=_SLOW_IS_FINE, **shared)
    settings.load_profile(name)
    return name


# ---- the gen protocol on hypothesis ------------------------------------------------------------------------

def _inward(bound, dtype, upward):
    """The closest value of `dtype` to `bound` on the inside of the interval."""
    value = np.asarray(bound, dtype=dtype)
    if upward and float(value) < bound:
        value = np.nextafter(value, np.asarray(np.inf, dtype=dtype))
    if not upward and float(value) > bound:
        value = np.nextafter(value, np.asarray(-np.inf, dtype=dtype))
    return float(value)


def _push_away_scalar(value, domain, dtype):
    for point in domain.avoid:
        if abs(value - point) < MARGIN:
            value = point + (MARGIN if value >= point else -MARGIN) * 1.5
    return float(np.asarray(value, dtype=dtype))


TINY = 2.0 ** -20   # magnitudes below this become 0: values are O(1); 1e-208 only probes underflow


def element_strategy(domain, dtype, kinks=False):
    """Floats of `dtype` inside the domain's sampled interval, a margin away from avoided points;
    in kink mode also exactly at the kinks and on the tie grid."""
    low, high = _interval(domain)
    width = 32 if np.dtype(dtype) == np.float32 else 64
    floats = st.floats(_inward(low, dtype, True), _inward(high, dtype, False), width=width,
                       allow_nan=False, allow_infinity=False, allow_subnormal=False)
    if low <= 0.0 <= high:
        floats = floats.map(lambda v: 0.0 if abs(v) < TINY else v)
    if domain.avoid:
        floats = floats.map(lambda v: _push_away_scalar(v, domain, dtype))
    if kinks:
        points = kink_points(domain)
        if points:
            return st.one_of(st.sampled_from(points), floats)
    return floats


def edge_elements(domain, dtype, ordinary):
    """A strategy of element strategies: one of the EDGE_FAMILIES (see gen.py) for one edge array.
    `ordinary` draws the usual values; every family shrinks towards it and towards the first edge
    points (0, 1, the bounds)."""
    points = edge_points(domain, dtype)
    finite = [p for p in points if math.isfinite(p)]
    nonfinite = [p for p in points if not math.isfinite(p)]
    value = st.one_of(ordinary, st.sampled_from(finite))

    def family(name):
        if name == "points":
            return st.just(value)
        if name == "nonfinite":
            return st.just(st.one_of(ordinary, st.sampled_from(nonfinite or finite)))
        if name == "constant":
            return st.sampled_from(points).map(st.just)
        if name == "ties":
            return st.tuples(value, value).map(lambda pair: st.sampled_from(pair))
        return value.map(lambda v: st.sampled_from([n for n in _neighbours(v, dtype) if in_domain(n, domain)]))

    return st.sampled_from(EDGE_FAMILIES).flatmap(family)


class HypothesisGen:
    """The sampling protocol (scratch_grad.ops.sampling) drawn from hypothesis, so failures shrink:
    fewer dimensions, smaller sides, simpler values, earlier choices. Edge mode's choices shrink
    too: towards no edge at all (ordinary values, non-empty shapes, axis None), then towards the
    first edge points (0, 1, the bounds) and the first EDGE_FAMILIES."""

    def __init__(self, data, dtype=np.float64, max_side=4, kinks=False, layouts=True, edges=False):
        self.data = data
        self.dtype = np.dtype(dtype)
        self.max_side = max_side
        self.kinks = kinks
        self.layouts = layouts
        self.edges = edges
        self.cotangents = False

    def plain(self):
        """The same data drawing cotangents: no kinks, no edges, no layouts, and magnitudes in
        [1/4, 2] (a zero cotangent entry would hide the gradient it weighs, and hypothesis loves zeros)."""
        gen = HypothesisGen(self.data, self.dtype, self.max_side, kinks=False, layouts=False)
        gen.cotangents = True
        return gen

    def edge_mode(self, on=True):
        """The same data with edge mode on (or off)."""
        return HypothesisGen(self.data, self.dtype, self.max_side, kinks=self.kinks, layouts=self.layouts, edges=on)

    def integer(self, lo, hi):
        return self.data.draw(st.integers(lo, hi))

    def real(self, lo, hi):
        floats = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
        if self.edges:
            floats = st.one_of(floats, st.sampled_from([lo, hi]))
        return self.data.draw(floats)

    def choice(self, options):
        return self.data.draw(st.sampled_from(list(options)))

    def boolean(self):
        return self.data.draw(st.booleans())

    def shape(self, min_dims=0, max_dims=3, min_side=1, max_side=None):
        max_side = self.max_side if max_side is None else max_side
        low = max(min_side, 1)
        shape = self.data.draw(hnp.array_shapes(min_dims=min_dims, max_dims=max(max_dims, min_dims),
                                                min_side=low, max_side=max(max_side, low)))
        # an edge sample's shape is 0-d, has an empty dimension, or is ordinary, about a third each
        if self.edges and min_dims == 0 and shape and self._sometimes("0-d", 3):
            return ()
        if self.edges and min_side == 0 and shape and self._sometimes("size-0 dimension", 2):
            empty = self.data.draw(st.integers(0, len(shape) - 1), label="size-0 dimension")
            shape = shape[:empty] + (0,) + shape[empty + 1:]
        return shape

    def _sometimes(self, label, odds=4):
        """True about one time in `odds`; shrinks to False."""
        return self.data.draw(st.sampled_from([False] * (odds - 1) + [True]), label=label)

    def broadcastable_shapes(self, n, min_dims=0, max_dims=3, min_side=1):
        if n == 0:
            return ()
        drawn = self.data.draw(hnp.mutually_broadcastable_shapes(num_shapes=n, min_dims=min_dims,
                                                                 max_dims=max(max_dims, min_dims),
                                                                 max_side=self.max_side))
        shapes = tuple(drawn.input_shapes)
        ndim = max(len(s) for s in shapes)
        if self.edges and min_side == 0 and ndim and self._sometimes("size-0 dimension", 3):
            # one dimension of the broadcast result empty: each shape's copy of it is 0 or 1
            empty = self.data.draw(st.integers(0, ndim - 1), label="size-0 dimension")
            shapes = tuple(tuple(0 if k == empty - (ndim - len(s)) and d != 1 else d for k, d in enumerate(s))
                           for s in shapes)
        return shapes

    def permutation(self, n):
        permutation = list(self.data.draw(st.permutations(list(range(n)))))
        return non_involution(permutation) if self.edges else permutation

    def axis(self, ndim):
        if ndim == 0:
            return self.data.draw(st.sampled_from([None, 0, -1])) if self.edges else None
        if self.edges:
            return self.data.draw(st.one_of(st.integers(-ndim, -1), hnp.valid_tuple_axes(ndim, min_size=1)))
        return self.data.draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1),
                                         hnp.valid_tuple_axes(ndim, min_size=1)))

    def array(self, shape, domain=REAL):
        if self.cotangents:
            width = 32 if self.dtype == np.float32 else 64
            magnitude = st.floats(0.25, 2.0, width=width)
            elements = st.tuples(st.booleans(), magnitude).map(lambda pair: -pair[1] if pair[0] else pair[1])
            return self.data.draw(hnp.arrays(self.dtype, tuple(shape), elements=elements, fill=st.nothing()))
        elements = element_strategy(domain, self.dtype, self.kinks)
        if self.edges:
            elements = self.data.draw(edge_elements(domain, self.dtype, elements), label="edge values")
        # fill=nothing(): every entry drawn on its own (a fill value would make most entries tie)
        values = self.data.draw(hnp.arrays(self.dtype, tuple(shape), elements=elements, fill=st.nothing()))
        if self.layouts:
            values = with_layout(values, self.data.draw(st.sampled_from(LAYOUTS)))
        return values

    def scalar(self, domain=REAL):
        """A Python number inside the domain (an int when one fits: x ** 3, x + 1); edge points in edge
        mode. Shrinks towards the int 2, the commonest exponent."""
        floats = element_strategy(domain, self.dtype)
        ints = [n for n in (2, 3, -1, 0, 1, -2) if domain.low < n < domain.high and n not in domain.avoid]
        options = ([st.sampled_from(ints)] if ints else []) + [floats]
        if self.edges and self.data.draw(st.booleans(), label="an edge point"):
            # half of an edge sample's numbers are edge points (inf among them), drawn on their own so
            # that hypothesis walks through them rather than through one branch of a one_of
            return self.data.draw(st.sampled_from(edge_points(domain, self.dtype)))
        return self.data.draw(st.one_of(*options))

    def integers(self, shape, lo, hi):
        return self.data.draw(hnp.arrays(np.int64, tuple(shape), elements=st.integers(lo, hi - 1)))

    def mask(self, shape):
        return self.data.draw(hnp.arrays(np.bool_, tuple(shape), elements=st.booleans()))


# ---- properties: the bodies the suite, the fuzzer and mutate run ----------------------------------------------

def _is_final():
    try:
        from hypothesis.control import current_build_context
        return current_build_context().is_final
    except Exception:  # noqa: BLE001 - outside a test or an older hypothesis
        return True


def fail_with_reproducer(report, context=None, directory=None, write=None):
    """Raise CheckFailure for a failing report; on hypothesis' final (shrunk) replay, first write
    the standalone reproducer (with `write(report) -> path` when given: the fuzz campaign names one
    per distinct failure) and print its path and source."""
    from . import reproducer
    from .oracle import CheckFailure
    if _is_final():
        if write is not None:
            report.reproducer = write(report)
        else:
            report.reproducer = reproducer.write(report.program, report, context=context, directory=directory)
        note(f"standalone reproducer written to {report.reproducer}")
        note(reproducer.render(report.program, report, context))
    raise CheckFailure(report)


def check_op_example(data, spec, dtype, context=None, on_report=None, directory=None, engine=None, write=None):
    """One hypothesis example of the per-op check: draw inputs with the op's sampler, check all.
    engine: an adapter (testing/engines) checked instead of scratch_grad; a call form it lacks is
    not an example (rejected)."""
    from ..errors import NotProvidedError
    from ..ops.sampling import sample_inputs
    from .oracle import check_sample
    kinks = (not spec.smooth) and data.draw(st.booleans(), label="exactly at kinks and ties")
    # one example in EDGE_ODDS is an edge sample; shrinking goes towards an ordinary one
    edges = data.draw(st.sampled_from([False] * (EDGE_ODDS - 1) + [True]), label="edge sample")
    gen = HypothesisGen(data, dtype, kinks=kinks, edges=edges)
    inputs, params = sample_inputs(spec, gen)
    try:
        report = check_sample(spec, inputs, params, cotangent_gen=gen, engine=engine)
    except NotProvidedError:
        if engine is None:
            raise
        reject()
    if on_report is not None:
        on_report(report)
    if not report.passed:
        fail_with_reproducer(report, context, directory, write)
    return report


EDGE_SWEEP = 4      # scheduled edge samples per op and dtype in the pytest suite (check_edge_sweep)


def check_edge_sweep(spec, dtype, count=EDGE_SWEEP, seed=0, directory=None, engine=None):
    """The op's edge samples on a schedule, not at random: `count` draws of RandomGen in edge mode (every
    other one also exactly at kinks for a non-smooth op), each checked like a hypothesis example. The
    properties draw an edge sample one time in four and an empty input one time in twelve, so a bug that
    shows on one rare input can go unseen in a short run; this sweep reaches 0-d, empty and non-finite
    inputs every time. Raises CheckFailure (with a reproducer) at the first failing sample."""
    from ..ops.sampling import sample_inputs
    from . import reproducer
    from .gen import RandomGen
    from .oracle import CheckFailure, check_sample
    for k in range(count):
        gen = RandomGen(seed=(seed, 7, k), dtype=dtype, edges=True, kinks=not spec.smooth and k % 2 == 1)
        inputs, params = sample_inputs(spec, gen)
        report = check_sample(spec, inputs, params, cotangent_gen=gen, seed=k, engine=engine)
        if not report.passed:
            report.reproducer = reproducer.write(report.program, report, directory=directory)
            raise CheckFailure(report)


def check_graph_example(data, dtype, require_op=None, max_ops=None, context=None, on_report=None, directory=None,
                        engine=None, write=None):
    """One hypothesis example of graph fuzzing: a random DAG of registry ops, every leaf checked.
    engine: an adapter checked instead of scratch_grad, its graphs drawn from the ops it provides."""
    from hypothesis import assume
    from .graphs import MAX_OPS, build_graph, check_graph
    registry = None
    if engine is not None:
        from ..ops import REGISTRY
        registry = {name: spec for name, spec in REGISTRY.items() if name in engine.ops}
    gen = HypothesisGen(data, dtype)
    program = build_graph(gen, require_op=require_op, max_ops=max_ops or MAX_OPS, attempts=1, registry=registry)
    assume(program is not None)
    report = check_graph(program, engine=engine)
    if on_report is not None:
        on_report(report)
    if not report.passed:
        fail_with_reproducer(report, context, directory, write)
    return report


def _database_key(test, key):
    """Tests built by the same closure share their source: give each its own example-database key."""
    test.hypothesis.inner_test._hypothesis_internal_add_digest = key.encode()


def op_property(spec, dtype, max_examples=None, example_kwargs=None, **settings_kwargs):
    """A runnable hypothesis test (call it) checking one op in one dtype. example_kwargs go to
    check_op_example (on_report, directory, engine, write)."""
    example_kwargs = example_kwargs or {}
    @settings(max_examples=max_examples or budget().op_examples, **settings_kwargs)
    @given(data=st.data())
    def op_parity(data):
        check_op_example(data, spec, dtype, **example_kwargs)
    _database_key(op_parity, f"op:{spec.name}:{dtype}")
    return op_parity


def graph_property(dtype, max_examples=None, require_op=None, max_ops=None, example_kwargs=None,
                   **settings_kwargs):
    """A runnable hypothesis test (call it) fuzzing random graphs in one dtype. example_kwargs go to
    check_graph_example (on_report, directory, engine, write)."""
    example_kwargs = example_kwargs or {}
    max_ops = max_ops or budget().max_ops

    @settings(max_examples=max_examples or budget().graph_examples, **settings_kwargs)
    @given(data=st.data())
    def graph_parity(data):
        check_graph_example(data, dtype, require_op=require_op, max_ops=max_ops, **example_kwargs)
    _database_key(graph_parity, f"graph:{require_op or '*'}:{dtype}")
    return graph_parity


NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
__all__ = ["BUDGETS", "Budget", "HypothesisGen", "NO_SHRINK", "budget", "check_graph_example", "check_op_example",
           "current_profile", "element_strategy", "fail_with_reproducer", "graph_property", "op_property",
           "register_profiles"]
