"""Indexing: basic slicing (steps, negative indices), integer arrays (repeats accumulate), boolean masks."""
import numpy as np
from .lazy_torch import torch

from .registry import NOT_DIFFERENTIABLE, REAL, OpSpec, export, register
from ..engine import Variable, raw


def normalize_index(index):
    """Variables and lists inside an index become arrays; the result is always a tuple."""
    if not isinstance(index, tuple):
        index = (index,)
    return tuple(raw(i) if isinstance(i, Variable) else np.asarray(i) if isinstance(i, list) else i for i in index)


def _is_basic(index):
    """Ints, slices, None and Ellipsis select each element at most once."""
    return all(isinstance(i, (int, np.integer, slice, type(None), type(Ellipsis))) for i in index)


def _scatter_add_forward(g, index, shape):
    # the adjoint of x[index]: put g back where it was taken from; repeated integer indices
    # must add up (np.add.at), not overwrite (z[index] = g keeps only the last)
    z = np.zeros(shape, dtype=g.dtype)
    if _is_basic(index):
        z[index] = g
    else:
        np.add.at(z, index, g)
    return z


def _flat_positions(shape, index):
    """Where each selected element sits in the flattened input: NumPy's own semantics of `index`
    (negative steps, masks, repeats), so the torch reference can gather by these positions."""
    return torch.as_tensor(np.array(np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)[index]))


def _torch_getitem(x, index):
    return x.reshape(-1)[_flat_positions(tuple(x.shape), index)]


def _torch_scatter_add(g, index, shape):
    positions = _flat_positions(tuple(shape), index).reshape(-1)
    return torch.zeros(int(np.prod(shape)), dtype=g.dtype).index_add(0, positions, g.reshape(-1)).reshape(shape)


def _repeated_negative(gen, length, count):
    """`count` (>= 2) integer indices into an axis of `length` with a repeat and a negative one:
    the repeats' gradients must add up, and -k must land where length - k does."""
    index = gen.integers((count,), -length, length)
    index[-1] = index[0]
    if index.min() >= 0:
        index[gen.integer(0, count - 1)] -= length
    return index


def _index_sample(gen):
    shape = gen.shape(min_dims=1, min_side=1)
    kinds = ["slice", "int", "array", "mask", "mixed", "two arrays"]
    if gen.edges:   # empty selections, Ellipsis and new axes, all-negative repeats, 0-d x
        kinds += ["empty", "ellipsis", "0-d"]
    kind = gen.choice(kinds)
    if kind == "slice":
        index = tuple(slice(gen.choice([None, 0, -1, 1]), gen.choice([None, -1, n]), gen.choice([None, 1, 2, -1]))
                      for n in shape)
    elif kind == "int":
        index = (gen.integer(-shape[0], shape[0] - 1),)
    elif kind == "array":   # repeated and negative indices on purpose: their gradients must accumulate
        index = (_repeated_negative(gen, shape[0], gen.integer(2, 5)),)
    elif kind == "mask":
        index = (gen.mask(shape),)
    elif kind == "mixed":
        index = (slice(None, None, gen.choice([1, -1])), gen.integers((3,), 0, shape[1])) if len(shape) > 1 else \
            (gen.integers((2, 2), 0, shape[0]),)
    elif kind == "two arrays":   # advanced indices on two axes, broadcast against each other
        count = gen.integer(2, 3)
        index = (_repeated_negative(gen, shape[0], count),) + \
            ((_repeated_negative(gen, shape[1], count)[::-1],) if len(shape) > 1 else ())
    elif kind == "empty":
        index = gen.choice([(slice(2, 1),), (np.zeros(0, dtype=np.int64),), (np.zeros(shape, dtype=bool),)])
    elif kind == "ellipsis":
        index = gen.choice([(Ellipsis, -1), (None, Ellipsis), (Ellipsis, None, slice(None, None, -1)),
                            (-1, None, Ellipsis)])
    else:
        shape = ()
        index = gen.choice([(), (Ellipsis,), (None,)])
    return (gen.array(shape),), {"index": index}


def _scatter_sample(gen):
    (x,), params = _index_sample(gen)
    return (gen.array(x[params["index"]].shape),), {"index": params["index"], "shape": x.shape}


getitem = register(OpSpec(
    "getitem", lambda x, index: x[index],
    (lambda g, out, x, index: scatter_add(g, index=index, shape=raw(x).shape),),
    _torch_getitem, (REAL,), "indexing", sample=_index_sample))

scatter_add = register(OpSpec(
    "scatter_add", _scatter_add_forward, (lambda g, out, x, index, shape: getitem(g, index=index),),
    _torch_scatter_add, (REAL,), "indexing", sample=_scatter_sample))


@export
def take(x, index):
    """x[index] with the index normalized (what Variable.__getitem__ calls)."""
    return getitem(x, index=normalize_index(index))

