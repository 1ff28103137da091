"""The training loop: minibatch epochs over in-memory arrays, with per-epoch history.

Kept lean because the MNIST step is ~0.2-0.4 ms: batches are gathered once per step with one
fancy index and marked read-only (the engine then saves them for backward without a defensive
copy), training accuracy comes from the forward pass already computed, and evaluation runs
under no_grad so it records no graph.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..compiler import compile as compile_function
from ..engine import Variable, no_grad
from ..errors import ShapeError

__all__ = ["EpochStats", "History", "fit", "evaluate", "predict", "one_hot", "batches"]


@dataclass
class EpochStats:
    epoch: int
    loss: float                     # mean training loss over the epoch's batches
    accuracy: float | None          # training accuracy over the epoch (None: not a classifier)
    test_accuracy: float | None     # held-out accuracy after the epoch (None: no held-out set)
    seconds: float                  # training time of the epoch (evaluation excluded)
    test_loss: float | None = None

    def as_dict(self):
        return dict(epoch=self.epoch, loss=self.loss, accuracy=self.accuracy, test_accuracy=self.test_accuracy,
                    test_loss=self.test_loss, seconds=self.seconds)


@dataclass
class History:
    epochs: list = field(default_factory=list)

    def append(self, stats):
        self.epochs.append(stats)

    @property
    def losses(self):
        return [e.loss for e in self.epochs]

    @property
    def accuracies(self):
        return [e.accuracy for e in self.epochs]

    @property
    def test_accuracies(self):
        return [e.test_accuracy for e in self.epochs]

    @property
    def seconds(self):
        return [e.seconds for e in self.epochs]

    def as_list(self):
        return [e.as_dict() for e in self.epochs]


def one_hot(labels, n_classes, dtype=np.float64):
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ShapeError(f"one_hot: labels must be in [0, {n_classes}), got values in "
                         f"[{labels.min()}, {labels.max()}]")
    encoded = np.zeros((len(labels), n_classes), dtype=dtype)
    encoded[np.arange(len(labels)), labels] = 1
    return encoded


def _read_only(array):
    array.flags.writeable = False
    return array


def batches(n, batch_size, rng):
    """Index arrays of a shuffled pass over n examples (the last batch may be smaller)."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[start:start + batch_size] for start in range(0, n, batch_size)]


def predict(model, x, batch_size=2000):
    """The model's outputs on x as an ndarray, in eval mode and without recording a graph."""
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with no_grad():
            for start in range(0, len(x), batch_size):
                out = model(_read_only(x[start:start + batch_size]))
                outputs.append(out.data if isinstance(out, Variable) else np.asarray(out))
    finally:
        model.train(was_training)
    return np.concatenate(outputs) if outputs else np.zeros((0,))


def _compiled_model_and_loss(model, loss_fn):
    def model_and_loss(x, targets):
        out = model(x)
        return loss_fn(out, targets), out          # the output comes back as aux: for the accuracy
    return compile_function(model_and_loss, name=f"{type(model).__name__} and {getattr(loss_fn, '__name__', 'loss')}",
                   has_aux=True)


def evaluate(model, x, labels, batch_size=2000):
    """Classification accuracy (fraction of argmax hits) of model on (x, labels)."""
    if len(x) == 0:
        return float("nan")
    return float(np.mean(predict(model, x, batch_size).argmax(axis=1) == labels))


def fit(model, loss_fn, optimizer, x_train, targets, epochs, batch_size, rng, labels=None, x_test=None,
        y_test=None, on_batch=None, on_epoch=None, compile=False):
    """Train for `epochs` passes of shuffled minibatches and return a History.

    targets: what loss_fn takes with the model's output (integer labels, or one-hot rows for a
    quadratic cost); labels: integer classes for the accuracy (None: no accuracy, e.g. regression).
    on_batch(done, total, running_loss, running_accuracy or None) and on_epoch(stats) report progress.
    compile: each step's model and loss run through sg.compile (traced at the first batch, again for a
    shorter last batch): the same training bit for bit, with less Python overhead per op. Dropout in
    training mode is refused while tracing (a trace would freeze its random masks).
    """
    n = len(x_train)
    if len(targets) != n:
        raise ShapeError(f"fit: {n} training inputs but {len(targets)} targets")
    history = History()
    model.train()
    compiled_step = _compiled_model_and_loss(model, loss_fn) if compile else None
    for epoch in range(1, epochs + 1):
        start_time = time.perf_counter()
        loss_sum = 0.0
        hits = 0
        plan = batches(n, batch_size, rng)
        for k, index in enumerate(plan):
            xb = _read_only(x_train[index])
            tb = targets[index]
            if isinstance(tb, np.ndarray):
                _read_only(tb)
            if compiled_step is None:
                out = model(xb)
                loss = loss_fn(out, tb)
            else:
                loss, out = compiled_step(xb, tb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(index)
            if labels is not None:
                hits += int(np.count_nonzero(out.data.argmax(axis=1) == labels[index]))
            if on_batch is not None:
                seen = min(n, (k + 1) * batch_size)
                on_batch(k + 1, len(plan), loss_sum / seen, hits / seen if labels is not None else None)
        seconds = time.perf_counter() - start_time
        test_accuracy = evaluate(model, x_test, y_test) if x_test is not None and labels is not None else None
        stats = EpochStats(epoch, loss_sum / n, hits / n if labels is not None else None, test_accuracy, seconds)
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    return history
