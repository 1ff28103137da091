"""Shape ops: the VJP of each is another shape op applied to g (so all are twice differentiable)."""
import math

import numpy as np
from .lazy_torch import torch

from .registry import REAL, OpSpec, export, make_function, refuse_keywords, register
from .sampling import Real, draw_params, with_negative_axes
from ..engine import raw, sum_to_array


def _shape_op(name, forward, vjp, reference, sample, **flags):
    return register(OpSpec(name, forward, (vjp,), reference, (REAL,), "shape", sample=sample, **flags))


def _reshape_sample(gen):
    shape = gen.shape(min_side=0)
    size = int(np.prod(shape))
    targets = [(size,), (-1,), tuple(reversed(shape)), (1,) + tuple(shape), tuple(shape) + (1,), size, -1]
    if len(shape) >= 2:
        targets.append((shape[0] * shape[1],) + tuple(shape[2:]))
    if size == 1:
        targets.append(())
    return (gen.array(shape),), {"shape": gen.choice(targets)}


reshape = _shape_op("reshape", lambda x, shape: np.reshape(x, shape),
                    lambda g, out, x, shape: reshape(g, raw(x).shape),
                    lambda x, shape: torch.reshape(x, (shape,) if isinstance(shape, int) else shape), _reshape_sample)


def _transpose_sample(gen):
    # a permutation written with negative axes, which in edge mode is not its own inverse
    # (the VJP must apply the inverse permutation)
    shape = gen.shape(min_side=0)
    ndim = len(shape)
    axes = gen.permutation(ndim)
    axes = tuple(with_negative_axes(axes, ndim, [gen.boolean() for _ in axes]))
    return (gen.array(shape),), {"axes": gen.choice([axes, None])}


def _transpose_forward(x, axes=None):
    if axes is not None and len(axes) != x.ndim:
        raise ValueError(f"axes {axes} do not match an array of {x.ndim} dimensions")
    return np.transpose(x, axes)


def _transpose_vjp(g, out, x, axes=None):
    # the inverse permutation; negative axes are made non-negative first (argsort of (-2, -1, 0)
    # is not the inverse of the permutation (1, 2, 0) it names)
    if axes is None:
        return transpose(g)
    ndim = len(axes)
    return transpose(g, axes=tuple(int(k) for k in np.argsort([a % ndim for a in axes])))


transpose = _shape_op("transpose", _transpose_forward, _transpose_vjp,
                      lambda x, axes=None: x.permute(tuple(reversed(range(x.dim()))) if axes is None else axes),
                      _transpose_sample,
                      examples=(
                          # permutations that are not their own inverse, given with negative axes
                          ((np.arange(24.0).reshape(2, 3, 4),), {"axes": (-2, -1, 0)}),
                          ((np.arange(24.0).reshape(2, 3, 4),), {"axes": (1, -1, -3)}),
                          ((np.arange(120.0).reshape(2, 3, 4, 5),), {"axes": (-1, 0, -3, 2)}),
                          ((np.ones((0, 2)),), {"axes": (-1, 0)}),
                      ))


def _broadcast_sample(gen):
    small, big = gen.broadcastable_shapes(2, min_side=0)
    target = np.broadcast_shapes(small, big)
    return (gen.array(small),), {"shape": tuple(target)}


def _broadcast_forward(x, shape):
    # small results are cheaper to materialize (~0.5 us) than to view: np.broadcast_to spends ~3 us
    # in Python; large ones stay zero-copy views
    if type(x) is not np.ndarray:
        x = np.asarray(x)
    if type(shape) is not tuple:
        shape = tuple(shape)
    if math.prod(shape) > 65536:
        return np.broadcast_to(x, shape)
    if x.ndim > len(shape):
        raise ValueError(f"cannot broadcast shape {x.shape} to the smaller rank shape {shape}")
    out = np.empty(shape, dtype=x.dtype)
    out[...] = x   # raises on shapes that do not broadcast
    return out


broadcast_to = _shape_op("broadcast_to", _broadcast_forward,
                         lambda g, out, x, shape: sum_to(g, raw(x).shape),
                         lambda x, shape: torch.broadcast_to(x, shape), _broadcast_sample, method=True)


def _sum_to_sample(gen):
    small, big = gen.broadcastable_shapes(2, min_side=0)
    target = np.broadcast_shapes(small, big)
    return (gen.array(target),), {"shape": tuple(small)}


def _torch_sum_to(x, shape):
    lead = x.dim() - len(shape)
    if lead:
        x = x.sum(dim=tuple(range(lead)))
    return x.sum_to_size(shape) if shape else x.sum()


# the adjoint of broadcast_to; the engine uses it to undo broadcasting in create_graph mode
sum_to = _shape_op("sum_to", lambda x, shape: sum_to_array(x, tuple(shape)),
                   lambda g, out, x, shape: broadcast_to(g, raw(x).shape), _torch_sum_to, _sum_to_sample)


def _squeeze_sample(gen):
    # axis: None, one size-1 axis (maybe negative) or a tuple of them
    shape = list(gen.shape(max_dims=3, min_side=0))
    position = gen.integer(0, len(shape))
    shape.insert(position, 1)
    other = gen.integer(0, len(shape))
    shape.insert(other, 1)
    position += other <= position
    both = tuple(sorted({position, other}))
    axis = gen.choice([position - len(shape), None, position, both, tuple(a - len(shape) for a in reversed(both))])
    return (gen.array(tuple(shape)),), {"axis": axis}


squeeze = _shape_op("squeeze", lambda x, axis=None: np.squeeze(x, axis=axis),
                    lambda g, out, x, axis=None: reshape(g, raw(x).shape),
                    lambda x, axis=None: torch.squeeze(x) if axis is None else torch.squeeze(x, axis), _squeeze_sample,
                    method=True)


def _unsqueeze_sample(gen):
    # an int (maybe negative) or, as np.expand_dims takes, a tuple of positions in the result
    shape = gen.shape(min_side=0)
    new = gen.choice([1, 2])
    ndim = len(shape) + new
    positions = with_negative_axes(gen.permutation(ndim)[:new], ndim, [gen.boolean() for _ in range(new)])
    return (gen.array(shape),), {"axis": positions[0] if new == 1 else tuple(positions)}


def _torch_unsqueeze(x, axis):
    if isinstance(axis, int):
        return torch.unsqueeze(x, axis)
    ndim = x.dim() + len(axis)
    for position in sorted(a % ndim for a in axis):
        x = torch.unsqueeze(x, position)
    return x


unsqueeze = _shape_op("unsqueeze", lambda x, axis: np.expand_dims(x, axis),
                      lambda g, out, x, axis: reshape(g, raw(x).shape),
                      _torch_unsqueeze, _unsqueeze_sample, method=True)
expand_dims = export(unsqueeze, "expand_dims")   # NumPy's name beside torch's


def _flip_sample(gen):
    shape = gen.shape(min_dims=1, min_side=0)
    return (gen.array(shape),), {"axis": gen.axis(len(shape))}


def _flip_forward(x, axis=None):
    # a 0-d x takes axis 0 or -1 (as torch.flip), which NumPy refuses: nothing to reverse
    if np.ndim(x) == 0 and axis is not None:
        axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
        bad = [a for a in axes if a not in (0, -1)]
        if bad:
            raise np.exceptions.AxisError(int(bad[0]), 0)
        if len(axes) > 1:
            raise np.exceptions.AxisError(f"axis {axis!r} names the one axis of a 0-d input more than once")
        return np.asarray(x)
    return np.flip(x, axis=axis)


flip = _shape_op("flip", _flip_forward,
                 lambda g, out, x, axis=None: flip(g, axis=axis),
                 lambda x, axis=None: torch.flip(x, tuple(range(x.dim())) if axis is None else
                                                 ((axis,) if isinstance(axis, int) else tuple(axis))),
                 _flip_sample,
                 examples=(
                     ((np.array(1.5),), {"axis": 0}),          # a 0-d input takes axis 0 or -1, as in torch
                     ((np.array(1.5),), {"axis": (-1,)}),
                 ), method=True)


def _pad_sample(gen):
    # pad_width in NumPy's three forms: one (before, after) per axis, one pair for all, one int for all
    shape = gen.shape(min_dims=1, min_side=0)
    widths = tuple((gen.integer(0, 2), gen.integer(0, 2)) for _ in shape)
    pad_width = gen.choice([widths, widths[0], widths[0][0]])
    return (gen.array(shape),), draw_params(pad.spec, gen, pad_width=pad_width)


def _pad_forward(x, pad_width, constant_values=0.0):
    return np.pad(x, pad_width, mode="constant", constant_values=constant_values)


def _unpad(g, out, x, pad_width, constant_values=0.0):
    widths = _pad_widths(pad_width, raw(x).ndim)
    return g[tuple(slice(before, before + n) for (before, _), n in zip(widths, raw(x).shape))]


def _pad_widths(pad_width, ndim):
    """pad_width as one (before, after) pair per axis, with np.pad's broadcasting of an int or one pair."""
    widths = np.asarray(pad_width, dtype=int)
    return np.broadcast_to(widths.reshape(-1, 2) if widths.ndim else widths, (ndim, 2))


def _torch_pad(x, pad_width, constant_values=0.0):
    widths = _pad_widths(pad_width, x.dim())
    flat = [int(v) for pair in reversed(widths) for v in pair]  # torch lists the last dim first
    return torch.nn.functional.pad(x, flat, mode="constant", value=constant_values)


pad = _shape_op("pad", _pad_forward, _unpad, _torch_pad, _pad_sample,
                params={"constant_values": Real(-2.0, 2.0, edges=(0.0, 1e4))},
                examples=(
                    ((np.ones((2, 3)),), {"pad_width": 1}),                       # one int for every side
                    ((np.ones((2, 3)),), {"pad_width": (1, 2)}),                  # one pair for every axis
                    ((np.ones((2, 3)),), {"pad_width": ((1, 0),)}),
                ))


# ---- several inputs or outputs ----------------------------------------------------------------------
def _same_shapes_sample(gen, concatenating):
    # concatenate: pieces of any length along axis (size 0 in edge mode); stack: 0-d pieces in edge mode
    shape = gen.shape(min_dims=1 if concatenating else 0, min_side=0)
    axis = gen.integer(-len(shape), len(shape) - 1) if concatenating else gen.integer(-len(shape) - 1, len(shape))
    shapes = []
    for _ in range(gen.integer(1, 3)):
        s = list(shape)
        if concatenating:
            s[axis] = gen.integer(0 if gen.edges else 1, 3)
        shapes.append(tuple(s))
    return tuple(gen.array(s) for s in shapes), {"axis": axis}


def _concatenate_vjp(g, out, *xs, index, axis=0):
    start = int(np.sum([raw(x).shape[axis] for x in xs[:index]], dtype=int))
    piece = [slice(None)] * raw(g).ndim
    piece[axis] = slice(start, start + raw(xs[index]).shape[axis])
    return g[tuple(piece)]


# variadic: call as concatenate(a, b, c, axis=0) or concatenate([a, b, c], axis=0)
_concatenate = register(OpSpec(
    "concatenate", lambda *xs, axis=0: np.concatenate(xs, axis=axis), (_concatenate_vjp,),
    lambda *xs, axis=0: torch.cat(xs, dim=axis), (REAL,), "shape",
    sample=lambda gen: _same_shapes_sample(gen, True), variadic=True))


def _stack_vjp(g, out, *xs, index, axis=0):
    piece = [slice(None)] * raw(g).ndim
    piece[axis] = index
    return g[tuple(piece)]


_stack = register(OpSpec(
    "stack", lambda *xs, axis=0: np.stack(xs, axis=axis), (_stack_vjp,),
    lambda *xs, axis=0: torch.stack(xs, dim=axis), (REAL,), "shape",
    sample=lambda gen: _same_shapes_sample(gen, False), variadic=True))


@export
def concatenate(arrays, *more, axis=0, **unknown):
    """concatenate([a, b], axis) like NumPy, or concatenate(a, b, axis=axis)."""
    if unknown:
        raise refuse_keywords("concatenate", unknown, ("axis",))
    xs = tuple(arrays) if isinstance(arrays, (list, tuple)) else (arrays,) + more
    return _concatenate(*xs, axis=axis)


@export
def stack(arrays, *more, axis=0, **unknown):
    if unknown:
        raise refuse_keywords("stack", unknown, ("axis",))
    xs = tuple(arrays) if isinstance(arrays, (list, tuple)) else (arrays,) + more
    return _stack(*xs, axis=axis)


def _split_bounds(length, sections):
    """The [start, stop) of every piece, with np.split's meaning of `sections` (a count or indices)."""
    if isinstance(sections, (int, np.integer)):
        if sections <= 0 or length % sections:
            raise ValueError(f"cannot split an axis of length {length} into {sections} equal sections")
        step = length // sections
        cuts = [step * k for k in range(1, sections)]
    else:
        # np.split cuts x[start:stop] with Python's slice rules: a negative index counts from the end
        cuts = [int(c) + length if int(c) < 0 else int(c) for c in sections]
    edges = [0] + [min(max(c, 0), length) for c in cuts] + [length]
    return [(a, max(a, b)) for a, b in zip(edges[:-1], edges[1:])]


def _split_piece_forward(x, sections, index, axis=0):
    start, stop = _split_bounds(x.shape[axis], sections)[index]
    piece = [slice(None)] * x.ndim
    piece[axis] = slice(start, stop)
    return x[tuple(piece)]


def _split_piece_vjp(g, out, x, sections, index, axis=0):
    # the piece's gradient padded with zeros back to the whole axis
    length = raw(x).shape[axis]
    start, stop = _split_bounds(length, sections)[index]
    widths = [(0, 0)] * raw(x).ndim
    widths[axis] = (start, length - stop)
    return pad(g, pad_width=tuple(widths))


def _split_sample(gen):
    # sections: a count that divides the axis, or cut indices, which may repeat, decrease or pass the
    # end (empty pieces, as np.split and torch.tensor_split)
    shape = gen.shape(min_dims=1, min_side=0)
    axis = gen.integer(-len(shape), len(shape) - 1)
    length = shape[axis]
    counts = [1] + ([length] if length else [])
    sections = gen.choice(counts + ([[1]] if length > 1 else []) + [[0, length]])
    if gen.edges:
        sections = gen.choice([sections, [length + 1], [1, 1], [length, 0], []])
    n_pieces = sections if isinstance(sections, int) else len(sections) + 1
    return (gen.array(shape),), {"sections": sections, "index": gen.integer(0, n_pieces - 1), "axis": axis}


def _torch_split_piece(x, sections, index, axis=0):
    return torch.tensor_split(x, sections, dim=axis)[index]


# one piece of np.split; `split` below returns all of them
_split_piece = register(OpSpec(
    "split", lambda x, sections, index, axis=0: _split_piece_forward(x, sections, index, axis),
    (_split_piece_vjp,), _torch_split_piece, (REAL,), "shape", sample=_split_sample,
    examples=(
        ((np.arange(24.0).reshape(2, 3, 4),), {"sections": [-1], "index": 0, "axis": -1}),   # x[..., :-1]
        ((np.arange(24.0).reshape(2, 3, 4),), {"sections": [-1], "index": 1, "axis": -1}),   # x[..., -1:]
        ((np.arange(24.0).reshape(2, 3, 4),), {"sections": [3, 1], "index": 1, "axis": -2}),
    )))


@export
def split(x, sections, axis=0, **unknown):
    """np.split: `sections` equal pieces, or pieces cut at the given indices."""
    if unknown:
        raise refuse_keywords("split", unknown, ("axis",))
    n = sections if isinstance(sections, (int, np.integer)) else len(sections) + 1
    _split_bounds(np.shape(raw(x))[axis], sections)  # validate before making pieces
    return [_split_piece(x, sections=sections, index=k, axis=axis) for k in range(n)]


# not in the registry: casting is how the engine returns a float32 gradient to a float32 input
astype = export(make_function(OpSpec(
    "astype", lambda x, dtype: x.astype(dtype), (lambda g, out, x, dtype: astype(g, dtype=raw(x).dtype),),
    lambda x, dtype: x.to(getattr(torch, np.dtype(dtype).name)), (REAL,), "shape")), method=True)
