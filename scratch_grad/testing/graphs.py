"""Random graphs of registry ops, built through the ops' own samplers.

No op is described here: to add a node, the builder picks a registry op and runs its sampler with
a *wiring* generator. When the sampler asks for a shape, the wiring generator often answers with
the shape of a value the graph already has; when it asks for an array of that shape, it often
hands over that existing value (mapped into the op's domain if needed), so the new node consumes
it. Otherwise a fresh leaf (or, sometimes, a constant) is drawn. So every op with a sampler,
including ops added after this file was written, appears in graphs, with fan-out (a value used
by several nodes, or twice by one), broadcasting, reductions, matmuls and shape ops, as the
samplers produce them.

Values that an op's domain forbids are mapped in with a few smooth registry ops, chosen by the
domain's bounds alone: softplus(x) + (low + 0.25) for x > low, a scaled tanh for an interval,
and softplus(x) + (pole + 0.25) for smooth ops with avoided points (poles). Kinks of non-smooth
ops are left reachable on purpose: the oracle classifies them.
"""
import math

import numpy as np

from ..ops.registry import REAL
from ..trace import Ref, Step
from .program import Program

MAX_OPS = 12         # ops chosen per graph (domain adapters come on top)
MAX_NODES = 20       # hard cap on steps, adapters included
VALUE_BOUND = 8.0    # values larger than this are not fed to further ops (exp(exp(x)) overflows)
ADAPTER_OFFSET = 0.25
REUSE_ODDS = 7       # an existing shape / value is offered 7 times in 8 when one fits
EDGE_LEAF_ODDS = 6   # one new leaf in 6 is drawn in edge mode


def _broadcastable(*shapes):
    try:
        np.broadcast_shapes(*shapes)
        return True
    except ValueError:
        return False


class _Node:
    __slots__ = ("ref", "value", "uses")

    def __init__(self, ref, value):
        self.ref = ref
        self.value = value
        self.uses = 0

    def __repr__(self):   # hypothesis prints the drawn choices of a failing example
        return f"<{self.ref.kind} {self.ref.index}, shape {self.value.shape}>"


class _WiringGen:
    """The gen protocol, answering with the graph's existing shapes and values when it can."""

    def __init__(self, builder, spec):
        self._builder = builder
        self._gen = builder.gen
        self._spec = spec
        self.dtype = builder.gen.dtype
        self.kinks = False
        self.edges = False

    def integer(self, lo, hi):
        return self._gen.integer(lo, hi)

    def real(self, lo, hi):
        return self._gen.real(lo, hi)

    def scalar(self, domain=REAL):
        return self._gen.scalar(domain)

    def edge_mode(self, on=True):
        return self

    def choice(self, options):
        return self._gen.choice(options)

    def boolean(self):
        return self._gen.boolean()

    def permutation(self, n):
        return self._gen.permutation(n)

    def axis(self, ndim):
        return self._gen.axis(ndim)

    def integers(self, shape, lo, hi):
        return self._gen.integers(shape, lo, hi)

    def mask(self, shape):
        return self._gen.mask(shape)

    def shape(self, min_dims=0, max_dims=3, min_side=1, max_side=None):
        limit = max_side if max_side is not None else math.inf
        candidates = [s for s in self._builder.usable_shapes()
                      if min_dims <= len(s) <= max_dims and all(min_side <= d <= limit for d in s)]
        if candidates and self._gen.integer(0, REUSE_ODDS) != 0:
            return self._gen.choice(candidates)
        return self._gen.shape(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)

    def broadcastable_shapes(self, n, min_dims=0, max_dims=3, min_side=1):
        usable = [s for s in self._builder.usable_shapes() if min_dims <= len(s) <= max_dims]
        if n == 0:
            return ()
        if not usable or self._gen.integer(0, REUSE_ODDS) == 0:
            return self._gen.broadcastable_shapes(n, min_dims=min_dims, max_dims=max_dims, min_side=min_side)
        base = self._gen.choice(usable)
        shapes = [base]
        for _ in range(n - 1):
            partners = [s for s in usable if _broadcastable(base, s)]
            if partners and self._gen.boolean():
                shapes.append(self._gen.choice(partners))
            else:
                dims = self._gen.integer(min(min_dims, len(base)), len(base))
                tail = base[len(base) - dims:]
                shapes.append(tuple(1 if self._gen.boolean() and self._gen.boolean() else d for d in tail))
        if not _broadcastable(*shapes):
            return self._gen.broadcastable_shapes(n, min_dims=min_dims, max_dims=max_dims, min_side=min_side)
        order = self._gen.permutation(n)
        return tuple(shapes[k] for k in order)

    def array(self, shape, domain=REAL):
        return self._builder.provide(tuple(shape), domain, self._spec)


class GraphBuilder:
    """Builds one random Program from a gen (RandomGen or HypothesisGen)."""

    def __init__(self, gen, registry=None, max_ops=MAX_OPS, max_nodes=MAX_NODES, require_op=None):
        from ..ops import REGISTRY
        # the graph's structure (ops, shapes, axes) is drawn in plain mode; some leaves in edge mode
        self.gen = gen.edge_mode(False) if hasattr(gen, "edge_mode") else gen
        self._edge_gen = gen.edge_mode(True) if hasattr(gen, "edge_mode") else gen
        self.registry = REGISTRY if registry is None else registry
        self.names = sorted(self.registry)
        self.max_ops = max_ops
        self.max_nodes = max_nodes
        self.require_op = require_op
        self.leaves, self.constants, self.steps = [], [], []
        self.nodes = []                 # usable values: leaves and op results
        self._provided = {}             # id(array handed to a sampler) -> Ref
        self._keep_alive = []
        self._adapted = {}              # (ref, domain) -> adapted Ref, so fan-out survives adapting

    # ---- values ---------------------------------------------------------------------------------------
    def value(self, ref):
        if ref.kind == "leaf":
            return self.leaves[ref.index]
        if ref.kind == "step":
            return self.steps[ref.index][1]
        return self.constants[ref.index]

    def usable_shapes(self):
        seen = []
        for node in self.nodes:
            if node.value.shape not in seen:
                seen.append(node.value.shape)
        return seen

    def _hand_over(self, ref, array):
        self._provided[id(array)] = ref
        self._keep_alive.append(array)
        return array

    def _new_leaf(self, shape, domain):
        # one leaf in EDGE_LEAF_ODDS takes edge values (zeros, ties, infinities, large...): ops whose
        # result is not finite are not added (_add_op), so the graph keeps usable values
        edge = self.gen.integer(0, EDGE_LEAF_ODDS - 1) == EDGE_LEAF_ODDS - 1   # shrinks to plain
        array = (self._edge_gen if edge else self.gen).array(shape, domain)
        if self.gen.integer(0, 5) == 0:         # sometimes a constant: a float input with no gradient
            self.constants.append(array)
            return self._hand_over(Ref("const", len(self.constants) - 1), array)
        self.leaves.append(array)
        ref = Ref("leaf", len(self.leaves) - 1)
        self.nodes.append(_Node(ref, array))
        return self._hand_over(ref, array)

    def provide(self, shape, domain, spec):
        """An array for the sampler: an existing value of that shape (adapted to the domain) or a new leaf."""
        candidates = [node for node in reversed(self.nodes) if node.value.shape == shape]
        if domain.differentiable and candidates and self.gen.integer(0, REUSE_ODDS) != 0:
            node = self.gen.choice(candidates)
            ref = self._adapt(node.ref, domain, spec)
            if ref is not None:
                return self._hand_over(ref, self.value(ref))
        return self._new_leaf(shape, domain)

    # ---- domain adapters (smooth maps into the domain, made of registry ops) ----------------------------
    def _apply(self, name, args, params=None):
        spec = self.registry.get(name)
        if spec is None:
            return None
        values = [self.value(a) if isinstance(a, Ref) else a for a in args]
        refs = []
        for a in args:
            if isinstance(a, Ref):
                refs.append(a)
            else:
                self.constants.append(a)
                refs.append(Ref("const", len(self.constants) - 1))
        with np.errstate(all="ignore"):
            out = np.asarray(spec.forward(*values, **(params or {})))
        self.steps.append((Step(spec, tuple(refs), dict(params or {})), out))
        return Ref("step", len(self.steps) - 1)

    def _adapt(self, ref, domain, spec):
        key = (ref, domain)
        if key in self._adapted:
            return self._adapted[key]
        low, high = domain.low, domain.high
        adapted = ref
        if low > -math.inf and high < math.inf:
            half = (high - low) / 2 - ADAPTER_OFFSET
            squashed = self._apply("tanh", [ref])
            scaled = squashed and self._apply("mul", [squashed, half])
            adapted = scaled and self._apply("add", [scaled, (high + low) / 2])
        elif low > -math.inf:
            positive = self._apply("softplus", [ref])
            adapted = positive and self._apply("add", [positive, low + ADAPTER_OFFSET])
        elif high < math.inf:
            positive = self._apply("softplus", [ref])
            negative = positive and self._apply("neg", [positive])
            adapted = negative and self._apply("add", [negative, high - ADAPTER_OFFSET])
        elif domain.avoid and spec.smooth:       # poles: stay on one side of all of them
            positive = self._apply("softplus", [ref])
            adapted = positive and self._apply("add", [positive, max(domain.avoid) + ADAPTER_OFFSET])
        if adapted is not None and adapted != ref:
            value = self.value(adapted)
            if value.dtype != self.gen.dtype:
                adapted = None
        self._adapted[key] = adapted
        return adapted

    # ---- building --------------------------------------------------------------------------------------
    def _add_op(self, name):
        from ..ops.sampling import sample_inputs
        spec = self.registry[name]
        mark = (len(self.steps), len(self.nodes))
        try:
            inputs, params = sample_inputs(spec, _WiringGen(self, spec))
        except Exception as exc:  # noqa: BLE001 - a sampler that cannot use the offered shapes
            if type(exc).__module__.startswith("hypothesis"):
                raise
            return False
        refs = []
        for value in inputs:
            ref = self._provided.get(id(value)) if isinstance(value, np.ndarray) else None
            if ref is None:
                self.constants.append(value)
                ref = Ref("const", len(self.constants) - 1)
            refs.append(ref)
        try:
            with np.errstate(all="ignore"):
                out = np.asarray(spec.forward(*[self.value(r) for r in refs], **params))
        except Exception as exc:  # noqa: BLE001 - a wiring the op rejects is simply not added
            if type(exc).__module__.startswith("hypothesis"):
                raise
            out = None
        if out is None or out.dtype != self.gen.dtype or not np.all(np.isfinite(out)):
            del self.steps[mark[0]:]                # drop adapters made for this attempt
            self._adapted = {k: v for k, v in self._adapted.items()
                             if v is None or v.kind != "step" or v.index < mark[0]}
            return False
        self.steps.append((Step(spec, tuple(refs), dict(params)), out))
        ref = Ref("step", len(self.steps) - 1)
        if out.size and float(np.max(np.abs(out))) <= VALUE_BOUND:
            self.nodes.append(_Node(ref, out))
        return True

    def build(self):
        """A Program, or None when no op could be added (the caller draws again)."""
        for _ in range(self.gen.integer(1, 3)):
            self._new_leaf(self.gen.shape(), REAL)
        count = self.gen.integer(1, self.max_ops)
        required_at = self.gen.integer(0, count - 1) if self.require_op else -1
        for k in range(count):
            if len(self.steps) >= self.max_nodes:
                break
            name = self.require_op if k == required_at else self.gen.choice(self.names)
            self._add_op(name)
        if not self.steps:
            return None
        return self._finish()

    def _finish(self):
        """Keep what the outputs (unconsumed op results) depend on; renumber; draw cotangents."""
        consumed = {r.index for step, _ in self.steps for r in step.args if r.kind == "step"}
        outputs = [k for k in range(len(self.steps)) if k not in consumed]
        live_steps, live_leaves, live_consts = set(), set(), set()
        stack = list(outputs)
        while stack:
            k = stack.pop()
            if k in live_steps:
                continue
            live_steps.add(k)
            for r in self.steps[k][0].args:
                if r.kind == "step":
                    stack.append(r.index)
                elif r.kind == "leaf":
                    live_leaves.add(r.index)
                else:
                    live_consts.add(r.index)
        step_map = {old: new for new, old in enumerate(sorted(live_steps))}
        leaf_map = {old: new for new, old in enumerate(sorted(live_leaves))}
        const_map = {old: new for new, old in enumerate(sorted(live_consts))}
        remap = {"step": step_map, "leaf": leaf_map, "const": const_map}
        steps = []
        for old in sorted(live_steps):
            step = self.steps[old][0]
            steps.append(Step(step.spec, tuple(Ref(r.kind, remap[r.kind][r.index]) for r in step.args), step.params))
        leaves = [self.leaves[k] for k in sorted(live_leaves)]
        constants = [self.constants[k] for k in sorted(live_consts)]
        out_steps = [step_map[k] for k in outputs]
        plain = self.gen.plain() if hasattr(self.gen, "plain") else self.gen
        cotangents = [np.asarray(plain.array(self.steps[k][1].shape), dtype=self.gen.dtype) for k in outputs]
        names = sorted({s.spec.name for s in steps})
        return Program(leaves, [True] * len(leaves), constants, steps, out_steps, cotangents,
                       name="graph", meta={"ops": names})


def build_graph(gen, require_op=None, max_ops=MAX_OPS, attempts=5, registry=None):
    """A random Program from gen; None if `attempts` builds added no op. registry: the ops to draw
    from (default every registry op; for another engine, the ops it provides)."""
    for _ in range(attempts):
        program = GraphBuilder(gen, registry=registry, max_ops=max_ops, require_op=require_op).build()
        if program is not None and program.leaves:
            return program
    return None


def check_graph(program, seed=0, second_order=None, engine=None):
    """Three-way check of a random graph (projection-mode finite differences keep it fast); engine: an
    adapter (testing/engines) to check instead of scratch_grad."""
    from .oracle import check_program
    return check_program(program, second_order=second_order, fd_mode="projection", seed=seed, label="graph",
                         engine=engine)


def localize(program, seed=0, engine=None):
    """For a failing graph: the ops that fail when checked alone on the inputs they saw there.
    An empty list means every op is right on its own: the engine (accumulation, fan-out,
    broadcasting) is at fault."""
    from .faults import raised_by_checker
    from .oracle import check_program
    from .program import single_op_program
    with np.errstate(all="ignore"):
        values = program.evaluate_raw(program.leaves)
    culprits = []
    for step in program.steps:
        inputs = [program.leaves[r.index] if r.kind == "leaf" else values[r.index] if r.kind == "step"
                  else program.constants[r.index] for r in step.args]
        try:
            single = single_op_program(step.spec, inputs, step.params, rng=np.random.default_rng(seed))
            if not single.differentiable_leaves():
                continue
            report = check_program(single, seed=seed, label=step.spec.name, engine=engine)
        except Exception as exc:  # noqa: BLE001 - an op that cannot even run alone on these inputs is guilty
            if raised_by_checker(exc):
                raise
            report = None
        if (report is None or not report.passed) and step.spec.name not in culprits:
            culprits.append(step.spec.name)
    return culprits


def fuzz_graphs(n_graphs=100, seed=0, dtype="float64", require_op=None):
    """Check n_graphs random graphs drawn with RandomGen; returns the list of CheckReports."""
    from .gen import RandomGen
    reports = []
    for k in range(n_graphs):
        gen = RandomGen(seed=(seed, k), dtype=dtype)
        program = build_graph(gen, require_op=require_op)
        if program is not None:
            reports.append(check_graph(program, seed=k))
    return reports
