"""Optimizers with torch.optim's update formulas, operation for operation, so that a scratch_grad run
and a torch run from the same weights on the same batches follow the same trajectory (see
scratch_grad.experiments.lockstep, training parity). Each update below names the torch kernel it
mirrors; the order of the floating-point operations is kept because float32 trajectories are compared
too.

State lives in NumPy arrays; `state_dict()` / `load_state_dict()` and `save()` / `load()` (.npz)
restore an optimizer exactly, so a resumed run continues bit for bit.
"""
from __future__ import annotations

import math

import numpy as np

from ..engine import Variable
from ..errors import DTypeError, ScratchGradError, ShapeError
from .modules import load_npz, save_npz

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "OPTIMIZERS"]


def _check_number(where, name, value, low=0.0, high=math.inf, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(value):
        raise ValueError(f"{where}: {name} must be a finite number, got {value!r}")
    if value < low or value > high or (low_open and value == low):
        bounds = f"{'(' if low_open else '['}{low}, {high}{')' if high == math.inf else ']'}"
        raise ValueError(f"{where}: {name} must be in {bounds}, got {value!r}")
    return float(value)


class Optimizer:
    """Holds the parameters (one group) and their per-parameter state.

    `hyperparameters` names the settings saved with the state; they are plain attributes
    (opt.lr = 0.01 changes the learning rate for the next step)."""

    hyperparameters = ("lr",)
    state_names = ()

    def __init__(self, params):
        params = list(params)
        if not params:
            raise ScratchGradError(f"{type(self).__name__}: got an empty parameter list")
        seen = set()
        for k, p in enumerate(params):
            if not isinstance(p, Variable) or not p.requires_grad or not p.is_leaf:
                raise ScratchGradError(f"{type(self).__name__}: parameter {k} is not a leaf Variable that "
                                       "requires grad (pass model.parameters())")
            if p.dtype.kind != "f":
                raise DTypeError(f"{type(self).__name__}: parameter {k} has dtype {p.dtype}")
            if id(p) in seen:
                raise ScratchGradError(f"{type(self).__name__}: parameter {k} appears twice in the list")
            seen.add(id(p))
        self.params = params
        self.state = [dict() for _ in params]   # one dict of arrays per parameter
        self.step_count = 0

    def zero_grad(self):
        """Set every gradient to None (torch's default set_to_none=True): the next backward writes
        fresh arrays instead of adding into old ones."""
        for p in self.params:
            p.grad = None

    def step(self):
        self.step_count += 1
        for k, p in enumerate(self.params):
            g = p.grad
            if g is None:          # a parameter that got no gradient is skipped, as torch
                continue
            if g.shape != p.shape:
                raise ShapeError(f"{type(self).__name__}.step: parameter {k} has shape {p.shape} but its "
                                 f"gradient has shape {g.shape}")
            self._update(p, g, self.state[k])

    def _update(self, p, g, state):
        raise NotImplementedError

    # ---- state --------------------------------------------------------------------------------
    def state_dict(self):
        """{'kind', 'step_count', hyperparameters..., 'state': [{name: array copy}, ...]}."""
        return {"kind": type(self).__name__, "step_count": self.step_count,
                **{name: getattr(self, name) for name in self.hyperparameters},
                "state": [{name: np.array(value, copy=True) for name, value in s.items()} for s in self.state]}

    def load_state_dict(self, state):
        kind = state.get("kind")
        if kind is not None and str(kind) != type(self).__name__:
            raise ScratchGradError(f"{type(self).__name__}.load_state_dict: the state is from a {kind}")
        per_param = state["state"]
        if len(per_param) != len(self.params):
            raise ScratchGradError(f"{type(self).__name__}.load_state_dict: the state has {len(per_param)} "
                                   f"parameters, this optimizer {len(self.params)}")
        for k, (p, s) in enumerate(zip(self.params, per_param)):
            for name, value in s.items():
                value = np.asarray(value)
                if value.ndim and value.shape != p.shape:
                    raise ShapeError(f"{type(self).__name__}.load_state_dict: state '{name}' of parameter {k} "
                                     f"has shape {value.shape}, the parameter {p.shape}")
        for name in self.hyperparameters:
            if name in state:
                setattr(self, name, _restore_scalar(getattr(self, name), state[name]))
        self.step_count = int(state.get("step_count", 0))
        self.state = [{name: np.array(value, dtype=p.dtype if np.asarray(value).ndim else None, copy=True)
                       for name, value in s.items()} for p, s in zip(self.params, per_param)]
        return self

    def save(self, path):
        """Write the state to a .npz (flat keys: 'hyper/lr', 'state/0/exp_avg', ...)."""
        state = self.state_dict()
        flat = {"kind": np.array(state["kind"]), "step_count": np.array(state["step_count"])}
        for name in self.hyperparameters:
            flat[f"hyper/{name}"] = np.array(state[name])
        for k, s in enumerate(state["state"]):
            for name, value in s.items():
                flat[f"state/{k}/{name}"] = value
        flat["n_params"] = np.array(len(self.params))
        return save_npz(path, flat)

    def load(self, path):
        flat = load_npz(path)
        if "n_params" not in flat or "kind" not in flat:
            raise ScratchGradError(f"{path}: not an optimizer state file (no 'kind' / 'n_params')")
        state = {"kind": str(flat["kind"]), "step_count": int(flat["step_count"]),
                 "state": [dict() for _ in range(int(flat["n_params"]))]}
        for key, value in flat.items():
            if key.startswith("hyper/"):
                state[key[len("hyper/"):]] = value.item() if value.ndim == 0 else tuple(value.tolist())
            elif key.startswith("state/"):
                _, index, name = key.split("/", 2)
                state["state"][int(index)][name] = value
        return self.load_state_dict(state)

    def __repr__(self):
        settings = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.hyperparameters)
        return f"{type(self).__name__}({len(self.params)} parameters, {settings})"


def _restore_scalar(current, value):
    if isinstance(current, tuple):
        return tuple(float(v) for v in value)
    if isinstance(current, bool):
        return bool(value)
    return float(value)


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay: torch.optim.SGD.

        g = grad + weight_decay * p
        buf = g (first step)  or  momentum * buf + (1 - dampening) * g
        g = g + momentum * buf (nesterov)  or  buf
        p = p - lr * g
    """

    hyperparameters = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

    def __init__(self, params, lr=0.01, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params)
        self.lr = _check_number("SGD", "lr", lr)
        self.momentum = _check_number("SGD", "momentum", momentum)
        self.dampening = _check_number("SGD", "dampening", dampening)
        self.weight_decay = _check_number("SGD", "weight_decay", weight_decay)
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening = 0")
        self.nesterov = bool(nesterov)

    def _update(self, p, g, state):
        dtype = p.dtype.type
        if self.weight_decay != 0:
            g = g + dtype(self.weight_decay) * p.data              # grad.add(param, alpha=wd)
        if self.momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()          # grad.detach().clone()
            else:
                buf *= dtype(self.momentum)                        # buf.mul_(momentum)
                buf += dtype(1 - self.dampening) * g               # .add_(grad, alpha=1 - dampening)
            g = g + dtype(self.momentum) * buf if self.nesterov else buf
        p.sub_(dtype(self.lr) * g)                                 # param.add_(grad, alpha=-lr)


class Adam(Optimizer):
    """Adam (and AMSGrad) as torch.optim.Adam's single-tensor CPU kernel:

        step += 1;  g = grad + weight_decay * p   (AdamW: p = p * (1 - lr * weight_decay) instead)
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        denom = sqrt(v) / sqrt(1 - beta2^step) + eps          (AMSGrad: vmax = max(vmax, v) in place of v)
        p = p - (lr / (1 - beta1^step)) * m / denom
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(params)
        name = type(self).__name__
        self.lr = _check_number(name, "lr", lr)
        if len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair, got {betas!r}")
        self.betas = (_check_number(name, "betas[0]", betas[0], 0.0, 1.0),
                      _check_number(name, "betas[1]", betas[1], 0.0, 1.0))
        if self.betas[0] == 1.0 or self.betas[1] == 1.0:
            raise ValueError(f"{name}: betas must be < 1, got {betas!r}")
        self.eps = _check_number(name, "eps", eps)
        self.weight_decay = _check_number(name, "weight_decay", weight_decay)
        self.amsgrad = bool(amsgrad)

    def _update(self, p, g, state):
        dtype = p.dtype.type
        beta1, beta2 = self.betas
        if not state:
            state["step"] = np.array(0.0)
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
            if self.amsgrad:
                state["max_exp_avg_sq"] = np.zeros_like(p.data)
        state["step"] += 1
        step = float(state["step"])
        if self.weight_decay != 0:
            if self.decoupled_weight_decay:
                p.mul_(dtype(1 - self.lr * self.weight_decay))     # param.mul_(1 - lr * wd)
            else:
                g = g + dtype(self.weight_decay) * p.data          # grad.add(param, alpha=wd)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        _lerp_(m, g, 1 - beta1)                                    # exp_avg.lerp_(grad, 1 - beta1)
        v *= dtype(beta2)                                          # exp_avg_sq.mul_(beta2)
        v += dtype(1 - beta2) * g * g                              # .addcmul_(grad, grad, value=1 - beta2)
        bias_correction1 = 1 - beta1 ** step                       # Python floats, as torch
        bias_correction2 = 1 - beta2 ** step
        step_size = self.lr / bias_correction1
        bias_correction2_sqrt = bias_correction2 ** 0.5
        if self.amsgrad:
            vmax = state["max_exp_avg_sq"]
            np.maximum(vmax, v, out=vmax)
            v = vmax
        denom = np.sqrt(v)
        denom /= dtype(bias_correction2_sqrt)
        denom += dtype(self.eps)                                   # (v.sqrt() / bc2_sqrt).add_(eps)
        update = dtype(-step_size) * m                             # addcdiv_: p + (value * m) / denom
        update /= denom
        p.add_(update)


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW): p = p * (1 - lr * wd) before the Adam step."""

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


def _lerp_(start, end, weight):
    """start += weight * (end - start) in place, with torch's two-sided formula: for weight >= 0.5 it
    computes end - (end - start) * (1 - weight), which is exact at weight = 1."""
    diff = end - start
    if abs(weight) < 0.5:
        diff *= start.dtype.type(weight)
        start += diff
    else:
        diff *= start.dtype.type(1 - weight)
        np.subtract(end, diff, out=start)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}
