"""A traced program as data: the inputs it read, its constants, the ops it applied in order, its outputs.

Both sides of the project replay traces. `sg.compile` records one while it runs a function once and
generates straight-line code from it (scratch_grad/compiler/). The checker's programs (a single op on
sampled inputs, a random graph, a user function run once: scratch_grad/testing/program.py) are
traces with cotangents, replayed by scratch_grad, by torch and on raw arrays, and printed as
reproducers.

    leaves         the inputs, as arrays (their values when traced), and whether each requires grad
    constants      inputs without gradient that steps read by index (arrays, Python numbers, None...)
    steps          one per op applied, each after the steps it reads: the op's registry entry, its
                   positional inputs as Refs, its keyword params
    outputs        the steps whose values the program returns

A Ref names a leaf, an earlier step's value or a constant. Params are plain values, fixed when the
step was recorded; only in the compiler's traces, a param that holds the data of an input or of an
earlier step (the index array of `x[idx]`) is a Ref, or a Pack when a tuple holds some: those are read
again at every run. A compiler trace also keeps, per step, the VJPs and the gradient edges the engine
recorded for it (eager mode records no edge under no_grad, and none to a detached value).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEAF, STEP, CONST = "leaf", "step", "const"


@dataclass(frozen=True, order=True)
class Ref:
    """An input of a step: a leaf, an earlier step's result, or a constant (by index). Refs sort by
    kind, then index."""
    kind: str    # LEAF, STEP or CONST
    index: int


@dataclass(frozen=True)
class Pack:
    """A tuple read at every run because some of its items are Refs (the others are plain values)."""
    items: tuple


@dataclass
class Step:
    """One op applied: `spec.forward(*args, **params)` with the Refs resolved."""
    spec: object           # an OpSpec
    args: tuple            # Refs (Packs in compiler traces)
    params: dict           # plain values (Refs and Packs in compiler traces)
    vjps: tuple = None     # compiler traces: the VJP per input that the engine recorded
    edges: tuple = None    # compiler traces: the inputs the engine recorded a gradient edge to


@dataclass
class Trace:
    leaves: list           # ndarrays: the inputs gradients are taken for
    requires_grad: list    # per leaf
    constants: list        # ndarrays or Python values: inputs with no gradient
    steps: list            # Steps in topological order
    outputs: list          # step indices whose results are the outputs

    def resolve(self, value, leaves, values, constants=None):
        """`value` (a Ref, a Pack, or a plain value) with every Ref replaced by what it names: one of
        `leaves`, of the step `values` computed so far, or of `constants` (default: the trace's own)."""
        if type(value) is Ref:
            if value.kind == LEAF:
                return leaves[value.index]
            if value.kind == STEP:
                return values[value.index]
            return (self.constants if constants is None else constants)[value.index]
        if type(value) is Pack:
            return tuple(self.resolve(item, leaves, values, constants) for item in value.items)
        return value

    def evaluate(self, run_step, leaves=None, constants=None, convert_param=None):
        """Every step's value, computed by run_step(step, args, params) in order, with the Refs of args
        and params resolved (`leaves` and `constants` default to the trace's own). A param read from a
        Ref or Pack is passed through convert_param when given (the raw array of a Variable)."""
        leaves = self.leaves if leaves is None else leaves
        values = []
        for step in self.steps:
            args, params = self.inputs_of(step, leaves, values, constants, convert_param)
            values.append(run_step(step, args, params))
        return values

    def inputs_of(self, step, leaves, values, constants=None, convert_param=None):
        """(args, params) of `step` with their Refs resolved (see evaluate)."""
        args = [self.resolve(ref, leaves, values, constants) for ref in step.args]
        params = step.params
        if any(type(value) in (Ref, Pack) for value in params.values()):
            params = {key: self._param(value, leaves, values, constants, convert_param)
                      for key, value in params.items()}
        return args, params

    def _param(self, value, leaves, values, constants, convert):
        if type(value) not in (Ref, Pack):
            return value
        value = self.resolve(value, leaves, values, constants)
        return value if convert is None else convert(value)


def refs_in(value):
    """The Refs inside an arg or param (itself, the items of a Pack), in order."""
    if type(value) is Ref:
        return [value]
    if type(value) is Pack:
        return [ref for item in value.items for ref in refs_in(item)]
    return []


def torch_constant(value, torch_dtype):
    """An array constant as a tensor, floats cast to torch_dtype (kept as they are when it is None);
    other values as they are. Replays in torch (the checker's reference, a compiled node's) read
    constants through it."""
    import torch  # optional: only replays in torch need it
    if isinstance(value, np.ndarray):
        tensor = torch.as_tensor(np.array(value, order="C"))
        return tensor.to(torch_dtype) if value.dtype.kind == "f" and torch_dtype is not None else tensor
    return value
