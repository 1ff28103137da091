"""Run a Program (scratch_grad/testing/program.py) on an engine adapter.

The program is replayed step by step through the adapter's op table, as `Program.run_torch`
replays it through each registry entry's torch reference. With L = sum_k <output_k, cotangent_k>:

    outputs       the outputs' values
    gradients     dL/dx for every differentiable leaf x (the program's requires_grad leaves)
    second        d<grad L, w>/dx, w one direction per differentiable leaf: a VJP of the VJP,
                  with the first gradients as outputs and w as their cotangents
    jvp           J t for every output, t one tangent per differentiable leaf

as ndarrays in the engine's own dtypes (a float64 gradient for a float32 input is the engine's
doing, and the checker should see it). Gradients the engine leaves as None (L does not depend on
that leaf) are zeros. Each pass builds fresh leaf tensors, so tape engines never accumulate.

An exception the engine raises in the forward pass or the first VJP propagates (nothing can be
compared). One raised while computing second order or the JVP is kept in `errors["second"]` or
`errors["jvp"]` (those fields stay None), so the first order is still checked: autograd, say,
differentiates erf in reverse mode but defines no JVP for it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import NotProvidedError


@dataclass
class EngineResult:
    engine: str
    outputs: list
    gradients: list                      # per differentiable leaf, in program.differentiable_leaves() order
    second: list | None = None           # per differentiable leaf; None when not computed
    jvp: list | None = None              # per output; None when not computed
    directions: list | None = None       # the w of `second`
    tangents: list | None = None         # the t of `jvp`
    errors: dict = field(default_factory=dict)   # "second" / "jvp" -> the exception the engine raised


def check_provided(program, engine):
    """Raise NotProvidedError naming every op of the program the engine lacks, or its dtype."""
    missing = [name for name in program.op_names() if name not in engine.ops]
    if missing:
        raise NotProvidedError(f"engine '{engine.name}' does not provide: "
                               + ", ".join(f"op '{name}'" for name in missing), ops=missing)
    dtype = np.dtype(program.dtype).name
    if dtype not in engine.capabilities.dtypes:
        raise NotProvidedError(f"engine '{engine.name}' does not provide dtype {dtype} "
                               f"(its dtypes: {', '.join(engine.capabilities.dtypes)})")


class _Replay:
    """The program as a function of its differentiable leaves, in the engine's tensors."""

    def __init__(self, program, engine):
        self.program, self.engine = program, engine
        self.wanted = program.differentiable_leaves()
        # constants: arrays become engine tensors without grad (targets and masks keep their dtype);
        # Python scalars are passed as they are, as run_torch does
        self.constants = [engine.tensor(c, requires_grad=False) if isinstance(c, np.ndarray) else c
                          for c in program.constants]
        self.fixed = {k: engine.tensor(v, requires_grad=False)
                      for k, v in enumerate(program.leaves) if k not in self.wanted}

    def leaves(self):
        """Fresh tensors of the differentiable leaves (requires_grad=True)."""
        return [self.engine.tensor(self.program.leaves[k], requires_grad=True) for k in self.wanted]

    def arrays(self, values):
        """Engine tensors (without grad) of per-leaf or per-output arrays: cotangents, directions, tangents."""
        return tuple(self.engine.tensor(np.asarray(v), requires_grad=False) for v in values)

    def __call__(self, *differentiable):
        leaves = dict(self.fixed)
        leaves.update(zip(self.wanted, differentiable))
        values = []
        for step in self.program.steps:
            args = [leaves[ref.index] if ref.kind == "leaf" else values[ref.index] if ref.kind == "step"
                    else self.constants[ref.index] for ref in step.args]
            try:
                values.append(self.engine.ops[step.spec.name](*args, **step.params))
            except NotProvidedError as exc:
                raise NotProvidedError(f"engine '{self.engine.name}', op '{step.spec.name}' with params "
                                       f"{step.params}: {exc}", ops=[step.spec.name]) from None
        return tuple(values[k] for k in self.program.outputs)


def _numpy(engine, values, like):
    """Engine results as ndarrays; None (no dependence) becomes zeros shaped like `like`."""
    return [np.zeros(np.shape(ref), dtype=np.asarray(ref).dtype) if v is None else np.array(engine.to_numpy(v))
            for v, ref in zip(values, like)]


def prepared_vjp(program, engine):
    """A no-argument callable: the engine's forward and first VJP of `program` (the cotangents fixed),
    on leaf tensors made once, returning (outputs, gradients) as ndarrays (None where the engine
    gives none). What a benchmark times: the same work run_program's first order does, without the
    conversions from NumPy. Raises NotProvidedError when the engine lacks an op or the dtype."""
    check_provided(program, engine)
    replay = _Replay(program, engine)
    leaves, cotangents = replay.leaves(), replay.arrays(program.cotangents)

    def forward_backward():
        outputs, gradients = engine.vjp(replay, leaves, cotangents)
        return ([engine.to_numpy(o) for o in outputs],
                [None if g is None else engine.to_numpy(g) for g in gradients])
    return forward_backward


def run_program(program, engine, *, second_order=None, forward_mode=None, directions=None, tangents=None,
                seed=0):
    """An EngineResult: `program` run by `engine` (an adapter, see scratch_grad.testing.engines).

    second_order / forward_mode: None = when the engine declares the capability (and, for second
    order, every op of the program is declared twice differentiable); True when the engine lacks
    it raises NotProvidedError. directions (w) and tangents (t): one array per differentiable leaf,
    random uniform(-1, 1) from `seed` when not given. Raises NotProvidedError listing the ops the
    engine lacks; exceptions raised by the engine itself propagate (they are findings)."""
    check_provided(program, engine)
    capabilities = engine.capabilities
    if second_order is None:
        second_order = capabilities.second_order and program.twice_differentiable()
    if forward_mode is None:
        forward_mode = capabilities.forward_mode
    if second_order and not capabilities.second_order:
        raise NotProvidedError(f"engine '{engine.name}' does not provide second order (vjp with create_graph)")
    if forward_mode and not capabilities.forward_mode:
        raise NotProvidedError(f"engine '{engine.name}' does not provide forward mode (jvp)")
    replay = _Replay(program, engine)
    wanted_leaves = [program.leaves[k] for k in replay.wanted]
    rng = np.random.default_rng(seed)
    dtype = program.dtype
    if second_order and directions is None:
        directions = [rng.uniform(-1, 1, size=np.shape(x)).astype(dtype) for x in wanted_leaves]
    if forward_mode and tangents is None:
        tangents = [rng.uniform(-1, 1, size=np.shape(x)).astype(dtype) for x in wanted_leaves]
    cotangents = replay.arrays(program.cotangents)

    if not replay.wanted:            # nothing to differentiate: the forward values only
        outputs = replay()
        return EngineResult(engine.name, [np.array(engine.to_numpy(o)) for o in outputs], [])
    outputs, gradients = engine.vjp(replay, replay.leaves(), cotangents)
    result = EngineResult(engine.name, [np.array(engine.to_numpy(o)) for o in outputs],
                          _numpy(engine, gradients, wanted_leaves), directions=directions, tangents=tangents)
    if second_order:
        zeros = replay.arrays(np.zeros(np.shape(x), dtype=dtype) for x in wanted_leaves)

        def first_gradients(*leaves):
            _, grads = engine.vjp(replay, leaves, cotangents, create_graph=True)
            # a gradient that does not depend on the leaves is a constant: zeros stand in for None
            return tuple(zero if g is None else g for g, zero in zip(grads, zeros))

        try:
            _, second = engine.vjp(first_gradients, replay.leaves(), replay.arrays(directions))
            result.second = _numpy(engine, second, wanted_leaves)
        except Exception as exc:  # noqa: BLE001 - the engine's failure is a finding, reported by the caller
            result.errors["second"] = exc
    if forward_mode:
        try:
            _, tangent_outputs = engine.jvp(replay, replay.leaves(), replay.arrays(tangents))
            result.jvp = _numpy(engine, tangent_outputs, result.outputs)
        except Exception as exc:  # noqa: BLE001
            result.errors["jvp"] = exc
    return result
