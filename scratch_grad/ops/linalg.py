"""Linear algebra: matmul (1-D, 2-D, batched with broadcast batch dims)."""
import numpy as np
import torch

from .registry import REAL, OpSpec, register
from .shape import reshape, transpose
from ..engine import Variable


def _raw(x):
    return x._data if isinstance(x, Variable) else x


def _swap_last(x):
    ndim = _raw(x).ndim
    return transpose(x, axes=tuple(range(ndim - 2)) + (ndim - 1, ndim - 2))


def _as_matrices(g, x, y):
    """Promote 1-D operands as matmul does ((k,) -> (1, k) on the left, (k, 1) on the right) and give
    g the matching (..., n, m) shape."""
    x_vec, y_vec = _raw(x).ndim == 1, _raw(y).ndim == 1
    x2 = reshape(x, (1,) + _raw(x).shape) if x_vec else x
    y2 = reshape(y, _raw(y).shape + (1,)) if y_vec else y
    g_shape = _raw(g).shape
    if x_vec:
        g_shape = g_shape[:-1] + (1,) + g_shape[-1:] if not y_vec else (1, 1)
    if y_vec:
        g_shape = g_shape + (1,) if not x_vec else (1, 1)
    return reshape(g, g_shape), x2, y2


def _matmul_vjp_x(g, out, x, y):
    g2, x2, y2 = _as_matrices(g, x, y)
    gx = g2 @ _swap_last(y2)                      # (..., n, k); the engine sums broadcast batch dims
    if _raw(x).ndim == 1:
        gx = reshape(gx, _raw(gx).shape[:-2] + _raw(gx).shape[-1:])
    return gx


def _matmul_vjp_y(g, out, x, y):
    g2, x2, y2 = _as_matrices(g, x, y)
    gy = _swap_last(x2) @ g2                      # (..., k, m)
    if _raw(y).ndim == 1:
        gy = reshape(gy, _raw(gy).shape[:-1])
    return gy


def _matmul_forward(x, y):
    if np.ndim(x) == 0 or np.ndim(y) == 0:
        raise ValueError("matmul needs arrays of at least 1 dimension (use mul for scalars)")
    return np.matmul(x, y)


def _matmul_sample(gen):
    n, k, m = gen.integer(1, 4), gen.integer(1, 4), gen.integer(1, 4)
    batch_x, batch_y = gen.broadcastable_shapes(2, max_dims=2)
    form = gen.choice(["matrix", "vector-left", "vector-right", "vector-both"])
    x_shape = (k,) if form in ("vector-left", "vector-both") else tuple(batch_x) + (n, k)
    y_shape = (k,) if form in ("vector-right", "vector-both") else tuple(batch_y) + (k, m)
    return (gen.array(x_shape), gen.array(y_shape)), {}


matmul = register(OpSpec("matmul", _matmul_forward, (_matmul_vjp_x, _matmul_vjp_y), torch.matmul, (REAL, REAL),
                         "matmul", sample=_matmul_sample))
