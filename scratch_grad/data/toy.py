"""Small seeded toy data sets for the founding examples (classification, regression)."""

from __future__ import annotations

import numpy as np

__all__ = ["random_classification", "linear_regression"]


def random_classification(n_samples=16, n_features=10, n_classes=5, seed=0, dtype=np.float64):
    """Return (x, y): x of shape (n_samples, n_features) ~ N(0, 1) in `dtype`,
    y of shape (n_samples,) int64 labels drawn uniformly from [0, n_classes)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples, n_features)).astype(dtype)
    y = rng.integers(0, n_classes, size=n_samples, dtype=np.int64)
    return x, y


def linear_regression(n_samples=64, n_features=3, n_outputs=1, seed=0, dtype=np.float64):
    """Return (x, y, w, b) with y = x @ w + b exactly (noise-free, computed in `dtype`).

    Shapes: x (n_samples, n_features), w (n_features, n_outputs), b (n_outputs,),
    y (n_samples, n_outputs). All entries of x, w, b are drawn from N(0, 1).
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples, n_features)).astype(dtype)
    w = rng.standard_normal((n_features, n_outputs)).astype(dtype)
    b = rng.standard_normal(n_outputs).astype(dtype)
    return x, x @ w + b, w, b
