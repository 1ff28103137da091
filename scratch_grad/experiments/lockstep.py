"""Training parity with torch: the same network, trained in scratch_grad and in torch in lockstep, from
the same initial weights on the same batches, compared after every step.

After each step every parameter is compared with the normwise relative error
    err = max |p_sg - p_torch| / max |p_torch|
and the loss (computed before the step) with |l_sg - l_torch| / |l_torch|. The first (step,
parameter) whose error exceeds the tolerance at that step is reported with the element where the
difference is largest and both values there.

Tolerances come from the project's error model, scratch_grad.testing.tolerance (its "trajectories"
section): a third model, torch in the other precision, trains from the same weights on the same
batches (a float64 twin of a float32 run, a float32 twin of a float64 run), and e(s), the normwise
distance between torch float32 and torch float64 after step s, measures the rounding error this very
trajectory accumulates. After step t
    tolerance(t) = trajectory_tolerance(dtype, max_{s <= t} e(s))
                 = TRAJECTORY_SAFETY * (u / u32) * max_{s <= t} e(s) + TRAJECTORY_FLOOR * u,
which grows with the steps as the error does, and is the same formula for parameters and for the
loss (each with its own e).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..data import load_mnist
from ..errors import ScratchGradError
from ..nn import losses as losses_module
from ..nn.modules import MLP, ELU, GELU, Identity, LeakyReLU, Linear, ReLU, Sigmoid, Softplus, Tanh
from ..nn.optim import SGD, Adam, AdamW
from ..testing.tolerance import normwise_relative_error, trajectory_tolerance

__all__ = ["TrainingParityReport", "Divergence", "training_parity"]

DEFAULT_LR = {"sgd": 5.0, "adam": 1e-3, "adamw": 1e-3}


@dataclass
class Divergence:
    step: int
    parameter: str             # a parameter name, or "loss"
    error: float
    tolerance: float
    index: tuple = ()
    ours: float = math.nan
    theirs: float = math.nan

    def __str__(self):
        where = f"{self.parameter}[{', '.join(map(str, self.index))}]" if self.index else self.parameter
        return (f"step {self.step}, {where}: scratch_grad {self.ours!r} vs torch {self.theirs!r} "
                f"(relative error {self.error:.3g} > tolerance {self.tolerance:.3g})")


@dataclass
class TrainingParityReport:
    optimizer: str
    dtype: str
    steps: int
    sizes: tuple
    batch_size: int
    lr: float
    parameter_names: list
    loss_errors: list = field(default_factory=list)          # per step
    parameter_errors: list = field(default_factory=list)     # per step: {name: error}
    losses: list = field(default_factory=list)               # per step: (scratch_grad, torch)
    tolerances: list = field(default_factory=list)           # per step: parameter tolerance
    loss_tolerances: list = field(default_factory=list)      # per step: loss tolerance
    reference_errors: list = field(default_factory=list)     # per step: running max of torch f32 vs torch f64
    first_divergence: Divergence | None = None

    @property
    def passed(self):
        return self.first_divergence is None and len(self.parameter_errors) == self.steps

    def max_parameter_error(self):
        return max((max(errors.values()) for errors in self.parameter_errors), default=0.0)

    def max_loss_error(self):
        return max(self.loss_errors, default=0.0)

    def worst_ratio(self):
        """max over steps and parameters of error / tolerance (< 1 means parity held everywhere)."""
        worst = 0.0
        for errors, loss_error, tol, loss_tol in zip(self.parameter_errors, self.loss_errors, self.tolerances,
                                                     self.loss_tolerances):
            worst = max(worst, loss_error / loss_tol, *(e / tol for e in errors.values()))
        return worst

    def table(self, every=10):
        header = f"{'step':>5} {'loss (scratch_grad)':>20} {'loss err':>10} " + \
            " ".join(f"{name:>10}" for name in self.parameter_names) + f" {'tolerance':>10}"
        lines = [header]
        for step, (errors, loss_error, (loss, _), tol) in enumerate(
                zip(self.parameter_errors, self.loss_errors, self.losses, self.tolerances), start=1):
            if step == 1 or step % every == 0 or step == len(self.parameter_errors):
                lines.append(f"{step:>5} {loss:>20.12g} {loss_error:>10.2e} " +
                             " ".join(f"{errors[name]:>10.2e}" for name in self.parameter_names) +
                             f" {tol:>10.2e}")
        return "\n".join(lines)

    def summary(self):
        sizes = "-".join(map(str, self.sizes))
        head = (f"training parity, {sizes} net, {self.optimizer} lr {self.lr:g}, batch {self.batch_size}, "
                f"{self.dtype}, {len(self.parameter_errors)}/{self.steps} steps: ")
        if self.first_divergence is not None:
            return head + f"DIVERGED at {self.first_divergence}"
        return (head + f"parity holds; max parameter error {self.max_parameter_error():.2e}, max loss error "
                f"{self.max_loss_error():.2e}, worst error/tolerance {self.worst_ratio():.2g}")

    def as_dict(self):
        return dict(optimizer=self.optimizer, dtype=self.dtype, steps=self.steps, sizes=list(self.sizes),
                    batch_size=self.batch_size, lr=self.lr, passed=self.passed,
                    max_parameter_error=self.max_parameter_error(), max_loss_error=self.max_loss_error(),
                    first_divergence=None if self.first_divergence is None else str(self.first_divergence),
                    loss_errors=self.loss_errors, parameter_errors=self.parameter_errors,
                    tolerances=self.tolerances, loss_tolerances=self.loss_tolerances,
                    reference_errors=self.reference_errors)


def _torch_model(model, torch):
    """A torch.nn.Sequential mirroring the scratch_grad MLP layer by layer, with the same weights; the
    same positions give the same parameter names ('0.weight', '2.bias', ...)."""
    layers = []
    for layer in model:
        if isinstance(layer, Linear):
            t = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                                dtype=getattr(torch, str(layer.weight.dtype)))
            with torch.no_grad():
                t.weight.copy_(torch.from_numpy(np.array(layer.weight.data)))
                if layer.bias is not None:
                    t.bias.copy_(torch.from_numpy(np.array(layer.bias.data)))
            layers.append(t)
        elif isinstance(layer, Sigmoid):
            layers.append(torch.nn.Sigmoid())
        elif isinstance(layer, Tanh):
            layers.append(torch.nn.Tanh())
        elif isinstance(layer, ReLU):
            layers.append(torch.nn.ReLU())
        elif isinstance(layer, GELU):
            layers.append(torch.nn.GELU(approximate=layer.params["approximate"]))
        elif isinstance(layer, LeakyReLU):
            layers.append(torch.nn.LeakyReLU(layer.params["negative_slope"]))
        elif isinstance(layer, ELU):
            layers.append(torch.nn.ELU(layer.params["alpha"]))
        elif isinstance(layer, Softplus):
            layers.append(torch.nn.Softplus())
        elif isinstance(layer, Identity):
            layers.append(torch.nn.Identity())
        else:
            raise ScratchGradError(f"training parity: no torch counterpart for layer {layer!r} "
                                   "(dropout draws different masks in the two libraries; leave it out)")
    return torch.nn.Sequential(*layers)


def _torch_loss(name, torch):
    functional = torch.nn.functional
    if name == "quadratic":
        return lambda out, target: functional.mse_loss(out, target, reduction="sum") * (0.5 / out.shape[0])
    if name == "cross_entropy":
        return lambda logits, target: functional.cross_entropy(logits, target)
    if name == "mse":
        return lambda out, target: functional.mse_loss(out, target)
    raise ScratchGradError(f"training parity: unknown loss {name!r}")


def _optimizers(name, sg_params, torch_params, lr, torch, momentum=0.0, nesterov=False, weight_decay=0.0):
    name = name.lower()
    if name == "sgd":
        return (SGD(sg_params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay),
                torch.optim.SGD(torch_params, lr=lr, momentum=momentum, nesterov=nesterov,
                                weight_decay=weight_decay, foreach=False))
    if name in ("adam", "adamw"):
        ours, theirs = (Adam, torch.optim.Adam) if name == "adam" else (AdamW, torch.optim.AdamW)
        return (ours(sg_params, lr=lr, weight_decay=weight_decay),
                theirs(torch_params, lr=lr, weight_decay=weight_decay, foreach=False))
    raise ScratchGradError(f"training parity: unknown optimizer {name!r}; choose sgd, adam or adamw")


def _torch_step(model, optimizer, loss_fn, x, target):
    optimizer.zero_grad()
    value = loss_fn(model(x), target)
    value.backward()
    optimizer.step()
    return value.item()


def _worst_element(ours, theirs):
    diff = np.abs(np.asarray(ours, dtype=np.float64) - np.asarray(theirs, dtype=np.float64))
    index = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    return tuple(int(i) for i in index), float(np.asarray(ours)[index]), float(np.asarray(theirs)[index])


def training_parity(steps=100, optimizer="sgd", dtype=np.float64, sizes=(784, 40, 10), activation="sigmoid",
                    output_activation="sigmoid", loss="quadratic", lr=None, batch_size=20, seed=0, data=None,
                    momentum=0.0, nesterov=False, weight_decay=0.0, stop_at_divergence=True,
                    make_optimizer=None):
    """Train the same MLP in scratch_grad and torch for `steps` minibatch steps and compare after each.

    data: (x, labels) to draw batches from (default: the embedded MNIST training split).
    make_optimizer(params) -> a scratch_grad optimizer replaces the one named by `optimizer` (to check
    that a planted formula difference is caught). Returns a TrainingParityReport."""
    import torch

    # one torch thread: torch's OpenMP workers spin between ops and starve NumPy's BLAS threads on a
    # small machine (100 steps took 17 s with 2 torch threads on 2 busy cores, 3 s with 1)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _training_parity(torch, steps, optimizer, dtype, sizes, activation, output_activation, loss, lr,
                                batch_size, seed, data, momentum, nesterov, weight_decay, stop_at_divergence,
                                make_optimizer)
    finally:
        torch.set_num_threads(previous_threads)


def _training_parity(torch, steps, optimizer, dtype, sizes, activation, output_activation, loss, lr, batch_size,
                     seed, data, momentum, nesterov, weight_decay, stop_at_divergence, make_optimizer):
    dtype = np.dtype(dtype)
    if steps < 1:
        raise ValueError(f"training parity: steps must be >= 1, got {steps}")
    if dtype not in (np.float32, np.float64):
        raise ScratchGradError(f"training parity: no error model for dtype {dtype}; use float64 or float32")
    lr = DEFAULT_LR.get(optimizer.lower(), 0.01) if lr is None else float(lr)
    if data is None:
        splits = load_mnist(dtype=dtype)
        x_all, labels_all = splits.x_train, splits.y_train
    else:
        x_all, labels_all = data
        x_all = np.asarray(x_all, dtype=dtype)
    rng = np.random.default_rng(seed)
    model = MLP(sizes, activation=activation, output_activation=output_activation, dtype=dtype, rng=rng)
    reference = _torch_model(model, torch)
    sg_params = model.parameters()
    names = [name for name, _ in model.named_parameters()]
    torch_named = dict(reference.named_parameters())
    if sorted(torch_named) != sorted(names):
        raise ScratchGradError(f"training parity: parameter names differ: {names} vs {list(torch_named)}")
    torch_params = [torch_named[name] for name in names]
    ours_opt, theirs_opt = _optimizers(optimizer, sg_params, torch_params, lr, torch, momentum, nesterov,
                                       weight_decay)
    if make_optimizer is not None:
        ours_opt = make_optimizer(sg_params)
    # the error model's calibration: torch in the other precision, from the same weights (a float64 twin of a
    # float32 run starts exactly there; a float32 twin of a float64 run from the weights rounded to float32)
    shadow_dtype = torch.float64 if dtype == np.float32 else torch.float32
    shadow = _torch_model(model, torch).to(shadow_dtype)
    shadow_named = dict(shadow.named_parameters())
    shadow_params = [shadow_named[name] for name in names]
    _, shadow_opt = _optimizers(optimizer, sg_params, shadow_params, lr, torch, momentum, nesterov, weight_decay)
    sg_loss = losses_module.loss(loss)
    torch_loss = _torch_loss(loss, torch)
    eye = np.eye(sizes[-1], dtype=dtype)

    report = TrainingParityReport(optimizer=optimizer, dtype=str(dtype), steps=steps, sizes=tuple(sizes),
                                  batch_size=batch_size, lr=lr, parameter_names=names)
    order = np.concatenate([rng.permutation(len(x_all)) for _ in range(-(-steps * batch_size // len(x_all)))])
    reference_error = reference_loss_error = 0.0
    for step in range(1, steps + 1):
        index = order[(step - 1) * batch_size: step * batch_size]
        xb = x_all[index]
        labels = labels_all[index]
        target = labels if loss == "cross_entropy" else eye[labels]

        out = model(xb)
        value = sg_loss(out, target)
        ours_opt.zero_grad()
        value.backward()
        ours_opt.step()

        t_target = torch.from_numpy(labels) if loss == "cross_entropy" else torch.from_numpy(target)
        t_value = _torch_step(reference, theirs_opt, torch_loss, torch.from_numpy(xb), t_target)
        ours_loss, theirs_loss = value.item(), t_value
        s_target = t_target if loss == "cross_entropy" else t_target.to(shadow_dtype)
        shadow_loss = _torch_step(shadow, shadow_opt, torch_loss, torch.from_numpy(xb).to(shadow_dtype), s_target)
        # e(s): torch float32 against torch float64, relative to the float64 side
        pairs = [(t.detach().numpy(), u.detach().numpy()) for t, u in zip(torch_params, shadow_params)]
        losses_32_64 = (theirs_loss, shadow_loss)
        if dtype == np.float64:
            pairs = [(u, t) for t, u in pairs]
            losses_32_64 = (shadow_loss, theirs_loss)
        reference_loss_error = max(reference_loss_error, normwise_relative_error(*losses_32_64))
        reference_error = max(reference_error, *(normwise_relative_error(low, high) for low, high in pairs))
        report.reference_errors.append(reference_error)
        tol = trajectory_tolerance(dtype, reference_error)
        loss_tol = trajectory_tolerance(dtype, reference_loss_error)
        loss_error = normwise_relative_error(ours_loss, theirs_loss)
        errors = {}
        divergence = None
        if loss_error > loss_tol:
            divergence = Divergence(step, "loss", loss_error, loss_tol, (), ours_loss, theirs_loss)
        for name, p, t in zip(names, sg_params, torch_params):
            theirs = t.detach().numpy()
            errors[name] = normwise_relative_error(p.data, theirs)
            if divergence is None and errors[name] > tol:
                if p.shape != tuple(theirs.shape):
                    divergence = Divergence(step, name, math.inf, tol, (), math.nan, math.nan)
                else:
                    divergence = Divergence(step, name, errors[name], tol, *_worst_element(p.data, theirs))
        report.loss_errors.append(loss_error)
        report.parameter_errors.append(errors)
        report.losses.append((ours_loss, theirs_loss))
        report.tolerances.append(tol)
        report.loss_tolerances.append(loss_tol)
        if divergence is not None and report.first_divergence is None:
            report.first_divergence = divergence
            if stop_at_divergence:
                break
    return report
