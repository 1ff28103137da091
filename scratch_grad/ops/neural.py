"""Neural-network ops: softmax and log_softmax, losses, conv2d (with its im2col/col2im helpers),
max_pool2d and dropout.

Every VJP is written with scratch_grad functions, so with create_graph=True it records a graph and
can be differentiated again. conv2d's VJPs are matmuls around `im2col` / `col2im`, two registered
linear ops that are each other's adjoint (so each other's VJP).
"""
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .elementwise import exp, sigmoid
from .indexing import scatter_add
from .lazy_torch import torch
from .linalg import _swap_last
from .reductions import _axes, sum as reduce_sum
from .registry import FINITE, LOGITS, NOT_DIFFERENTIABLE, Domain, OpSpec, export, refuse_keywords, register
from .sampling import Choice, Real, draw_params
from .shape import reshape, transpose
from ..engine import Variable, mode, raw
from ..errors import DomainError, DTypeError, GraphError, ShapeError, describe

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce_loss(losses, reduction):
    if reduction == "none":
        return losses
    return np.asarray(losses.mean() if reduction == "mean" else losses.sum(), dtype=losses.dtype)


def _loss_weight(g, count, reduction):
    """The in-flowing gradient of a loss, per element: g / count for 'mean', g for 'sum' and 'none'
    (0-d g broadcasts; for 'none' it already has the elements' shape)."""
    if reduction != "mean":
        return g
    # an empty batch: the loss is NaN (0/0, as torch) and the gradient empty; no ZeroDivisionError
    return g * (1.0 / count if count else math.inf)


def _same_shapes(op, x, y, names):
    if np.shape(x) != np.shape(y):
        raise ShapeError(f"op '{op}': {names[0]} (input 0, {describe(x)}) and {names[1]} (input 1, {describe(y)}) "
                         "must have the same shape (no broadcasting)")


# ---- softmax, log_softmax ----------------------------------------------------------------------------
def _one_axis(x, axis):
    """softmax's axis as a non-negative int; a 0-d x takes axis 0 or -1, as in torch."""
    axes = _axes(np.ndim(x), axis) if isinstance(axis, (int, np.integer)) else None
    if axes is None:
        raise TypeError(f"axis must be an int, got {axis!r}")
    return axes[0] if axes else 0


def _max_shift(x, axis):
    """x minus its max along axis: every exp() of the result is <= 1, so it never overflows, and the
    largest term is exactly exp(0) = 1, so the sum never underflows to 0. A max of -inf (a row of
    -inf) is replaced by 0, so the row stays -inf rather than becoming NaN through -inf - -inf, as
    torch. A max of +inf is kept: inf - inf makes the row NaN, as torch's softmax and log_softmax of
    a row holding +inf (inf/inf has no value; the finite entries' limit 0 would hide that)."""
    try:
        m = np.maximum.reduce(x, axis=axis, keepdims=True)   # np.max's Python wrapper costs ~1.5 us
    except ValueError:
        if np.size(x) == 0:
            return np.array(x)         # an empty axis: nothing to shift, an empty (fresh) result, as torch
        raise
    return x - np.where(m == -np.inf, 0, m)


def _softmax_forward(x, axis=-1):
    axis = _one_axis(x, axis)
    e = np.exp(_max_shift(x, axis))
    e /= np.add.reduce(e, axis=axis, keepdims=True)
    return e


def _softmax_vjp(g, out, x, axis=-1):
    # J = diag(s) - s s^T, so J^T g = s * (g - <g, s>)
    return out * (g - reduce_sum(g * out, axis=axis, keepdims=True))


def _log_softmax_forward(x, axis=-1):
    # x - logsumexp(x) computed on the max-shifted values (see _max_shift): no overflow, and the
    # largest entry is exactly -log(sum) rather than a difference of two large numbers
    axis = _one_axis(x, axis)
    shifted = _max_shift(x, axis)
    log_sum = np.log(np.add.reduce(np.exp(shifted), axis=axis, keepdims=True))
    # in place when shifted is a fresh array of the result's dtype (of a 0-d x it is a NumPy scalar)
    in_place = type(shifted) is np.ndarray and shifted.dtype == log_sum.dtype
    return np.subtract(shifted, log_sum, out=shifted if in_place else None)


def _log_softmax_vjp(g, out, x, axis=-1):
    # d/dx (x - lse(x)) = I - softmax 1^T, softmax = exp(out)
    return g - exp(out) * reduce_sum(g, axis=axis, keepdims=True)


def _along_axis_sample(gen):
    # edge mode: a 0-d input with axis 0 or -1 (torch accepts it), size-0 dimensions
    shape = gen.shape(min_dims=0 if gen.edges else 1, min_side=0)
    axis = gen.integer(-len(shape), len(shape) - 1) if shape else gen.choice([0, -1])
    return (gen.array(shape, LOGITS),), {"axis": axis}


# softmax and log_softmax: the same regression inputs (one normalisation along an axis)
_ALONG_AXIS_EXAMPLES = (
    ((np.array(1.5),), {"axis": 0}),          # a 0-d input takes axis 0 or -1, as in torch
    ((np.array(1.5),), {"axis": -1}),
    ((np.array([[np.inf, 1.0, -2.0], [-np.inf, -np.inf, -np.inf], [np.inf, np.inf, 0.0], [1e8, 0.0, -1e8]]),),
     {"axis": -1}),                        # +inf in a row: NaN row, as torch; a row of -inf: NaN
    ((np.array([[-np.inf, 0.0], [np.nan, 1.0]]),), {"axis": 0}),
    ((np.ones((2, 0)),), {"axis": -1}),         # an empty axis: an empty result, as torch
)


softmax = register(OpSpec(
    "softmax", _softmax_forward, (_softmax_vjp,), lambda x, axis=-1: torch.softmax(x, dim=axis), (LOGITS,), "nn",
    sample=_along_axis_sample,
    examples=_ALONG_AXIS_EXAMPLES))
log_softmax = register(OpSpec(
    "log_softmax", _log_softmax_forward, (_log_softmax_vjp,), lambda x, axis=-1: torch.log_softmax(x, dim=axis),
    (LOGITS,), "nn", sample=_along_axis_sample,
    examples=_ALONG_AXIS_EXAMPLES))


# ---- cross_entropy -------------------------------------------------------------------------------------
def _check_class_targets(logits, targets):
    """Logits (N, C) with targets (N,), or one sample: logits (C,) with a 0-d target; integer classes
    in [0, C). A negative class would silently index from the end, so it is refused too."""
    logits, targets = np.asarray(logits), np.asarray(targets)
    if targets.dtype.kind not in "iu":
        raise DTypeError(f"op 'cross_entropy': targets (input 1, {describe(targets)}) must be integer class "
                         "indices; class probabilities are not supported")
    if logits.ndim not in (1, 2):
        raise ShapeError(f"op 'cross_entropy': logits (input 0, {describe(logits)}) must be (N, C), or (C,) "
                         "for one sample")
    if targets.shape != logits.shape[:-1]:
        expected = f"({logits.shape[0]},)" if logits.ndim == 2 else "() (a single class)"
        raise ShapeError(f"op 'cross_entropy': targets (input 1, {describe(targets)}) must have shape {expected} "
                         f"to match logits (input 0, {describe(logits)})")
    classes = logits.shape[-1]
    if targets.size and (targets.min() < 0 or targets.max() >= classes):
        where = tuple(int(k) for k in np.argwhere((targets < 0) | (targets >= classes))[0])
        raise DomainError(f"op 'cross_entropy': targets (input 1) has class {int(targets[where])} at index {where}, "
                          f"outside [0, {classes}) for logits (input 0, {describe(logits)})")
    return targets


def _cross_entropy_forward(logits, targets, reduction="mean"):
    _check_reduction(reduction)
    targets = _check_class_targets(logits, targets)
    log_probs = _log_softmax_forward(logits, axis=-1)    # stable: see _log_softmax_forward
    return _reduce_loss(-_pick(log_probs, targets), reduction)


def _pick(values, targets):
    """values[n, targets[n]] for (N, C) values, values[targets] for one (C,) sample."""
    if values.ndim == 1:
        return values[targets]
    return values[np.arange(len(targets)), targets]


def _cross_entropy_vjp(g, out, logits, targets, reduction="mean"):
    # d/dlogits of -log_softmax(logits)[t] = softmax(logits) - onehot(t)
    classes = raw(targets)
    logits_data = raw(logits)
    weight = _loss_weight(g, classes.size, reduction)
    if reduction == "none":
        weight = reshape(weight, raw(weight).shape + (1,))
    if not isinstance(g, Variable) and not isinstance(logits, Variable):   # plain backward: one buffer, in place
        probs = _softmax_forward(logits_data, axis=-1)
        if probs.ndim == 1:
            probs[classes] -= 1
        else:
            probs[np.arange(len(classes)), classes] -= 1
        probs *= weight
        return probs
    onehot = (np.arange(logits_data.shape[-1]) == classes[..., None]).astype(logits_data.dtype)
    return weight * (softmax(logits, axis=-1) - onehot)


def _cross_entropy_sample(gen):
    classes = gen.integer(1, 5)
    if gen.integer(0, 4) == 4:  # one unbatched sample
        logits, targets = gen.array((classes,), LOGITS), gen.integers((), 0, classes)
    else:   # an empty batch in edge mode (the mean of no losses is NaN)
        n = gen.integer(0 if gen.edges else 1, 4)
        logits, targets = gen.array((n, classes), LOGITS), gen.integers((n,), 0, classes)
    return (logits, targets), draw_params(cross_entropy.spec, gen)


_REDUCTION = Choice(*_REDUCTIONS)
cross_entropy = register(OpSpec(
    "cross_entropy", _cross_entropy_forward, (_cross_entropy_vjp, None),
    lambda logits, targets, reduction="mean": torch.nn.functional.cross_entropy(logits, targets, reduction=reduction),
    (LOGITS, NOT_DIFFERENTIABLE), "nn", sample=_cross_entropy_sample, params={"reduction": _REDUCTION},
    examples=(
        ((np.zeros((0, 3)), np.zeros(0, dtype=np.int64)), {"reduction": "mean"}),   # an empty batch: NaN
        ((np.zeros((0, 3)), np.zeros(0, dtype=np.int64)), {"reduction": "sum"}),
        ((np.array([[1e8, 0.0, -1e8], [np.inf, 0.0, 1.0]]), np.array([2, 1])), {"reduction": "none"}),
    )))


# ---- mse_loss ------------------------------------------------------------------------------------------
def _mse_loss_forward(pred, target, reduction="mean"):
    _check_reduction(reduction)
    _same_shapes("mse_loss", pred, target, ("pred", "target"))
    diff = np.subtract(pred, target)
    return _reduce_loss(diff * diff, reduction)


def _mse_loss_vjp_pred(g, out, pred, target, reduction="mean"):
    return _loss_weight(g, np.size(raw(pred)), reduction) * 2.0 * (pred - target)


def _mse_loss_vjp_target(g, out, pred, target, reduction="mean"):
    return _loss_weight(g, np.size(raw(pred)), reduction) * 2.0 * (target - pred)


def _mse_loss_sample(gen):
    shape = gen.shape(min_side=0)
    return (gen.array(shape, FINITE), gen.array(shape, FINITE)), draw_params(mse_loss.spec, gen)


# FINITE: inf - inf is NaN where pred and target are both infinite
mse_loss = register(OpSpec(
    "mse_loss", _mse_loss_forward, (_mse_loss_vjp_pred, _mse_loss_vjp_target),
    lambda pred, target, reduction="mean": torch.nn.functional.mse_loss(pred, target, reduction=reduction),
    (FINITE, FINITE), "nn", sample=_mse_loss_sample, params={"reduction": _REDUCTION},
    examples=(
        ((np.zeros((0, 2)), np.zeros((0, 2))), {"reduction": "mean"}),              # an empty batch: NaN
    )))


# ---- binary_cross_entropy_with_logits ----------------------------------------------------------------
PROBABILITY = Domain(low=0.0, high=1.0, closed=(0.0, 1.0), description="0 <= t <= 1")
# logits of a classic overflow (1e8); infinite ones give inf - inf in the loss
_BCE_LOGITS = Domain(nan=True, large=1e8, description="real (large magnitudes)")


def _bce_with_logits_forward(logits, targets, reduction="mean"):
    _check_reduction(reduction)
    _same_shapes("binary_cross_entropy_with_logits", logits, targets, ("logits", "targets"))
    # -t log(sigmoid(x)) - (1 - t) log(1 - sigmoid(x)) = log(1 + e^x) - x t, and
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|): e^-|x| <= 1 never overflows, and log1p keeps the
    # tiny e^-|x| of large |x| instead of rounding 1 + e^-|x| to 1
    x = np.asarray(logits)
    losses = np.maximum(x, 0) - x * targets + np.log1p(np.exp(-np.abs(x)))
    return _reduce_loss(losses, reduction)


def _bce_with_logits_vjp_logits(g, out, logits, targets, reduction="mean"):
    return _loss_weight(g, np.size(raw(logits)), reduction) * (sigmoid(logits) - targets)


def _bce_with_logits_vjp_targets(g, out, logits, targets, reduction="mean"):
    # the loss is linear in t with slope -x (torch gives the same gradient for targets)
    return _loss_weight(g, np.size(raw(logits)), reduction) * -logits


def _bce_sample(gen):
    shape = gen.shape(min_side=0)
    logits = gen.array(shape, _BCE_LOGITS)
    if gen.boolean():   # hard 0/1 labels (valid for finite differences too: the loss is linear in t)
        targets = gen.mask(shape).astype(gen.dtype)
    else:
        targets = gen.array(shape, PROBABILITY)
    return (logits, targets), draw_params(binary_cross_entropy_with_logits.spec, gen)


binary_cross_entropy_with_logits = register(OpSpec(
    "binary_cross_entropy_with_logits", _bce_with_logits_forward,
    (_bce_with_logits_vjp_logits, _bce_with_logits_vjp_targets),
    lambda logits, targets, reduction="mean": torch.nn.functional.binary_cross_entropy_with_logits(
        logits, targets, reduction=reduction),
    (_BCE_LOGITS, PROBABILITY), "nn", sample=_bce_sample, params={"reduction": _REDUCTION},
    examples=(
        ((np.zeros((0,)), np.zeros((0,))), {"reduction": "mean"}),                  # an empty batch: NaN
    )))


# ---- im2col / col2im / conv2d -------------------------------------------------------------------------
def _pair(name, value, minimum):
    """An int or a pair of ints (height, width), each >= minimum, as a pair."""
    try:
        pair = (int(value), int(value)) if np.ndim(value) == 0 else tuple(int(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or min(pair) < minimum:
        raise ValueError(f"{name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return pair


def _check_4d(op, name, index, x):
    if np.ndim(x) != 4:
        raise ShapeError(f"op '{op}': {name} (input {index}, {describe(x)}) must be 4-D (N, C, H, W)")


def _output_size(op, size, kernel, stride, padding):
    """Output (height, width) of sliding `kernel` over `size` padded on both sides (floor, as torch)."""
    out = []
    for n, k, s, p in zip(size, kernel, stride, padding):
        if n + 2 * p < k:
            raise ShapeError(f"op '{op}': kernel {tuple(kernel)} is larger than the padded input "
                             f"{tuple(m + 2 * q for m, q in zip(size, padding))}")
        out.append((n + 2 * p - k) // s + 1)
    return tuple(out)


def _windows(x, kernel, stride, padding):
    """A (N, C, out_h, out_w, kH, kW) strided view of x's zero-padded sliding windows (no copy)."""
    (ph, pw), (sh, sw) = padding, stride
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    return sliding_window_view(x, kernel, axis=(2, 3))[:, :, ::sh, ::sw]


def _im2col_forward(x, kernel_size, stride=1, padding=0):
    """Columns (N, C*kH*kW, L) of all windows, L = out_h*out_w; row c*kH*kW + p*kW + q holds input
    channel c at kernel position (p, q): torch.nn.functional.unfold's layout."""
    _check_4d("im2col", "x", 0, x)
    kernel = _pair("kernel_size", kernel_size, 1)
    stride, padding = _pair("stride", stride, 1), _pair("padding", padding, 0)
    _output_size("im2col", x.shape[2:], kernel, stride, padding)
    windows = _windows(x, kernel, stride, padding)
    n, c, out_h, out_w = windows.shape[:4]
    return windows.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * kernel[0] * kernel[1], out_h * out_w)


def _col2im_forward(cols, output_size, kernel_size, stride=1, padding=0):
    """The adjoint of im2col: every column entry added back at the input position it was read from
    (overlapping windows sum), then the padding cropped away: torch.nn.functional.fold."""
    kernel = _pair("kernel_size", kernel_size, 1)
    stride, padding = _pair("stride", stride, 1), _pair("padding", padding, 0)
    height, width = _pair("output_size", output_size, 1)
    out_h, out_w = _output_size("col2im", (height, width), kernel, stride, padding)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if np.ndim(cols) != 3 or cols.shape[1] % (kh * kw) or cols.shape[2] != out_h * out_w:
        raise ShapeError(f"op 'col2im': columns (input 0, {describe(cols)}) must be (N, C*{kh}*{kw}, {out_h * out_w}) "
                         f"for output_size {(height, width)}, kernel {kernel}, stride {stride}, padding {padding}")
    n, c = cols.shape[0], cols.shape[1] // (kh * kw)
    blocks = cols.reshape(n, c, kh, kw, out_h, out_w)
    padded = np.zeros((n, c, height + 2 * ph, width + 2 * pw), dtype=cols.dtype)
    for p in range(kh):          # kH*kW strided adds; windows overlap, so each one is an add
        for q in range(kw):
            padded[:, :, p:p + sh * (out_h - 1) + 1:sh, q:q + sw * (out_w - 1) + 1:sw] += blocks[:, :, p, q]
    return padded[:, :, ph:ph + height, pw:pw + width]


def _int_or_pair(gen, pair):
    """A (height, width) parameter as the pair, or as one int when both are equal (both call forms)."""
    return pair[0] if pair[0] == pair[1] and gen.boolean() else tuple(pair)


def _conv_geometry_sample(gen):
    """Kernel, stride, padding (each an int or an (h, w) pair) and an input size they fit."""
    kernel = (gen.integer(1, 3), gen.integer(1, 3))
    stride = (gen.integer(1, 3), gen.integer(1, 3))
    pad = (gen.integer(0, 2), gen.integer(0, 2))
    size = tuple(gen.integer(max(1, k - 2 * p), 5) for k, p in zip(kernel, pad))
    return _int_or_pair(gen, kernel), _int_or_pair(gen, stride), _int_or_pair(gen, pad), size


def _batch(gen):
    return gen.integer(0 if gen.edges else 1, 2)    # an empty batch in edge mode


def _im2col_sample(gen):
    kernel, stride, padding, size = _conv_geometry_sample(gen)
    x = gen.array((_batch(gen), gen.integer(1, 3)) + size, FINITE)
    return (x,), {"kernel_size": kernel, "stride": stride, "padding": padding}


def _col2im_sample(gen):
    kernel, stride, padding, size = _conv_geometry_sample(gen)
    kh, kw = _pair("kernel_size", kernel, 1)
    out_h, out_w = _output_size("col2im", size, (kh, kw), _pair("stride", stride, 1), _pair("padding", padding, 0))
    cols = gen.array((_batch(gen), gen.integer(1, 3) * kh * kw, out_h * out_w), FINITE)
    return (cols,), {"output_size": _int_or_pair(gen, size), "kernel_size": kernel, "stride": stride,
                     "padding": padding}


def _im2col_vjp(g, out, x, kernel_size, stride=1, padding=0):
    return col2im(g, output_size=raw(x).shape[2:], kernel_size=kernel_size, stride=stride, padding=padding)


def _col2im_vjp(g, out, cols, output_size, kernel_size, stride=1, padding=0):
    return im2col(g, kernel_size=kernel_size, stride=stride, padding=padding)


def _torch_im2col(x, kernel_size, stride=1, padding=0):
    return torch.nn.functional.unfold(x, kernel_size, padding=padding, stride=stride)


def _torch_col2im(cols, output_size, kernel_size, stride=1, padding=0):
    return torch.nn.functional.fold(cols, _pair("output_size", output_size, 1), kernel_size, padding=padding,
                                    stride=stride)


# linear and each other's adjoint, hence each other's VJP: twice (any number of times) differentiable
im2col = register(OpSpec("im2col", _im2col_forward, (_im2col_vjp,), _torch_im2col, (FINITE,), "nn",
                         sample=_im2col_sample))
col2im = register(OpSpec("col2im", _col2im_forward, (_col2im_vjp,), _torch_col2im, (FINITE,), "nn",
                         sample=_col2im_sample))


def _conv2d_forward(x, w, b=None, stride=1, padding=0):
    _check_4d("conv2d", "x", 0, x)
    _check_4d("conv2d", "w", 1, w)
    if x.shape[1] != w.shape[1]:
        raise ShapeError(f"op 'conv2d': x (input 0, {describe(x)}) has {x.shape[1]} channels but w (input 1, "
                         f"{describe(w)}) expects {w.shape[1]} (w is (C_out, C_in, kH, kW))")
    if b is not None and np.shape(b) != (w.shape[0],):
        raise ShapeError(f"op 'conv2d': b (input 2, {describe(b)}) must have shape ({w.shape[0]},), one per "
                         "output channel")
    stride, padding = _pair("stride", stride, 1), _pair("padding", padding, 0)
    out_h, out_w = _output_size("conv2d", x.shape[2:], w.shape[2:], stride, padding)
    # im2col then one matmul per sample: (C_out, C_in*kH*kW) @ (C_in*kH*kW, out_h*out_w) on BLAS
    # (several times faster than a tensordot over the 6-D strided window view)
    out = np.reshape(w, (w.shape[0], -1)) @ _im2col_forward(x, w.shape[2:], stride, padding)
    out = out.reshape(x.shape[0], w.shape[0], out_h, out_w)
    if b is not None:
        out += np.reshape(b, (-1, 1, 1))
    return out


def _flat_positions(g):
    """g (N, C, out_h, out_w) as (N, C, out_h*out_w) for the matmuls. A raw g is made contiguous
    first: the gradient of a sum or mean arrives as a zero-stride broadcast, which matmul does not
    hand to BLAS (10x slower)."""
    n, c, out_h, out_w = raw(g).shape
    if not isinstance(g, Variable):
        g = np.ascontiguousarray(g)
    return reshape(g, (n, c, out_h * out_w))


def _conv2d_vjp_x(g, out, x, w, b=None, stride=1, padding=0):
    # the transposed convolution: w^T times g's columns, folded back onto x (col2im, im2col's adjoint)
    c_out = raw(w).shape[0]
    cols_grad = transpose(reshape(w, (c_out, -1))) @ _flat_positions(g)          # (N, C_in*kH*kW, L)
    return col2im(cols_grad, output_size=raw(x).shape[2:], kernel_size=raw(w).shape[2:], stride=stride,
                  padding=padding)


def _conv2d_vjp_w(g, out, x, w, b=None, stride=1, padding=0):
    # sum over samples and positions of g times the input window each output read
    cols = im2col(x, kernel_size=raw(w).shape[2:], stride=stride, padding=padding)   # (N, C_in*kH*kW, L)
    per_sample = _flat_positions(g) @ _swap_last(cols)                                # (N, C_out, C_in*kH*kW)
    return reshape(reduce_sum(per_sample, axis=0), raw(w).shape)


def _conv2d_vjp_b(g, out, x, w, b=None, stride=1, padding=0):
    return reduce_sum(g, axis=(0, 2, 3))


def _conv2d_sample(gen):
    # with and without the bias
    kernel, stride, padding, size = _conv_geometry_sample(gen)
    c_in, c_out = gen.integer(1, 3), gen.integer(1, 3)
    x = gen.array((_batch(gen), c_in) + size, FINITE)
    inputs = (x, gen.array((c_out, c_in) + _pair("kernel_size", kernel, 1), FINITE))
    if gen.choice([True, False]):
        inputs += (gen.array((c_out,), FINITE),)
    return inputs, {"stride": stride, "padding": padding}


# inputs x, w and an optional b: the engine runs the VJPs of the inputs given (conv2d(x, w) has no bias)
_conv2d = register(OpSpec(
    "conv2d", _conv2d_forward, (_conv2d_vjp_x, _conv2d_vjp_w, _conv2d_vjp_b),
    lambda x, w, b=None, stride=1, padding=0: torch.nn.functional.conv2d(x, w, b, stride=stride, padding=padding),
    (FINITE, FINITE, FINITE), "nn", sample=_conv2d_sample))


@export
def conv2d(x, w, b=None, stride=1, padding=0, **unknown):
    """2-D cross-correlation, NCHW (like torch.nn.functional.conv2d): x (N, C_in, H, W),
    w (C_out, C_in, kH, kW), optional bias b (C_out,); stride and padding an int or (h, w) pair."""
    if unknown:
        raise refuse_keywords("conv2d", unknown, ("b", "stride", "padding"))
    if b is None:
        return _conv2d(x, w, stride=stride, padding=padding)
    return _conv2d(x, w, b, stride=stride, padding=padding)


# ---- max_pool2d ----------------------------------------------------------------------------------------
def _pool_geometry(x, kernel_size, stride, padding):
    _check_4d("max_pool2d", "x", 0, x)
    kernel = _pair("kernel_size", kernel_size, 1)
    stride = kernel if stride is None else _pair("stride", stride, 1)
    padding = _pair("padding", padding, 0)
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"padding {padding} must be at most half the kernel {kernel} "
                         "(as torch), so that every window holds an input element")
    _output_size("max_pool2d", x.shape[2:], kernel, stride, padding)
    return kernel, stride, padding


def _window_offsets(x, kernel, stride, padding, fill=-np.inf):
    """For each kernel position (p, q) in row-major order, the (N, C, out_h, out_w) strided view of
    the -inf-padded x whose [n, c, i, j] is the element at (p, q) in window (i, j). Pooling is then
    kH*kW elementwise passes over whole arrays, much faster than reducing a 6-D strided view.
    Padding is -inf, which never wins a max (torch pads the same way)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    out_h, out_w = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    for p in range(kh):
        for q in range(kw):
            yield x[:, :, p:p + sh * (out_h - 1) + 1:sh, q:q + sw * (out_w - 1) + 1:sw]


def _max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    geometry = _pool_geometry(x, kernel_size, stride, padding)
    views = _window_offsets(x, *geometry)
    best = next(views).copy()
    for view in views:
        np.maximum(best, view, out=best)     # NaN propagates, as torch
    return best


def _max_positions(x, kernel_size, stride, padding):
    """Flat index into x of the element each window's gradient goes to: the first maximum in the
    window's row-major scan, exactly torch's CPU kernel, which moves to a later element only when
    it is strictly greater (or NaN)."""
    kernel, stride, padding = _pool_geometry(x, kernel_size, stride, padding)
    views = _window_offsets(x, kernel, stride, padding)
    best = next(views).copy()
    offset = np.zeros(best.shape, dtype=np.int64)        # p*kW + q of the current winner
    # torch scans only the window's elements inside x: a window of -inf (or all padding and -inf) sends
    # its gradient to its first element inside x, never to the padding, which ties with -inf
    pads = _window_offsets(np.zeros((1, 1) + x.shape[2:], dtype=bool), kernel, stride, padding, fill=True) \
        if any(padding) else None
    on_pad = np.broadcast_to(next(pads), best.shape).copy() if pads is not None else None
    for k, view in enumerate(views, start=1):
        better = (view > best) | np.isnan(view)
        if pads is not None:
            inside = ~next(pads)
            better |= on_pad & inside
            on_pad &= ~better
        np.maximum(best, view, out=best)                  # keeps a NaN once seen, as torch
        # k exceeds every earlier offset, so max() sets exactly the winners (faster than a masked write)
        np.maximum(offset, better * k, out=offset)
    n, c, out_h, out_w = best.shape
    rows = np.arange(out_h)[:, None] * stride[0] + offset // kernel[1] - padding[0]
    cols = np.arange(out_w)[None, :] * stride[1] + offset % kernel[1] - padding[1]
    planes = np.arange(n * c).reshape(n, c, 1, 1)
    return (planes * x.shape[2] + rows) * x.shape[3] + cols


def _max_pool2d_vjp(g, out, x, kernel_size, stride=None, padding=0):
    # g routed to one element per window (the first maximum); overlapping windows that pick the same
    # element add up. Linear in g with constant positions: the second derivative in x is 0.
    data = raw(x)
    positions = _max_positions(data, kernel_size, stride, padding).reshape(-1)
    routed = scatter_add(reshape(g, (-1,)), index=(positions,), shape=(data.size,))
    return reshape(routed, data.shape)


def _max_pool2d_sample(gen):
    kernel = (gen.integer(1, 3), gen.integer(1, 3))
    stride = gen.choice([None, _int_or_pair(gen, (gen.integer(1, 2), gen.integer(1, 2)))])
    padding = (gen.integer(0, kernel[0] // 2), gen.integer(0, kernel[1] // 2))
    size = tuple(gen.integer(max(1, k - 2 * p), 5) for k, p in zip(kernel, padding))
    # ties within a window (where the subgradient choice matters) come from kink and edge modes;
    # -inf entries meet the -inf padding
    x = gen.array((_batch(gen), gen.integer(1, 3)) + size, _POOLED)
    return (x,), {"kernel_size": _int_or_pair(gen, kernel), "stride": stride, "padding": _int_or_pair(gen, padding)}


_POOLED = Domain(infinities=(-np.inf, np.inf), nan=True, description="real (kinks where two entries of a window tie)")
_max_pool2d = register(OpSpec(
    "max_pool2d", _max_pool2d_forward, (_max_pool2d_vjp,),
    lambda x, kernel_size, stride=None, padding=0: torch.nn.functional.max_pool2d(x, kernel_size, stride, padding),
    (_POOLED,), "nn", smooth=False,
    kink_rule="ties: the whole gradient goes to the first maximum of the window in row-major order, as torch",
    sample=_max_pool2d_sample,
    examples=(
        # a window of -inf beside the -inf padding: its gradient goes to its first element inside x
        ((np.array([[[[-np.inf, 1.0], [-np.inf, 2.0], [0.5, -np.inf]]]]),), {"kernel_size": (3, 1), "stride": 1,
                                                                           "padding": (1, 0)}),
    )))


@export
def max_pool2d(x, kernel_size, stride=None, padding=0, **unknown):
    """Max over kH x kW windows of x (N, C, H, W), like torch.nn.functional.max_pool2d: stride defaults
    to the kernel, padding (at most half the kernel) never wins. The gradient of each window goes to
    its first maximum in row-major order (torch's choice at ties)."""
    if unknown:
        raise refuse_keywords("max_pool2d", unknown, ("kernel_size", "stride", "padding"))
    return _max_pool2d(x, kernel_size=kernel_size, stride=stride, padding=padding)


# ---- dropout -------------------------------------------------------------------------------------------
def _keep_mask(shape, p, seed=None, mask=None):
    """Which elements survive: `mask` itself (bool or 0/1) when given, else each one independently
    with probability 1 - p from np.random.default_rng(seed), so a seed reproduces the mask exactly."""
    if mask is None:
        return np.random.default_rng(seed).random(shape) >= p
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ShapeError(f"op 'dropout': mask ({describe(mask)}) must have the input's shape {tuple(shape)}")
    if mask.dtype != bool and not np.all((mask == 0) | (mask == 1)):
        raise ValueError(f"mask ({describe(mask)}) must be boolean or hold only 0 and 1")
    return mask.astype(bool)


def refuse_random_mask_in_trace(where):
    """A mask drawn while sg.compile traces would be replayed, the same, at every call: refused."""
    if mode.tracing is not None:
        raise GraphError(f"sg.compile: {where} in training mode draws a new random mask at every call, and a "
                         "compiled function would replay the traced mask at every call. Compile the model in "
                         "eval mode, or call it without sg.compile")


def _check_p(p):
    if not 0.0 <= p <= 1.0:
        raise DomainError(f"op 'dropout': p is the probability of dropping an element, in [0, 1]; got {p!r}")


def _dropout_forward(x, p=0.5, seed=None, mask=None, training=True):
    _check_p(p)
    x = np.asarray(x)
    if not training:
        return x
    keep = _keep_mask(x.shape, p, seed, mask).astype(x.dtype)
    # survivors are scaled by 1/(1 - p) so the expectation is unchanged; p = 1 drops everything
    return x * keep if p == 1 else x * keep / (1 - p)


def _dropout_vjp(g, out, x, p=0.5, seed=None, mask=None, training=True):
    if not training:
        return g
    keep = _keep_mask(raw(x).shape, p, seed, mask).astype(raw(g).dtype)
    return g * keep if p == 1 else g * keep / (1 - p)


def _torch_dropout(x, p=0.5, seed=None, mask=None, training=True):
    """The same mask as ours (from `mask` or `seed`), applied with torch ops: checkable parity."""
    if not training:
        return x.clone()
    keep = torch.as_tensor(_keep_mask(tuple(x.shape), p, seed, mask)).to(x.dtype)
    return x * keep if p == 1 else x * keep / (1 - p)


def _dropout_sample(gen):
    # the mask from a seed or given (bool, or 0/1 floats)
    shape = gen.shape(min_side=0)
    params = draw_params(_dropout.spec, gen)
    if gen.boolean():
        params["seed"] = gen.integer(0, 2 ** 31 - 1)
    else:
        params["mask"] = gen.mask(shape)
        if gen.boolean():
            params["mask"] = params["mask"].astype(gen.dtype)
    return (gen.array(shape, FINITE),), params


# FINITE: a dropped infinite entry is inf * 0 = NaN
_dropout = register(OpSpec(
    "dropout", _dropout_forward, (_dropout_vjp,), _torch_dropout, (FINITE,), "nn", sample=_dropout_sample,
    params={"p": Real(0.0, 1.0, edges=(0.5, 0.0, 1.0)), "training": Choice(True, True, True, False)}))


@export
def dropout(x, p=0.5, seed=None, mask=None, training=True, **unknown):
    """Inverted dropout: each element is zeroed with probability p and survivors are scaled by
    1/(1 - p); training=False is the identity. The mask is `mask` when given, else drawn from
    np.random.default_rng(seed) (fresh entropy when seed is None). The mask is drawn once here and
    kept with the graph node, so the VJP uses exactly the forward's mask."""
    if unknown:
        raise refuse_keywords("dropout", unknown, ("p", "seed", "mask", "training"))
    if training and mask is None:
        refuse_random_mask_in_trace("dropout")
        _check_p(p)
        mask = _keep_mask(np.shape(raw(x)), p, seed)
        seed = None
    return _dropout(x, p=p, seed=seed, mask=mask, training=training)
