"""Workload definitions shared by every implementation: MLP configs, chain ops, initial weights and data.

Every implementation starts from the arrays made here, so all of them do exactly the same work.
"""
from dataclasses import dataclass
from itertools import cycle, islice

import numpy as np

LEARNING_RATE = 0.1
PER_OP_CHAIN_LENGTH = 100
CHAIN_SHAPE = (4, 4)
SCALING_LENGTHS = (1_000, 10_000, 100_000, 1_000_000)
QUICK_SCALING_LENGTHS = (1_000, 10_000)


class NotApplicable(Exception):
    """Raised by an implementation factory for a workload that variant does not cover."""


@dataclass(frozen=True)
class MLPConfig:
    name: str
    layer_sizes: tuple
    hidden_activation: str  # "sigmoid" or "relu"
    loss: str  # "mse": sigmoid output, sum((a - y)**2) / (2 n); "cross_entropy": softmax CE, mean over batch
    batch_size: int
    dtype: str
    learning_rate: float = LEARNING_RATE

    @property
    def description(self):
        sizes = "-".join(str(size) for size in self.layer_sizes)
        loss = "MSE" if self.loss == "mse" else "softmax cross-entropy"
        return f"{sizes} {self.hidden_activation}, {loss}, batch {self.batch_size}, {self.dtype}"

    @property
    def layer_count(self):
        return len(self.layer_sizes) - 1


MLP_CONFIGS = (
    MLPConfig("mlp_784_40_10_sigmoid_mse_b20_f64", (784, 40, 10), "sigmoid", "mse", 20, "float64"),
    MLPConfig("mlp_784_40_10_sigmoid_mse_b20_f32", (784, 40, 10), "sigmoid", "mse", 20, "float32"),
    MLPConfig("mlp_784_256_256_10_relu_ce_b128_f32", (784, 256, 256, 10), "relu", "cross_entropy", 128, "float32"),
    MLPConfig("mlp_784_256_256_10_relu_ce_b1024_f32", (784, 256, 256, 10), "relu", "cross_entropy", 1024, "float32"),
)


@dataclass(frozen=True)
class Batch:
    x: np.ndarray  # (batch, inputs), config dtype, values in [0, 1) like MNIST pixels
    labels: np.ndarray  # (batch,) int64 class indices
    one_hot: np.ndarray  # (batch, classes), config dtype


def make_initial_params(config, seed=0):
    """[W1, b1, W2, b2, ...] with W of shape (fan_in, fan_out) scaled by 1/sqrt(fan_in) and small nonzero biases."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(config.layer_sizes[:-1], config.layer_sizes[1:]):
        params.append((rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(config.dtype))
        params.append((0.1 * rng.standard_normal(fan_out)).astype(config.dtype))
    return params


def make_batch(config, seed=1):
    rng = np.random.default_rng(seed)
    inputs, classes = config.layer_sizes[0], config.layer_sizes[-1]
    x = rng.random((config.batch_size, inputs)).astype(config.dtype)
    labels = rng.integers(0, classes, config.batch_size).astype(np.int64)
    one_hot = np.eye(classes, dtype=config.dtype)[labels]
    return Batch(x, labels, one_hot)


@dataclass(frozen=True)
class ChainOp:
    name: str  # "sin", "cos", "tanh", "mul" (by constant), "add" (constant)
    constant: float = 0.0


# Applied cyclically; bounded (values stay in about [-1.5, 1.5]) so a chain of 1e6 ops never overflows. The values
# settle on a fixed point where each cycle scales the gradient by about 0.5: the gradient is ~1e-5 after 100 ops,
# ~1e-49 after 1e3 (still a sharp agreement check) and underflows to 0 beyond ~1e4 ops, where only the chain's
# value is a meaningful check. Zeros cost the same as any other float; the short denormal stretch is negligible.
CHAIN_OPS = (
    ChainOp("sin"),
    ChainOp("mul", 1.5),
    ChainOp("tanh"),
    ChainOp("add", 0.25),
    ChainOp("cos"),
    ChainOp("mul", 0.9),
)


def make_chain_input(seed=2):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, CHAIN_SHAPE)


def scale_by(constant):
    def scale(value):
        return value * constant

    return scale


def shift_by(constant):
    def shift(value):
        return value + constant

    return shift


def chain_functions(ops, library):
    """One unary callable per op, using ``library.sin/cos/tanh`` and the * and + operators with a constant."""
    functions = []
    for op in ops:
        if op.name == "mul":
            functions.append(scale_by(op.constant))
        elif op.name == "add":
            functions.append(shift_by(op.constant))
        else:
            functions.append(getattr(library, op.name))
    return functions


def apply_chain(functions, length, value):
    """The same loop for every implementation: ``length`` ops, cycling through ``functions``."""
    for function in islice(cycle(functions), length):
        value = function(value)
    return value
