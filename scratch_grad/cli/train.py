"""`scratch-grad train`: the founding experiments from the command line.

    scratch-grad train --task mnist                        # 784-40-10 sigmoid, lr 5, batch 20, 10 epochs
    scratch-grad train --task mnist --compare-numpy        # ... timed against the plain NumPy network
    scratch-grad train --task mnist --data-dir ~/mnist     # full MNIST (the four IDX files)
    scratch-grad train --task mnist --recipe modern        # ReLU, dropout, cross-entropy, Adam
    scratch-grad train --task mnist --parity 100 --optimizer adam   # step-by-step parity with torch
    scratch-grad train --task random                       # the 10-10-10-5 classifier on the random set
    scratch-grad train --task regression                   # hand-derived gradients vs autograd
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys

import numpy as np

from ..data import load_mnist
from ..errors import ScratchGradError
from ..experiments.regression import run_regression
from ..experiments.runs import MNIST_RECIPES, run_mnist, run_random_classifier
from ..experiments.lockstep import training_parity
from ..progress import bar
from ..nn.modules import ACTIVATIONS
from . import options

TASK_DEFAULTS = {
    "random": dict(epochs=20, lr=0.01, batch_size=1),
    "regression": dict(epochs=100, lr=0.1, batch_size=None),   # full batch
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="scratch-grad train",
        description="Train the founding experiments on scratch_grad: MNIST (784-40-10), the random "
                    "10-10-10-5 classifier, the hand-derived two-layer regression; or check training "
                    "parity with torch step by step.")
    parser.add_argument("--task", required=True, choices=("mnist", "random", "regression"))
    parser.add_argument("--data-dir", metavar="DIR",
                        help="mnist: a directory with the four MNIST IDX files, raw or .gz (default: the "
                             "embedded t10k split, 8000 train / 2000 held-out)")
    parser.add_argument("--epochs", type=options.positive_int, metavar="N")
    parser.add_argument("--lr", type=options.positive_float, metavar="X", help="learning rate")
    parser.add_argument("--batch-size", type=options.positive_int, metavar="B")
    options.add_seed(parser, "seeds the initial weights and the batch order (default 0)")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of the loss/accuracy curves (needs matplotlib)")
    options.add_json(parser, "write per-epoch loss and accuracy and final_accuracy as JSON")
    parser.add_argument("--recipe", choices=("classic", "modern"), default=None,
                        help="mnist: classic = sigmoid, quadratic cost, SGD lr 5 (default); "
                             "modern = 784-128-10 ReLU with dropout 0.2, cross-entropy, Adam lr 1e-3, batch 32")
    parser.add_argument("--hidden", type=options.positive_int, nargs="+", metavar="N",
                        help="hidden layer sizes (mnist default 40; random default 10 10)")
    parser.add_argument("--activation", default=None,
                        help="random: hidden activation (default relu): sigmoid, tanh, relu, gelu, ...")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--compare-numpy", action="store_true",
                        help="mnist classic: also train the plain NumPy network from the same weights on the "
                             "same batches and report seconds per epoch for both")
    parser.add_argument("--parity", type=options.positive_int, metavar="STEPS",
                        help="mnist: instead of training, train in scratch_grad and torch side by side for "
                             "STEPS steps and compare loss and every parameter after each step")
    parser.add_argument("--optimizer", choices=("sgd", "adam", "adamw"),
                        help="--parity: the optimizer (default: the recipe's)")
    parser.add_argument("--threads", type=options.positive_int, metavar="N",
                        help="NumPy BLAS threads for the run (needs threadpoolctl). The 784-40-10 net's matrices "
                             "are tiny: 1 thread is fastest, and on a busy machine idle BLAS threads can make "
                             "each step 10-100x slower (default: 1 when threadpoolctl is installed, else NumPy's "
                             "setting)")
    parser.add_argument("--compile", action="store_true",
                        help="mnist, random: run each step through sg.compile (the same training bit for bit, "
                             "less Python overhead per op); not with dropout (--recipe modern)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (there is none anyway when stderr is not a terminal)")
    return parser


def _validate(parser, args):
    if args.task != "mnist":
        for flag, value in (("--data-dir", args.data_dir), ("--recipe", args.recipe),
                            ("--compare-numpy", args.compare_numpy), ("--parity", args.parity)):
            if value:
                parser.error(f"{flag} applies to --task mnist only")
    if args.compile and args.task == "regression":
        parser.error("--compile applies to --task mnist and random (the regression is the notebook's own loop)")
    if args.compile and args.recipe == "modern":
        parser.error("--compile: the modern recipe uses dropout, whose random masks a trace would freeze; "
                     "use --recipe classic")
    if args.compile and args.parity:
        parser.error("--compile trains; --parity compares eager steps with torch")
    if args.optimizer and not args.parity:
        parser.error("--optimizer applies to --parity only (training uses the recipe's optimizer)")
    if args.activation is not None and args.task != "random":
        parser.error("--activation applies to --task random only (mnist: choose a --recipe)")
    if args.activation is not None:
        if args.activation not in ACTIVATIONS:
            parser.error(f"--activation: unknown activation {args.activation!r}; choose from {sorted(ACTIVATIONS)}")
    if args.hidden and args.task == "regression":
        if len(args.hidden) != 1:
            parser.error("--hidden: the regression has exactly one hidden layer (give one size)")
    if args.task == "regression" and args.batch_size:
        parser.error("--batch-size: the regression trains full batch, as the notebook did")
    if args.compare_numpy and (args.recipe or "classic") != "classic":
        parser.error("--compare-numpy times the classic network; drop --recipe modern")
    if args.parity and (args.plot or args.compare_numpy or args.epochs):
        parser.error("--parity runs a fixed number of steps; it does not take --epochs, --plot or --compare-numpy")
    if args.data_dir is not None and not os.path.isdir(os.path.expanduser(args.data_dir)):
        parser.error(f"--data-dir {args.data_dir}: no such directory (it must hold train-images-idx3-ubyte, "
                     "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, raw or .gz)")
    options.validate(parser, args, needs=("torch",) if args.parity else ())
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib, an optional extra: pip install 'scratch_grad[plot]'")
    if args.threads is not None:
        try:
            import threadpoolctl  # noqa: F401
        except ImportError:
            parser.error("--threads needs threadpoolctl (pip install threadpoolctl); or set OPENBLAS_NUM_THREADS "
                         "/ OMP_NUM_THREADS in the environment instead")


class EpochProgress:
    """fit()'s on_batch hook as one tqdm bar per epoch (batches, rate, ETA, running loss and
    accuracy in percent), live only on a terminal (scratch_grad.progress)."""

    def __init__(self, epochs, enabled=None, stream=None, **bar_options):
        self.epochs = epochs
        self.enabled = enabled
        self.stream = stream
        self.bar_options = bar_options      # passed to tqdm (a test sets mininterval=0)
        self.epoch = 1
        self.bar = None

    def on_batch(self, done, total, loss, accuracy=None):
        if self.bar is None:
            self.bar = bar(total=total, desc=f"epoch {self.epoch}/{self.epochs}", unit="batch",
                           stream=self.stream, enabled=self.enabled, **self.bar_options)
        if self.bar.disable:
            return
        self.bar.set_postfix_str(f"loss {loss:.4f}" + (f" acc {accuracy:.2%}" if accuracy is not None else ""),
                                 refresh=False)
        self.bar.update(done - self.bar.n)

    def end_epoch(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.epoch += 1


def _epoch_line(stats, epochs):
    parts = [f"epoch {stats.epoch:>3}/{epochs}", f"loss {stats.loss:.6g}"]
    if stats.accuracy is not None:
        parts.append(f"train acc {stats.accuracy:.2%}")
    if stats.test_accuracy is not None:
        parts.append(f"held-out acc {stats.test_accuracy:.2%}")
    parts.append(f"{stats.seconds:.2f} s")
    return "  ".join(parts)


def _figure(result):
    """Loss (and accuracy, in percent like the epoch lines) against the epoch, ticks on whole epochs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    history = result.history
    epochs = [e.epoch for e in history.epochs]
    has_accuracy = any(a is not None for a in history.accuracies)
    figure, axes = plt.subplots(1, 2 if has_accuracy else 1, figsize=(10 if has_accuracy else 5, 4), squeeze=False)
    loss_axis = axes[0][0]
    loss_axis.plot(epochs, history.losses, marker="o", label="scratch_grad")
    numpy_history = result.extra.get("numpy_history")
    if numpy_history is not None:
        loss_axis.plot(epochs, numpy_history.losses, marker="x", linestyle="--", label="plain NumPy")
    loss_axis.set_ylabel("training loss")
    if result.task == "regression":
        loss_axis.set_yscale("log")
    loss_axis.legend()

    def percent(values):
        return [None if v is None else 100 * v for v in values]

    if has_accuracy:
        axis = axes[0][1]
        axis.plot(epochs, percent(history.accuracies), marker="o", label="train")
        if any(a is not None for a in history.test_accuracies):
            axis.plot(epochs, percent(history.test_accuracies), marker="o", label="held-out")
        if numpy_history is not None:
            axis.plot(epochs, percent(numpy_history.test_accuracies), marker="x", linestyle="--",
                      label="held-out, NumPy")
        axis.set_ylabel("accuracy")
        axis.yaxis.set_major_formatter(PercentFormatter(100))
        axis.legend()
    for axis in axes[0]:
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(f"scratch-grad train --task {result.task}")
    figure.tight_layout()
    return figure


def _plot(path, result):
    import matplotlib.pyplot as plt
    figure = _figure(result)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path, payload):
    with open(os.path.expanduser(path), "w") as handle:
        json.dump(_jsonable(payload), handle, indent=2)
        handle.write("\n")


def _run_parity(args):
    recipe = MNIST_RECIPES[args.recipe or "classic"]
    optimizer = args.optimizer or recipe["optimizer"]
    lr = args.lr if args.lr is not None else (recipe["lr"] if optimizer == recipe["optimizer"] else None)
    data = None
    if args.data_dir is not None:
        splits = load_mnist(os.path.expanduser(args.data_dir), dtype=args.dtype)
        data = (splits.x_train, splits.y_train)
    hidden = tuple(args.hidden) if args.hidden else recipe["hidden"]
    report = training_parity(steps=args.parity, optimizer=optimizer, dtype=np.dtype(args.dtype),
                             sizes=(784, *hidden, 10), activation=recipe["activation"],
                             output_activation=recipe["output_activation"], loss=recipe["loss"], lr=lr,
                             batch_size=args.batch_size or recipe["batch_size"], seed=args.seed, data=data)
    print(report.table(every=max(1, args.parity // 10)))
    print(report.summary())
    if args.json:
        _write_json(args.json, {"task": "mnist", "mode": "parity", "parity": report.as_dict()})
    return 0 if report.passed else 1


def _blas_threads(count):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:          # only an explicit --threads requires it (checked in _validate)
        return contextlib.nullcontext()
    return threadpool_limits(limits=1 if count is None else count, user_api="blas")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    _validate(parser, args)
    try:
        with _blas_threads(args.threads):
            if args.parity:
                return _run_parity(args)
            return _train(args)
    except ScratchGradError as exc:     # DataError (missing or malformed MNIST files) and the like
        print(f"scratch-grad train: error: {exc}", file=sys.stderr)
        return 1


def _train(args):
    defaults = MNIST_RECIPES[args.recipe or "classic"] if args.task == "mnist" else TASK_DEFAULTS[args.task]
    epochs = args.epochs or defaults["epochs"]
    progress = EpochProgress(epochs, enabled=False if args.no_progress else None)

    # at most ~25 epoch lines: every epoch up to 25, then every k-th and the last (the JSON keeps all)
    every = max(1, epochs // 20) if epochs > 25 else 1

    def on_epoch(stats):
        progress.end_epoch()
        if stats.epoch == 1 or stats.epoch % every == 0 or stats.epoch == epochs:
            print(_epoch_line(stats, epochs), flush=True)

    common = dict(on_batch=progress.on_batch, on_epoch=on_epoch)
    if args.task == "mnist":
        result = run_mnist(args.recipe or "classic", data_dir=os.path.expanduser(args.data_dir) if args.data_dir
                           else None, epochs=epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                           hidden=args.hidden, dtype=np.dtype(args.dtype), compare_numpy=args.compare_numpy,
                           compile=args.compile, **common)
    elif args.task == "random":
        result = run_random_classifier(epochs=epochs, lr=args.lr or defaults["lr"], seed=args.seed,
                                       hidden=tuple(args.hidden) if args.hidden else (10, 10),
                                       activation=args.activation or "relu",
                                       batch_size=args.batch_size or defaults["batch_size"], compile=args.compile,
                                       **common)
    else:
        result = run_regression(epochs=epochs, lr=args.lr or defaults["lr"], seed=args.seed,
                                hidden=args.hidden[0] if args.hidden else 4, **common)

    if result.final_accuracy is not None:
        where = "held-out accuracy" if args.task == "mnist" else \
            "accuracy (on the 16 training samples: the random set has no held-out part)"
        print(f"final {where}: {result.final_accuracy:.2%}")
    print(f"final loss: {result.final_loss:.6g}")
    print(f"wall time: {result.wall_time:.2f} s ({sum(result.history.seconds):.2f} s training)")
    if args.plot:
        _plot(os.path.expanduser(args.plot), result)
        print(f"plot written to {args.plot}")
    if args.json:
        payload = {"task": result.task, "config": result.config, "epochs": result.history.as_list(),
                   "final_accuracy": result.final_accuracy, "final_loss": result.final_loss,
                   "wall_time": result.wall_time}
        numpy_history = result.extra.get("numpy_history")
        if numpy_history is not None:
            payload["numpy_epochs"] = numpy_history.as_list()
            payload["median_seconds_per_epoch"] = result.extra["median_seconds_per_epoch"]
        if result.task == "regression":
            payload["update_bug_divergence"] = result.extra["update_bug_divergence"]
            payload["gradient_tables"] = result.extra["gradient_tables"]
        _write_json(args.json, payload)
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
