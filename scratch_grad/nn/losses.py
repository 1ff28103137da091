"""Losses: the registered nn ops (checked three ways by the oracle like every op) as functions and as
Module-style callables, plus Nielsen's quadratic cost for the classic MNIST network.

The ops check their inputs (integer class targets in range, equal shapes, the reduction) and say
which input is wrong; nothing here re-implements their numerics.
"""
from __future__ import annotations

from .. import ops
from ..engine import Variable
from .modules import Module

__all__ = ["mse_loss", "quadratic_cost", "cross_entropy", "binary_cross_entropy_with_logits", "softmax",
           "log_softmax", "MSELoss", "QuadraticCost", "CrossEntropyLoss", "BCEWithLogitsLoss", "LOSSES", "loss"]

REDUCTIONS = ("mean", "sum", "none")

softmax = ops.softmax
log_softmax = ops.log_softmax


def mse_loss(prediction, target, reduction="mean"):
    """Mean (or sum, or elementwise) of (prediction - target)^2, as torch.nn.functional.mse_loss."""
    return ops.mse_loss(prediction, target, reduction=reduction)


def cross_entropy(logits, targets, reduction="mean"):
    """Softmax cross-entropy of (N, C) logits against (N,) integer class targets (stable log-softmax)."""
    return ops.cross_entropy(logits, targets, reduction=reduction)


def binary_cross_entropy_with_logits(logits, targets, reduction="mean"):
    """softplus(z) - t z per element, computed without overflow for large |z|."""
    return ops.binary_cross_entropy_with_logits(logits, targets, reduction=reduction)


def quadratic_cost(output, target):
    """The quadratic cost of Nielsen's MNIST network: sum over the batch of ||output - target||^2 / 2,
    divided by the batch size n. Its gradient with respect to the output is (output - target) / n."""
    shape = output.shape if isinstance(output, Variable) else getattr(output, "shape", ())   # no value read
    n = shape[0] if shape else 1
    return ops.mse_loss(output, target, reduction="sum") * (0.5 / n)


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        object.__setattr__(self, "reduction", reduction)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    def forward(self, prediction, target):
        return mse_loss(prediction, target, self.reduction)


class CrossEntropyLoss(_Loss):
    """Takes logits and integer class targets."""

    def forward(self, logits, targets):
        return cross_entropy(logits, targets, self.reduction)


class BCEWithLogitsLoss(_Loss):
    def forward(self, logits, targets):
        return binary_cross_entropy_with_logits(logits, targets, self.reduction)


class QuadraticCost(Module):
    """sum ||output - target||^2 / (2 n): the cost of the classic sigmoid MNIST network."""

    def forward(self, output, target):
        return quadratic_cost(output, target)


LOSSES = {"mse": MSELoss, "quadratic": QuadraticCost, "cross_entropy": CrossEntropyLoss,
          "bce_with_logits": BCEWithLogitsLoss}


def loss(name):
    """A loss module by name: mse, quadratic, cross_entropy, bce_with_logits."""
    try:
        return LOSSES[name]()
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None
