"""Module-style building blocks on scratch_grad Variables, shaped like torch.nn.

A `Module` owns `Parameter`s (Variables that require grad) and sub-modules; `parameters()`,
`zero_grad()`, `train()` / `eval()`, `state_dict()` / `load_state_dict()` and `save()` / `load()`
(NumPy .npz) walk that tree iteratively. `Linear` keeps torch's layout, weight (out, in) and
y = x W^T + b, so torch state dicts load as they are, and it is initialised like torch.nn.Linear:
weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with a = sqrt(5)), drawn from NumPy.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from .. import ops
from ..engine import Variable
from ..errors import DTypeError, ScratchGradError, ShapeError
from ..ops.neural import refuse_random_mask_in_trace

__all__ = ["Parameter", "Module", "Linear", "Sequential", "MLP", "Identity", "Sigmoid", "Tanh", "ReLU", "GELU",
           "LeakyReLU", "ELU", "Softplus", "Dropout", "ACTIVATIONS", "activation", "manual_seed", "default_rng",
           "save_npz", "load_npz", "as_array"]

_DEFAULT_RNG = [np.random.default_rng()]


def manual_seed(seed):
    """Reseed the generator modules draw from when no `rng` is given (like torch.manual_seed)."""
    _DEFAULT_RNG[0] = np.random.default_rng(seed)
    return _DEFAULT_RNG[0]


def default_rng():
    return _DEFAULT_RNG[0]


def as_array(value):
    """An ndarray from a NumPy array, a Variable or a (CPU) torch tensor."""
    if isinstance(value, Variable):
        return value.data
    if hasattr(value, "detach") and hasattr(value, "cpu"):   # a torch tensor, without importing torch
        return value.detach().cpu().numpy()
    return np.asarray(value)


class Parameter(Variable):
    """A Variable that requires grad and that a Module registers when assigned as an attribute."""

    __slots__ = ()

    def __init__(self, data, dtype=None):
        super().__init__(as_array(data), requires_grad=True, dtype=dtype)
        if self.dtype.kind != "f":   # Variable already refuses ints with requires_grad; be explicit
            raise DTypeError(f"Parameter: needs floating-point data, got {self.dtype}")

    def __repr__(self):
        return "Parameter" + super().__repr__()[len("Variable"):]


class Module:
    """Base class: assign Parameters and Modules as attributes and they are registered in order."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        registry = self.__dict__.get("_parameters")
        if registry is None:
            raise ScratchGradError(f"{type(self).__name__}: call Module.__init__() before assigning attributes")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} defines no forward()")

    def __call__(self, *args):
        return self.forward(*args)

    # ---- the module tree, walked with an explicit stack ---------------------------------------
    def named_modules(self):
        """(qualified name, module) for this module and every descendant, depth first, in order."""
        result = []
        stack = [("", self)]
        seen = set()
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            result.append((name, module))
            children = [(f"{name}.{child_name}" if name else child_name, child)
                        for child_name, child in module._modules.items()]
            stack.extend(reversed(children))
        return result

    def modules(self):
        return [module for _, module in self.named_modules()]

    def named_parameters(self):
        """(qualified name, Parameter) in registration order; a shared Parameter appears once."""
        result = []
        seen = set()
        for prefix, module in self.named_modules():
            for name, param in module._parameters.items():
                if id(param) not in seen:
                    seen.add(id(param))
                    result.append((f"{prefix}.{name}" if prefix else name, param))
        return result

    def parameters(self):
        return [param for _, param in self.named_parameters()]

    def zero_grad(self):
        """Drop every parameter's gradient (set it to None, as torch's default set_to_none=True)."""
        for param in self.parameters():
            param.grad = None

    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def to(self, dtype):
        """Cast every parameter to `dtype` in place (same Parameter objects, so optimizers stay attached)."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise DTypeError(f"{type(self).__name__}.to: parameters must be floating point, got {dtype}")
        for param in self.parameters():
            if param.dtype != dtype:
                param.data = param.data.astype(dtype)
                param.grad = None
        return self

    # ---- state --------------------------------------------------------------------------------
    def state_dict(self):
        """An ordered {qualified name: copy of the parameter's array}."""
        return OrderedDict((name, param.data.copy()) for name, param in self.named_parameters())

    def load_state_dict(self, state, strict=True):
        """Copy arrays (NumPy, Variables or torch tensors) into the parameters, cast to each parameter's
        dtype. Shapes must match; with strict, the names must match exactly."""
        params = OrderedDict(self.named_parameters())
        missing = [name for name in params if name not in state]
        unexpected = [name for name in state if name not in params]
        if strict and (missing or unexpected):
            raise ScratchGradError(f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                                   f"unexpected keys {unexpected}")
        for name, param in params.items():
            if name not in state:
                continue
            array = as_array(state[name])
            if array.shape != param.shape:
                raise ShapeError(f"{type(self).__name__}.load_state_dict: parameter '{name}' has shape "
                                 f"{param.shape} but the state holds shape {array.shape}")
            if array.dtype.kind not in "fiub":
                raise DTypeError(f"{type(self).__name__}.load_state_dict: parameter '{name}' got dtype {array.dtype}")
            param.data = array.astype(param.dtype)
        return self

    def save(self, path):
        """Write the state dict to a NumPy .npz file."""
        return save_npz(path, self.state_dict())

    def load(self, path, strict=True):
        return self.load_state_dict(load_npz(path), strict=strict)

    def extra_repr(self):
        return ""

    def __repr__(self):
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, module in self._modules.items():
            body = repr(module).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)


def save_npz(path, arrays):
    """np.savez of a flat {name: array} dict; returns the path written."""
    path = str(path)
    np.savez(path, **{name: np.asarray(value) for name, value in arrays.items()})
    return path if path.endswith(".npz") else path + ".npz"


def load_npz(path):
    try:
        with np.load(str(path), allow_pickle=False) as archive:
            return OrderedDict((name, archive[name]) for name in archive.files)
    except (OSError, ValueError) as exc:
        raise ScratchGradError(f"cannot read state file {path}: {exc}") from None


# ---- layers ----------------------------------------------------------------------------------------

class Linear(Module):
    """y = x @ weight.T + bias, weight of shape (out_features, in_features) as torch.nn.Linear.

    weight / bias: None draws them like torch (U(-k, k), k = 1/sqrt(in_features)) from `rng`
    (default: the generator `manual_seed` sets); an array uses those values; bias=False drops it."""

    def __init__(self, in_features, out_features, bias=True, *, weight=None, dtype=np.float64, rng=None):
        super().__init__()
        for label, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ShapeError(f"Linear: {label} must be a positive integer, got {value!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        rng = default_rng() if rng is None else rng
        bound = 1 / math.sqrt(self.in_features)
        if weight is None:
            weight = rng.uniform(-bound, bound, (self.out_features, self.in_features))
        weight = as_array(weight)
        if weight.shape != (self.out_features, self.in_features):
            raise ShapeError(f"Linear({in_features}, {out_features}): weight must have shape "
                             f"{(self.out_features, self.in_features)} (out, in), got {weight.shape}")
        self.weight = Parameter(weight, dtype=dtype)
        if bias is True:
            bias = rng.uniform(-bound, bound, self.out_features)
        if bias is False or bias is None:
            self.bias = None
        else:
            bias = as_array(bias)
            if bias.shape != (self.out_features,):
                raise ShapeError(f"Linear({in_features}, {out_features}): bias must have shape "
                                 f"({self.out_features},), got {bias.shape}")
            self.bias = Parameter(bias, dtype=dtype)

    def forward(self, x):
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) < 1 or shape[-1] != self.in_features:
            raise ShapeError(f"Linear({self.in_features}, {self.out_features}): input must end in "
                             f"{self.in_features} features, got shape {shape}")
        # one graph node for x @ W^T + b (the registered `linear` op, torch's F.linear layout)
        if self.bias is None:
            return ops.linear(x, self.weight)
        return ops.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Sequential(Module):
    """Apply the given modules in order."""

    def __init__(self, *layers):
        super().__init__()
        for k, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise ScratchGradError(f"Sequential: item {k} is a {type(layer).__name__}, not a Module")
            setattr(self, str(k), layer)

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x

    def __getitem__(self, index):
        return list(self._modules.values())[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules.values()))


class _Elementwise(Module):
    """An activation: a registered elementwise op applied to the input."""
    op_name = ""

    def __init__(self, **params):
        super().__init__()
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "fn", getattr(ops, self.op_name))

    def forward(self, x):
        return self.fn(x, **self.params) if self.params else self.fn(x)

    def extra_repr(self):
        return ", ".join(f"{key}={value!r}" for key, value in self.params.items())


class Sigmoid(_Elementwise):
    op_name = "sigmoid"


class Tanh(_Elementwise):
    op_name = "tanh"


class ReLU(_Elementwise):
    op_name = "relu"


class Softplus(_Elementwise):
    op_name = "softplus"


class GELU(_Elementwise):
    op_name = "gelu"

    def __init__(self, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        super().__init__(approximate=approximate)


class LeakyReLU(_Elementwise):
    op_name = "leaky_relu"

    def __init__(self, negative_slope=0.01):
        super().__init__(negative_slope=float(negative_slope))


class ELU(_Elementwise):
    op_name = "elu"

    def __init__(self, alpha=1.0):
        super().__init__(alpha=float(alpha))


class Identity(Module):
    def forward(self, x):
        return x


ACTIVATIONS = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU, "gelu": GELU, "leaky_relu": LeakyReLU, "elu": ELU,
               "softplus": Softplus, "identity": Identity}


def activation(name):
    """An activation module by name (sigmoid, tanh, relu, gelu, leaky_relu, elu, softplus, identity)."""
    if isinstance(name, Module):
        return name
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


class Dropout(Module):
    """Zero each element with probability p while training and scale the rest by 1/(1-p) (inverted
    dropout, as torch), so eval mode is the identity. The mask comes from `rng`, so runs repeat."""

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p!r}")
        object.__setattr__(self, "p", float(p))
        object.__setattr__(self, "rng", rng)

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        refuse_random_mask_in_trace("Dropout")
        rng = default_rng() if self.rng is None else self.rng
        keep = rng.random(x.shape) >= self.p
        return ops.dropout(x, p=self.p, mask=keep)

    def extra_repr(self):
        return f"p={self.p}"


class MLP(Sequential):
    """Linear layers of the given sizes with `activation` between them (and `output_activation`,
    if any, after the last), optionally with Dropout after each hidden activation.

    MLP([784, 40, 10], activation="sigmoid", output_activation="sigmoid") is the classic MNIST net."""

    def __init__(self, sizes, activation="relu", output_activation=None, dropout=0.0, bias=True,
                 dtype=np.float64, rng=None):
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ShapeError(f"MLP: needs at least an input and an output size, got {sizes}")
        rng = default_rng() if rng is None else rng
        layers = []
        for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Linear(fan_in, fan_out, bias=bias, dtype=dtype, rng=rng))
            if k < len(sizes) - 2:
                layers.append(_make_activation(activation))
                if dropout:
                    layers.append(Dropout(dropout, rng=rng))
        if output_activation is not None:
            layers.append(_make_activation(output_activation))
        super().__init__(*layers)
        object.__setattr__(self, "sizes", tuple(sizes))

    def linear_layers(self):
        return [layer for layer in self if isinstance(layer, Linear)]


def _make_activation(name):
    return activation(name) if not isinstance(name, type) else name()
