"""Two of the three founding experiments, reproduced on scratch_grad (each is one `scratch-grad train --task`),
and the RunResult every experiment returns:

1. random     : a 10-10-10-5 classifier (two hidden layers) on the seeded random set, 20 epochs of
                per-sample SGD at lr 0.01, printing each sample's softmax output next to its label.
2. regression : the two-layer linear regression whose gradients were derived by hand in a notebook,
                hand-derived NumPy gradients side by side with scratch_grad, torch and finite
                differences, and the notebook's two bugs caught: scratch_grad/experiments/regression.py.
3. mnist      : the 784-40-10 sigmoid network, minibatch 20, lr 5.0, quadratic cost ("classic"), or
                ReLU + cross-entropy + Adam ("modern"); optionally timed against plain NumPy
                (experiments/numpy_net.py).

Each run_* function returns a RunResult and writes its text through `emit` (print by default).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..data import load_mnist, random_classification
from ..nn.losses import cross_entropy, quadratic_cost
from ..nn.modules import MLP
from ..nn.optim import SGD, Adam
from ..nn.training import History, evaluate, fit, one_hot, predict
from .numpy_net import NumpySigmoidNet

__all__ = ["RunResult", "MNIST_RECIPES", "run_mnist", "run_random_classifier", "seeded_rngs"]


@dataclass
class RunResult:
    task: str
    history: History
    final_accuracy: float | None          # held-out accuracy (random: on its 16 training samples)
    final_loss: float | None
    wall_time: float
    config: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def seeded_rngs(seed):
    """Independent generators for the initial weights and for the batch order, both from one seed, so a
    second implementation can draw the very same batch order."""
    return np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])


# ---- 3. MNIST ----------------------------------------------------------------------------------------

MNIST_RECIPES = {
    # the founding network: Nielsen-style sigmoid layers and quadratic cost, plain SGD
    "classic": dict(hidden=(40,), activation="sigmoid", output_activation="sigmoid", loss="quadratic",
                    optimizer="sgd", lr=5.0, batch_size=20, epochs=10, dropout=0.0),
    # today's defaults: ReLU, softmax cross-entropy on logits, Adam; wider, with dropout against the
    # overfitting of 8000 examples (at width 40 without dropout this recipe ends near 94.5%, below classic)
    "modern": dict(hidden=(128,), activation="relu", output_activation=None, loss="cross_entropy",
                   optimizer="adam", lr=1e-3, batch_size=32, epochs=10, dropout=0.2),
}


def run_mnist(recipe="classic", data_dir=None, epochs=None, lr=None, batch_size=None, seed=0, hidden=None,
              dtype=np.float64, compare_numpy=False, emit=print, on_batch=None, on_epoch=None, splits=None,
              compile=False):
    """Train on MNIST (embedded 8000/2000 split, or the full set in data_dir) and report held-out accuracy.

    compile: train through sg.compile (the same training bit for bit, faster; not with dropout).

    compare_numpy: also train the plain NumPy network (classic recipe only) from the same weights on
    the same batches, epoch by epoch interleaved with scratch_grad so both see the same machine load."""
    if recipe not in MNIST_RECIPES:
        raise ValueError(f"unknown MNIST recipe {recipe!r}; choose one of {sorted(MNIST_RECIPES)}")
    config = dict(MNIST_RECIPES[recipe])
    config.update({key: value for key, value in dict(epochs=epochs, lr=lr, batch_size=batch_size).items()
                   if value is not None})
    if hidden is not None:
        config["hidden"] = tuple(hidden)
    if compare_numpy and recipe != "classic":
        raise ValueError("--compare-numpy times the classic network (sigmoid, quadratic cost, SGD); "
                         "use it with --recipe classic")
    started = time.perf_counter()
    if splits is None:
        splits = load_mnist(data_dir, dtype=dtype)
    x_train, y_train, x_test, y_test = splits.x_train, splits.y_train, splits.x_test, splits.y_test
    sizes = (x_train.shape[1], *config["hidden"], 10)
    init_rng, order_rng = seeded_rngs(seed)
    model = MLP(sizes, activation=config["activation"], output_activation=config["output_activation"],
                dropout=config["dropout"], dtype=dtype, rng=init_rng)
    if config["loss"] == "quadratic":
        loss_fn, targets = quadratic_cost, one_hot(y_train, 10, dtype)
    else:
        loss_fn, targets = cross_entropy, y_train
    if config["optimizer"] == "sgd":
        optimizer = SGD(model.parameters(), lr=config["lr"])
    else:
        optimizer = Adam(model.parameters(), lr=config["lr"])
    emit(f"MNIST ({splits.source}): {len(x_train)} train / {len(x_test)} held-out; "
         f"{'-'.join(map(str, sizes))} {config['activation']}"
         f"{', dropout %g' % config['dropout'] if config['dropout'] else ''}, {config['loss']} loss, {config['optimizer']} "
         f"lr {config['lr']:g}, batch {config['batch_size']}, {config['epochs']} epochs, {np.dtype(dtype).name}, "
         f"seed {seed}{', sg.compile' if compile else ''}")

    numpy_net = NumpySigmoidNet.from_module(model) if compare_numpy else None
    numpy_order_rng = seeded_rngs(seed)[1] if compare_numpy else None
    numpy_history = History()
    history = History()
    for epoch in range(1, config["epochs"] + 1):
        stats = fit(model, loss_fn, optimizer, x_train, targets, 1, config["batch_size"], order_rng, labels=y_train,
                    x_test=x_test, y_test=y_test, on_batch=on_batch, compile=compile)
        stats = stats.epochs[0]
        stats.epoch = epoch
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
        if numpy_net is not None:
            numpy_stats = numpy_net.fit_epoch(x_train, targets, y_train, config["batch_size"], config["lr"],
                                              numpy_order_rng, epoch, x_test, y_test)
            numpy_history.append(numpy_stats)
            emit(f"         plain NumPy: loss {numpy_stats.loss:.4f}  train acc {numpy_stats.accuracy:.2%}  "
                 f"held-out acc {numpy_stats.test_accuracy:.2%}  {numpy_stats.seconds:.2f} s")
    wall = time.perf_counter() - started
    final = history.epochs[-1].test_accuracy
    extra = {"sizes": sizes, "source": splits.source}
    if numpy_net is not None:
        extra["numpy_history"] = numpy_history
        extra["max_weight_difference_vs_numpy"] = max(
            float(np.max(np.abs(layer.weight.data.T - w)))
            for layer, w in zip(model.linear_layers(), numpy_net.weights))
        sg_time, np_time = float(np.median(history.seconds)), float(np.median(numpy_history.seconds))
        extra["median_seconds_per_epoch"] = {"scratch_grad": sg_time, "numpy": np_time}
        emit(f"seconds per epoch (median): scratch_grad{' (compiled)' if compile else ''} {sg_time:.3f}, "
             f"plain NumPy {np_time:.3f} "
             f"(ratio {sg_time / np_time:.2f}); final held-out accuracy "
             f"scratch_grad {final:.2%}, NumPy {numpy_history.epochs[-1].test_accuracy:.2%}; largest weight "
             f"difference between the two after training {extra['max_weight_difference_vs_numpy']:.2e}")
    config.update(seed=seed, dtype=np.dtype(dtype).name, recipe=recipe, sizes=list(sizes), compile=compile)
    return RunResult("mnist", history, final, history.epochs[-1].loss, wall, config, extra)


# ---- 1. the random classifier ---------------------------------------------------------------------------

def run_random_classifier(epochs=20, lr=0.01, seed=0, hidden=(10, 10), activation="relu", batch_size=1,
                          emit=print, on_batch=None, on_epoch=None, compile=False):
    """The founding classifier on random_classification() (16 samples, 10 features, 5 classes, data
    seed 0): per-sample SGD on softmax cross-entropy. The set is random noise with no held-out part, so
    its accuracy is measured on the 16 samples it trains on, as the original did."""
    started = time.perf_counter()
    x, y = random_classification()
    init_rng, order_rng = seeded_rngs(seed)
    sizes = (x.shape[1], *hidden, 5)
    model = MLP(sizes, activation=activation, rng=init_rng)
    optimizer = SGD(model.parameters(), lr=lr)
    emit(f"random set: {len(x)} samples x {x.shape[1]} features, 5 classes; {'-'.join(map(str, sizes))} "
         f"{activation}, softmax cross-entropy, SGD lr {lr:g}, batch {batch_size}, {epochs} epochs, seed {seed}"
         f"{', sg.compile' if compile else ''}")
    history = fit(model, cross_entropy, optimizer, x, y, epochs, batch_size, order_rng, labels=y,
                  on_batch=on_batch, on_epoch=on_epoch, compile=compile)
    logits = predict(model, x)
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    final_loss = float(-np.mean(np.log(probabilities[np.arange(len(y)), y])))
    final_accuracy = evaluate(model, x, y)
    emit("sample  softmax output" + " " * 33 + "label  predicted")
    for k, (p, label) in enumerate(zip(probabilities, y)):
        emit(f"{k:>6}  [{' '.join(f'{v:.4f}' for v in p)}]  {label:>5}  {int(p.argmax()):>9}")
    emit(f"final loss {final_loss:.4f}, accuracy {final_accuracy:.2%} ({int(round(final_accuracy * len(y)))}/{len(y)})")
    config = dict(seed=seed, lr=lr, epochs=epochs, batch_size=batch_size, sizes=list(sizes), activation=activation,
                  compile=compile)
    return RunResult("random", history, final_accuracy, final_loss, time.perf_counter() - started, config,
                     {"probabilities": probabilities, "labels": y})
