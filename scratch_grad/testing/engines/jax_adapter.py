"""JAX (`pip install jax jaxlib`): functional; second order by nesting jax.vjp, forward mode by jax.jvp.

float64 needs x64 mode, switched on when this adapter is loaded (a process-wide JAX setting, as in
benchmarks/impl_jax.py); float32 inputs stay float32. Ops JAX lacks under a name of its own are
written as JAX users write them (flax's max_pool and conv, optax's cross-entropy), noted below."""
import jax
import jax.numpy as jnp
import jax.scipy.special as special
import numpy as np

from . import Capabilities, numpy_axis

jax.config.update("jax_enable_x64", True)

name = "jax"
capabilities = Capabilities(second_order=True, forward_mode=True)


def _reduction(function):
    def reduce(x, axis=None, keepdims=False):
        return function(x, axis=numpy_axis(x, axis), keepdims=keepdims)
    reduce.__name__ = function.__name__
    return reduce


def _pair(value):
    return (value, value) if np.ndim(value) == 0 else tuple(value)


def _conv2d(x, w, b=None, stride=1, padding=0):
    (ph, pw) = _pair(padding)
    out = jax.lax.conv_general_dilated(x, w, window_strides=_pair(stride), padding=((ph, ph), (pw, pw)),
                                       dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return out if b is None else out + b[None, :, None, None]


def _max_pool2d(x, kernel_size, stride=None, padding=0):
    # flax.linen.max_pool: a reduce_window of lax.max, padded with -inf (which never wins)
    kernel = _pair(kernel_size)
    (sh, sw), (ph, pw) = _pair(kernel if stride is None else stride), _pair(padding)
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1) + kernel, (1, 1, sh, sw),
                                 ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _im2col(x, kernel_size, stride=1, padding=0):
    # conv_general_dilated_patches orders the patch features channel-major, (C, kH, kW): torch's unfold layout
    (ph, pw) = _pair(padding)
    patches = jax.lax.conv_general_dilated_patches(x, _pair(kernel_size), _pair(stride), ((ph, ph), (pw, pw)))
    return patches.reshape(patches.shape[0], patches.shape[1], -1)


def _cross_entropy(logits, targets, reduction="mean"):
    # optax.softmax_cross_entropy_with_integer_labels, reduced as torch's reduction
    picked = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), targets[..., None], axis=-1)[..., 0]
    losses = -picked
    return {"mean": jnp.mean, "sum": jnp.sum}.get(reduction, lambda v: v)(losses)


ops = {
    "abs": jnp.abs, "cos": jnp.cos, "exp": jnp.exp, "expm1": jnp.expm1, "log": jnp.log, "log1p": jnp.log1p,
    "neg": jnp.negative, "reciprocal": jnp.reciprocal, "sin": jnp.sin, "sqrt": jnp.sqrt, "square": jnp.square,
    "tan": jnp.tan, "tanh": jnp.tanh, "erf": special.erf,
    "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "softplus": jax.nn.softplus,
    "elu": lambda x, alpha=1.0: jax.nn.elu(x, alpha),
    # jax.nn.gelu's default is the tanh approximation; the registry's (torch's) default is exact
    "gelu": lambda x, approximate="none": jax.nn.gelu(x, approximate=approximate == "tanh"),
    "leaky_relu": lambda x, negative_slope=0.01: jax.nn.leaky_relu(x, negative_slope),
    "clip": lambda x, min=None, max=None: jnp.clip(x, min, max),
    "add": jnp.add, "sub": jnp.subtract, "mul": jnp.multiply, "div": jnp.divide, "pow": jnp.power,
    "maximum": jnp.maximum, "minimum": jnp.minimum, "where": jnp.where,
    "sum": _reduction(jnp.sum), "mean": _reduction(jnp.mean), "max": _reduction(jnp.max),
    "min": _reduction(jnp.min), "prod": _reduction(jnp.prod), "logsumexp": _reduction(special.logsumexp),
    "var": lambda x, axis=None, keepdims=False, ddof=0: jnp.var(x, axis=numpy_axis(x, axis), keepdims=keepdims, ddof=ddof),
    "std": lambda x, axis=None, keepdims=False, ddof=0: jnp.std(x, axis=numpy_axis(x, axis), keepdims=keepdims, ddof=ddof),
    "norm": lambda x, axis=None, keepdims=False: jnp.linalg.vector_norm(x, axis=numpy_axis(x, axis), keepdims=keepdims),
    "einsum": lambda *xs, subscripts: jnp.einsum(subscripts, *xs),
    "matmul": jnp.matmul,
    "broadcast_to": lambda x, shape: jnp.broadcast_to(x, shape),
    "concatenate": lambda *xs, axis=0: jnp.concatenate(xs, axis=axis),
    "stack": lambda *xs, axis=0: jnp.stack(xs, axis=axis),
    "flip": lambda x, axis=None: jnp.flip(x, axis),
    "pad": lambda x, pad_width, constant_values=0.0: jnp.pad(x, pad_width, constant_values=constant_values),
    "reshape": lambda x, shape: jnp.reshape(x, shape),
    "squeeze": lambda x, axis=None: jnp.squeeze(x, axis),
    "transpose": lambda x, axes=None: jnp.transpose(x, axes),
    "unsqueeze": lambda x, axis: jnp.expand_dims(x, axis),
    "split": lambda x, sections, index, axis=0: jnp.split(x, sections, axis)[index],
    "getitem": lambda x, index: x[index],
    "scatter_add": lambda g, index, shape: jnp.zeros(shape, g.dtype).at[index].add(g),
    "softmax": lambda x, axis=-1: jax.nn.softmax(x, axis=numpy_axis(x, axis)),
    "log_softmax": lambda x, axis=-1: jax.nn.log_softmax(x, axis=numpy_axis(x, axis)),
    "cross_entropy": _cross_entropy,
    "conv2d": _conv2d,
    "max_pool2d": _max_pool2d,
    "im2col": _im2col,
}


def tensor(array, requires_grad=False):
    return jnp.asarray(np.array(array))        # JAX differentiates any array: no flag


def to_numpy(value):
    return np.array(value)


def vjp(fn, primals, cotangents, create_graph=False):
    outputs, pullback = jax.vjp(lambda *xs: tuple(fn(*xs)), *primals)
    return outputs, pullback(tuple(cotangents))


def jvp(fn, primals, tangents):
    return jax.jvp(lambda *xs: tuple(fn(*xs)), tuple(primals), tuple(tangents))
