"""Experiment 2: the two-layer linear regression whose gradients were derived by hand in a notebook.

    z1 = x W1 + b1,   z2 = z1 W2 + b2,   L = sum((y - z2)^2) / (2n)

Hand derivation (the six lines of the notebook, with the first one corrected):

    dL/dz2 = (z2 - y) / n          d/dz2 of sum((y - z2)^2) is 2 (z2 - y); the 2 cancels the 1/2
    dL/dW2 = z1^T dL/dz2           dL/db2 = sum over rows of dL/dz2
    dL/dz1 = dL/dz2 W2^T
    dL/dW1 = x^T dL/dz1            dL/db1 = sum over rows of dL/dz1

The notebook wrote dL/dz2 = (z2 - y) * (2/n): the derivative of sum((y - z2)^2) / n, a loss twice as
large as the one it minimised. Every other line is linear in dL/dz2, so all six gradients come out
exactly 2x too large (a relative error of 1.0 everywhere, the same ratio in every entry). Training still
converges, as if the learning rate were doubled, which is why the loss curve never showed the bug; a
gradient check against finite differences, scratch_grad or torch shows it at once.

Its update line also wrote `b2 = b1 - lr*dldb1`: NumPy broadcasting lets that run silently (b2 takes
b1's shape, z2 = z1 W2 + b2 then broadcasts to (n, hidden)). Comparing the hand-written loop's
trajectory with the autograd one flags it at step 1, parameter b2.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .. import ops
from ..data import linear_regression
from ..engine import Variable
from ..nn.losses import quadratic_cost
from ..nn.modules import Module, Parameter
from ..nn.optim import SGD
from ..nn.training import fit
from ..ops.registry import NOT_DIFFERENTIABLE, REAL, OpSpec
from ..testing import check_sample
from .runs import RunResult

__all__ = ["PARAMETER_NAMES", "TwoLayerLinear", "initial_parameters", "regression_loss", "hand_gradients",
           "scratch_grad_gradients", "torch_gradients", "finite_difference_gradients", "compare_gradients",
           "hand_sgd_step", "autograd_sgd_step", "compare_trajectories", "run_regression"]

PARAMETER_NAMES = ("W1", "b1", "W2", "b2")


def initial_parameters(n_features=3, hidden=4, n_outputs=1, seed=0, dtype=np.float64):
    """{W1 (features, hidden), b1 (hidden,), W2 (hidden, outputs), b2 (outputs,)}: weights ~ N(0, 1/fan_in),
    biases ~ N(0, 0.01), nonzero so every gradient line is exercised."""
    rng = np.random.default_rng([seed, 0])
    return {"W1": (rng.standard_normal((n_features, hidden)) / math.sqrt(n_features)).astype(dtype),
            "b1": (0.1 * rng.standard_normal(hidden)).astype(dtype),
            "W2": (rng.standard_normal((hidden, n_outputs)) / math.sqrt(hidden)).astype(dtype),
            "b2": (0.1 * rng.standard_normal(n_outputs)).astype(dtype)}


def _forward(params, x):
    z1 = x @ params["W1"] + params["b1"]
    return z1, z1 @ params["W2"] + params["b2"]


def regression_loss(params, x, y):
    """L = sum((y - z2)^2) / (2n) in NumPy."""
    _, z2 = _forward(params, x)
    return float(np.sum((y - z2) ** 2) / (2 * len(x)))


def hand_gradients(params, x, y, convention="correct"):
    """The notebook's hand-derived gradients; convention='notebook' uses its dL/dz2 = (z2 - y) * (2/n)."""
    n = len(x)
    z1, z2 = _forward(params, x)
    if convention == "correct":
        dz2 = (z2 - y) / n
    elif convention == "notebook":
        dz2 = (z2 - y) * (2 / n)
    else:
        raise ValueError(f"convention must be 'correct' or 'notebook', got {convention!r}")
    dW2 = z1.T @ dz2
    db2 = dz2.sum(axis=0)
    dz1 = dz2 @ params["W2"].T
    dW1 = x.T @ dz1
    db1 = dz1.sum(axis=0)
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def scratch_grad_gradients(params, x, y):
    variables = {name: Variable(value, requires_grad=True) for name, value in params.items()}
    z1 = x @ variables["W1"] + variables["b1"]
    z2 = z1 @ variables["W2"] + variables["b2"]
    loss = ops.sum(ops.square(y - z2)) / (2 * len(x))
    loss.backward()
    return {name: v.grad for name, v in variables.items()}


def torch_gradients(params, x, y):
    import torch
    tensors = {name: torch.tensor(value, requires_grad=True) for name, value in params.items()}
    xt, yt = torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(y))
    z2 = (xt @ tensors["W1"] + tensors["b1"]) @ tensors["W2"] + tensors["b2"]
    loss = torch.sum((yt - z2) ** 2) / (2 * len(x))
    loss.backward()
    return {name: t.grad.numpy() for name, t in tensors.items()}


def finite_difference_gradients(params, x, y, step=1e-6):
    """Central differences (L(p + h) - L(p - h)) / 2h, one entry at a time, in float64: truncation error
    O(h^2) is zero here (L is quadratic in each single entry), rounding ~ eps * L / h ~ 1e-10."""
    params = {name: np.array(value, dtype=np.float64) for name, value in params.items()}
    grads = {}
    for name, value in params.items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            original = value[index]
            value[index] = original + step
            plus = regression_loss(params, x, y)
            value[index] = original - step
            minus = regression_loss(params, x, y)
            value[index] = original
            grad[index] = (plus - minus) / (2 * step)
        grads[name] = grad
    return grads


def compare_gradients(candidate, reference):
    """Per parameter: the largest absolute error, the normwise relative error max|c - r| / max|r|, and
    the least-squares ratio <c, r> / <r, r> (2.0 means 'twice too large everywhere')."""
    rows = {}
    for name in PARAMETER_NAMES:
        c, r = np.asarray(candidate[name], dtype=np.float64), np.asarray(reference[name], dtype=np.float64)
        if c.shape != r.shape:
            rows[name] = dict(abs_error=math.inf, rel_error=math.inf, ratio=math.nan, shape=(c.shape, r.shape))
            continue
        diff = np.abs(c - r)
        scale = float(np.max(np.abs(r))) or 1.0
        denominator = float(np.vdot(r, r))
        rows[name] = dict(abs_error=float(diff.max()), rel_error=float(diff.max()) / scale,
                          ratio=float(np.vdot(c, r)) / denominator if denominator else math.nan,
                          where=tuple(int(i) for i in np.unravel_index(int(diff.argmax()), diff.shape)))
    return rows


def hand_sgd_step(params, grads, lr, notebook_update_bug=False):
    """The notebook's update lines; with notebook_update_bug its `b2 = b1 - lr*dldb1`."""
    new = {"W1": params["W1"] - lr * grads["W1"], "b1": params["b1"] - lr * grads["b1"],
           "W2": params["W2"] - lr * grads["W2"], "b2": params["b2"] - lr * grads["b2"]}
    if notebook_update_bug:
        new["b2"] = params["b1"] - lr * grads["b1"]
    return new


def autograd_sgd_step(params, x, y, lr):
    """The reference step: scratch_grad's gradients, then p - lr * g."""
    grads = scratch_grad_gradients(params, x, y)
    return {name: params[name] - lr * grads[name] for name in PARAMETER_NAMES}


def compare_trajectories(step_candidate, step_reference, params, steps, rtol=1e-9):
    """Run both step functions from the same parameters and return the first divergence as
    {step, parameter, reason, ...} (None if they agree for all steps). A shape change is a divergence,
    a value one when max|c - r| > rtol * max(1, max|r|)."""
    candidate = {name: np.array(value) for name, value in params.items()}
    reference = {name: np.array(value) for name, value in params.items()}
    for step in range(1, steps + 1):
        candidate = step_candidate(candidate)
        reference = step_reference(reference)
        for name in PARAMETER_NAMES:
            c, r = np.asarray(candidate[name]), np.asarray(reference[name])
            if c.shape != r.shape:
                return dict(step=step, parameter=name, reason=f"shape {c.shape} instead of {r.shape}",
                            candidate=c, reference=r)
            if not np.all(np.isfinite(c)) and np.all(np.isfinite(r)):
                return dict(step=step, parameter=name, reason="non-finite values", candidate=c, reference=r)
            error = float(np.max(np.abs(c - r))) if c.size else 0.0
            if error > rtol * max(1.0, float(np.max(np.abs(r))) if r.size else 0.0):
                return dict(step=step, parameter=name, reason=f"max |difference| {error:.3g}", candidate=c,
                            reference=r)
    return None


def hand_derived_op(convention="correct"):
    """The loss as an op whose VJPs are the hand-derived gradients: an OpSpec that is NOT registered (the
    registry, which the fuzzer and the parity suite read, stays clean), checkable by the gradient oracle:

        from scratch_grad.testing import check_sample
        report = check_sample(hand_derived_op("notebook"), regression_inputs(), {}, second_order=False)
        report.passed   # False: every gradient is 2x torch's and 2x the finite differences

    Inputs: x, y (constants), W1, b1, W2, b2 (differentiated)."""
    def forward(x, y, W1, b1, W2, b2):
        return np.asarray(regression_loss(dict(W1=W1, b1=b1, W2=W2, b2=b2), x, y))

    def vjp_for(name):
        def vjp(g, out, x, y, W1, b1, W2, b2):
            grads = hand_gradients(dict(W1=W1, b1=b1, W2=W2, b2=b2), x, y, convention)
            return g * grads[name]
        vjp.__name__ = f"hand_vjp_{name}"
        return vjp

    def torch_reference(x, y, W1, b1, W2, b2):
        z2 = (x @ W1 + b1) @ W2 + b2
        return ((y - z2) ** 2).sum() / (2 * x.shape[0])

    return OpSpec(f"regression_loss_hand_{convention}", forward,
                  (None, None, vjp_for("W1"), vjp_for("b1"), vjp_for("W2"), vjp_for("b2")), torch_reference,
                  (NOT_DIFFERENTIABLE, NOT_DIFFERENTIABLE, REAL, REAL, REAL, REAL), "nn", twice_differentiable=False)


def regression_inputs(seed=0, hidden=4):
    """[x, y, W1, b1, W2, b2] of the experiment, in hand_derived_op's input order."""
    x, y, _, _ = linear_regression()
    params = initial_parameters(x.shape[1], hidden, y.shape[1], seed=seed)
    return [x, y] + [params[name] for name in PARAMETER_NAMES]


def check_hand_derivation(convention="correct", seed=0, hidden=4):
    """The gradient oracle (scratch_grad.testing) run on the hand-derived VJPs: a CheckReport."""
    return check_sample(hand_derived_op(convention), regression_inputs(seed, hidden), {}, second_order=False)


class TwoLayerLinear(Module):
    """z2 = (x W1 + b1) W2 + b2 with the notebook's (in, out) weight layout."""

    def __init__(self, params):
        super().__init__()
        for name in PARAMETER_NAMES:
            setattr(self, name, Parameter(params[name]))

    def forward(self, x):
        return (x @ self.W1 + self.b1) @ self.W2 + self.b2


def _format_rows(label, rows):
    cells = "  ".join(f"{name} {row['rel_error']:.1e} (x{row['ratio']:.6f})" for name, row in rows.items())
    return f"  {label:<28}{cells}"


def run_regression(epochs=100, lr=0.1, seed=0, hidden=4, emit=print, on_batch=None, on_epoch=None):
    """Gradient table at the initial point, the two notebook bugs caught, then full-batch training with
    scratch_grad next to the hand-derived loop."""
    started = time.perf_counter()
    x, y, _, _ = linear_regression()
    params = initial_parameters(x.shape[1], hidden, y.shape[1], seed=seed)
    emit(f"two-layer linear regression: {len(x)} samples, {x.shape[1]}-{hidden}-{y.shape[1]}, "
         f"L = sum((y - z2)^2) / (2n), full-batch SGD lr {lr:g}, {epochs} epochs, seed {seed}")

    fd = finite_difference_gradients(params, x, y)
    candidates = {"hand-derived, (z2-y)/n": hand_gradients(params, x, y, "correct"),
                  "hand-derived, notebook 2/n": hand_gradients(params, x, y, "notebook"),
                  "scratch_grad": scratch_grad_gradients(params, x, y)}
    try:
        candidates["torch"] = torch_gradients(params, x, y)
    except ImportError:
        emit("  (torch is not installed: its column is skipped)")
    emit("gradients at the initial point vs central finite differences: relative error (least-squares ratio)")
    tables = {}
    for label, grads in candidates.items():
        tables[label] = compare_gradients(grads, fd)
        emit(_format_rows(label, tables[label]))
    notebook = tables["hand-derived, notebook 2/n"]
    ratios = [row["ratio"] for row in notebook.values()]
    emit(f"  -> the notebook's dL/dz2 = (z2 - y)*(2/n) makes every gradient {np.mean(ratios):.6f}x the true one "
         f"(a factor 2, relative error {max(r['rel_error'] for r in notebook.values()):.3f}); (z2 - y)/n is exact")

    if "torch" in candidates:
        for convention in ("correct", "notebook"):
            report = check_hand_derivation(convention, seed, hidden)
            verdict = "passes"
            if not report.passed:
                first = report.failures()[0]   # its index counts the differentiated inputs: W1, b1, W2, b2
                verdict = (f"FAILS ({len(report.failures())} findings), first: {PARAMETER_NAMES[first.index]}"
                           f"{list(first.position)} hand-derived {first.analytic:.10g} vs torch {first.torch:.10g}, "
                           f"finite differences {first.fd:.10g}: {first.classification}")
            emit(f"gradient oracle (scratch_grad.testing.check_sample) on the hand-derived VJPs, {convention} "
                 f"dL/dz2: {verdict}")

    bug = compare_trajectories(lambda p: hand_sgd_step(p, hand_gradients(p, x, y), lr, notebook_update_bug=True),
                               lambda p: autograd_sgd_step(p, x, y, lr), params, steps=5)
    emit("trajectory check of the notebook's update lines (`b2 = b1 - lr*dldb1`) against scratch_grad + SGD: "
         + (f"diverges at step {bug['step']}, parameter {bug['parameter']}: {bug['reason']}" if bug else "no divergence"))

    model = TwoLayerLinear(params)
    optimizer = SGD(model.parameters(), lr=lr)
    history = fit(model, quadratic_cost, optimizer, x, y, epochs, len(x), None, on_batch=on_batch,
                  on_epoch=on_epoch)
    hand = {name: np.array(value) for name, value in params.items()}
    for _ in range(epochs):
        hand = hand_sgd_step(hand, hand_gradients(hand, x, y), lr)
    final_loss = regression_loss({name: p.data for name, p in zip(PARAMETER_NAMES, model.parameters())}, x, y)
    deviation = max(float(np.max(np.abs(getattr(model, name).data - hand[name]))) for name in PARAMETER_NAMES)
    emit(f"after {epochs} epochs: loss {final_loss:.3e} (scratch_grad), {regression_loss(hand, x, y):.3e} "
         f"(hand-derived loop); largest parameter difference between the two {deviation:.2e}")
    config = dict(seed=seed, lr=lr, epochs=epochs, hidden=hidden, batch_size=len(x))
    extra = dict(gradient_tables=tables, update_bug_divergence=None if bug is None else
                 {key: bug[key] for key in ("step", "parameter", "reason")}, hand_vs_scratch_grad=deviation)
    return RunResult("regression", history, None, final_loss, time.perf_counter() - started, config, extra)
