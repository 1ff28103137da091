"""How to plug an engine into scratch_grad's oracle: this file is the whole adapter for tinytensor.

    from scratch_grad.testing.engines import load_engine, run_program
    engine = load_engine("examples.student_engine.adapter")     # or the built-in name "student"

It says how to make a tensor and read one back, which registry ops the engine has (by the
registry's names and params: `scratch-grad ops` lists them), and how to get gradients for a
cotangent. Ops left out of `ops` are reported as "not provided" and kept out of random graphs.
"""
import numpy as np

from scratch_grad.testing.engines import Capabilities, not_provided, numpy_axis

from .engine import Tensor

name = "student"
capabilities = Capabilities(dtypes=("float64",))   # first order only; float64 only (see engine.py)


def _matmul(x, y):
    if x.ndim != 2 or y.ndim != 2:
        not_provided("matmul of anything but two 2-D matrices")
    return x @ y


ops = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y,
    "pow": lambda x, y: x ** y,
    "neg": lambda x: -x,
    "exp": lambda x: x.exp(),
    "log": lambda x: x.log(),
    "tanh": lambda x: x.tanh(),
    "sigmoid": lambda x: x.sigmoid(),
    "relu": lambda x: x.relu(),
    "sum": lambda x, axis=None, keepdims=False: x.sum(axis=numpy_axis(x, axis), keepdims=keepdims),
    "mean": lambda x, axis=None, keepdims=False: x.mean(axis=numpy_axis(x, axis), keepdims=keepdims),
    "matmul": _matmul,
    "reshape": lambda x, shape: x.reshape(shape),
    "transpose": lambda x, axes=None: x.transpose(axes),
}


def tensor(array, requires_grad=False):
    return Tensor(np.array(array))     # tinytensor computes a gradient for every tensor


def to_numpy(value):
    return np.array(value.data if isinstance(value, Tensor) else value)


def vjp(fn, primals, cotangents, create_graph=False):
    outputs = fn(*primals)
    if len(outputs) == 1:
        outputs[0].backward(to_numpy(cotangents[0]))
    else:               # several outputs: backward from L = sum_k <output_k, cotangent_k>
        total = (outputs[0] * cotangents[0]).sum()
        for output, cotangent in zip(outputs[1:], cotangents[1:]):
            total = total + (output * cotangent).sum()
        total.backward()
    return outputs, [p.grad for p in primals]
