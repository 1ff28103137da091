"""`scratch-grad train`: the three tasks end to end, --json, --plot, --seed, parity mode, full-MNIST
directories, and clear messages for bad arguments and missing data."""
import json
import sys

import numpy as np
import pytest

from scratch_grad.cli import main as cli_main
from scratch_grad.data import MNIST_FILES, load_mnist, write_idx
from scratch_grad.cli.train import main


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_dispatcher_routes_train(capsys, tmp_path):
    assert cli_main(["train", "--task", "random", "--epochs", "1", "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["task"] == "random"


def test_random_task_json_has_per_epoch_loss_accuracy_and_final_accuracy(capsys, tmp_path):
    path = tmp_path / "random.json"
    code, out, _ = run(["--task", "random", "--epochs", "3", "--json", str(path)], capsys)
    assert code == 0
    data = json.loads(path.read_text())
    assert [e["epoch"] for e in data["epochs"]] == [1, 2, 3]
    assert all(isinstance(e["loss"], float) and 0 <= e["accuracy"] <= 1 for e in data["epochs"])
    assert 0 <= data["final_accuracy"] <= 1 and data["config"]["lr"] == 0.01
    assert out.count("epoch ") >= 3 and "label" in out and "wall time" in out


def test_mnist_task_one_epoch_with_numpy_comparison(capsys, tmp_path):
    path = tmp_path / "mnist.json"
    code, out, _ = run(["--task", "mnist", "--epochs", "1", "--compare-numpy", "--no-progress", "--json", str(path)],
                       capsys)
    assert code == 0
    data = json.loads(path.read_text())
    assert data["final_accuracy"] > 0.8                      # one epoch of 8000 digits: ~90%
    assert data["epochs"][0]["test_accuracy"] == data["final_accuracy"]
    assert data["numpy_epochs"][0]["test_accuracy"] == data["final_accuracy"]
    assert data["config"]["sizes"] == [784, 40, 10] and data["config"]["lr"] == 5.0
    assert "final held-out accuracy" in out and "plain NumPy" in out


@pytest.mark.parametrize("task", ["mnist", "random"])
def test_compile_option_trains_the_same_network_bit_for_bit(task, capsys, tmp_path):
    results = []
    for extra in ([], ["--compile"]):
        path = tmp_path / f"{task}{len(extra)}.json"
        code, out, _ = run(["--task", task, "--epochs", "2", "--no-progress", "--json", str(path), *extra], capsys)
        assert code == 0
        results.append(json.loads(path.read_text()))
    eager, compiled = results
    assert compiled["config"]["compile"] is True and eager["config"]["compile"] is False
    assert [e["loss"] for e in compiled["epochs"]] == [e["loss"] for e in eager["epochs"]]
    assert compiled["final_loss"] == eager["final_loss"] and compiled["final_accuracy"] == eager["final_accuracy"]
    assert "sg.compile" in out


def test_seed_makes_runs_repeat(capsys, tmp_path):
    losses = []
    for k, seed in enumerate(["7", "7", "8"]):
        path = tmp_path / f"{k}.json"
        assert run(["--task", "random", "--epochs", "2", "--seed", seed, "--json", str(path)], capsys)[0] == 0
        losses.append([e["loss"] for e in json.loads(path.read_text())["epochs"]])
    assert losses[0] == losses[1] and losses[0] != losses[2]


def test_regression_task(capsys, tmp_path):
    path = tmp_path / "regression.json"
    code, out, _ = run(["--task", "regression", "--epochs", "150", "--json", str(path)], capsys)
    assert code == 0
    data = json.loads(path.read_text())
    assert data["final_accuracy"] is None and data["final_loss"] < 1e-8
    assert len(data["epochs"]) == 150 and data["update_bug_divergence"]["step"] == 1
    assert data["gradient_tables"]["hand-derived, notebook 2/n"]["W1"]["ratio"] == pytest.approx(2.0)
    assert out.count("epoch ") < 30                      # long runs print a sample of epochs


def test_full_mnist_directory_is_used_when_given(capsys, tmp_path):
    """A directory with the four standard files (here a small one written from the embedded digits)."""
    splits = load_mnist()
    images = (np.round(splits.x_train * 255)).astype(np.uint8).reshape(-1, 28, 28)
    labels = splits.y_train.astype(np.uint8)
    arrays = [images[:600], labels[:600], images[600:800], labels[600:800]]
    for name, array in zip(MNIST_FILES, arrays):
        write_idx(tmp_path / f"{name}.gz", array)
    path = tmp_path / "out.json"
    code, out, _ = run(["--task", "mnist", "--data-dir", str(tmp_path), "--epochs", "1", "--json", str(path)], capsys)
    assert code == 0
    assert "600 train / 200 held-out" in out and str(tmp_path) in out
    assert 0 <= json.loads(path.read_text())["final_accuracy"] <= 1


def test_missing_mnist_files_give_a_clear_message(capsys, tmp_path):
    code, _, err = run(["--task", "mnist", "--data-dir", str(tmp_path)], capsys)
    assert code == 1
    assert "missing 4 of 4 files" in err and "Traceback" not in err


def test_parity_mode(capsys, tmp_path):
    path = tmp_path / "parity.json"
    code, out, _ = run(["--task", "mnist", "--parity", "5", "--optimizer", "adam", "--json", str(path)], capsys)
    assert code == 0 and "parity holds" in out
    data = json.loads(path.read_text())["parity"]
    assert data["passed"] and data["optimizer"] == "adam" and len(data["parameter_errors"]) == 5


def test_plot_writes_a_png(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    assert run(["--task", "random", "--epochs", "2", "--plot", str(path)], capsys)[0] == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_get_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)    # makes `import matplotlib` raise ImportError
    err = usage_error(["--task", "random", "--plot", str(tmp_path / "p.png")], capsys)
    assert "matplotlib" in err and "scratch_grad[plot]" in err


@pytest.mark.parametrize("argv, message", [
    (["--task", "cifar"], "invalid choice"),
    ([], "--task"),
    (["--task", "mnist", "--epochs", "0"], "positive integer"),
    (["--task", "mnist", "--epochs", "ten"], "positive integer"),
    (["--task", "mnist", "--lr", "-1"], "positive finite number"),
    (["--task", "mnist", "--lr", "nan"], "positive finite number"),
    (["--task", "mnist", "--batch-size", "0"], "positive integer"),
    (["--task", "mnist", "--seed", "-3"], "non-negative integer"),
    (["--task", "mnist", "--data-dir", "/no/such/dir"], "no such directory"),
    (["--task", "random", "--data-dir", "."], "--task mnist only"),
    (["--task", "regression", "--parity", "5"], "--task mnist only"),
    (["--task", "mnist", "--recipe", "modern", "--compare-numpy"], "classic"),
    (["--task", "mnist", "--optimizer", "adam"], "--parity only"),
    (["--task", "mnist", "--parity", "5", "--epochs", "2"], "fixed number of steps"),
    (["--task", "mnist", "--activation", "relu"], "--task random only"),
    (["--task", "random", "--activation", "swish"], "unknown activation"),
    (["--task", "regression", "--batch-size", "8"], "full batch"),
    (["--task", "regression", "--hidden", "3", "4"], "one hidden layer"),
    (["--task", "regression", "--compile"], "--task mnist and random"),
    (["--task", "mnist", "--recipe", "modern", "--compile"], "dropout"),
    (["--task", "mnist", "--parity", "5", "--compile"], "--compile trains"),
    (["--task", "random", "--json", "/no/such/dir/out.json"], "does not exist"),
])
def test_bad_arguments_are_refused_with_a_message(argv, message, capsys):
    assert message in usage_error(argv, capsys)


def test_threads_option(capsys, tmp_path, monkeypatch):
    pytest.importorskip("threadpoolctl")
    assert run(["--task", "random", "--epochs", "1", "--threads", "1"], capsys)[0] == 0
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    assert "OPENBLAS_NUM_THREADS" in usage_error(["--task", "random", "--threads", "1"], capsys)


class FakeTerminal:
    """A text stream that says it is a terminal, so tqdm draws into it."""

    def __init__(self):
        import io
        self.buffer = io.StringIO()

    def write(self, text):
        return self.buffer.write(text)

    def flush(self):
        pass

    def isatty(self):
        return True

    def getvalue(self):
        return self.buffer.getvalue()


def test_progress_shows_batches_rate_loss_and_accuracy_on_a_terminal_and_nothing_elsewhere():
    from scratch_grad.cli.train import EpochProgress
    terminal = FakeTerminal()
    progress = EpochProgress(3, stream=terminal, mininterval=0)
    for done in range(1, 401):
        progress.on_batch(done, 400, 0.125, 0.9)
    progress.end_epoch()
    text = terminal.getvalue()
    assert "epoch 1/3" in text and "400/400" in text and "batch/s" in text
    assert "loss 0.1250 acc 90.00%" in text
    progress.on_batch(1, 400, 0.1, None)
    progress.end_epoch()
    assert "epoch 2/3" in terminal.getvalue() and "loss 0.1000" in terminal.getvalue()
    import io
    pipe = io.StringIO()            # not a terminal: no bar at all
    quiet = EpochProgress(3, stream=pipe)
    quiet.on_batch(1, 400, 0.5, 0.5)
    quiet.end_epoch()
    assert pipe.getvalue() == ""
    forced_off = FakeTerminal()     # --no-progress on a terminal
    EpochProgress(3, enabled=False, stream=forced_off).on_batch(1, 400, 0.5, 0.5)
    assert forced_off.getvalue() == ""


def test_plot_has_whole_epoch_ticks_and_accuracy_in_percent(capsys):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from scratch_grad.experiments.runs import run_random_classifier
    from scratch_grad.cli.train import _figure
    result = run_random_classifier(epochs=3, lr=0.01, seed=0, emit=lambda *a: None)
    figure = _figure(result)
    figure.canvas.draw()
    loss_axis, accuracy_axis = figure.axes
    for axis in (loss_axis, accuracy_axis):
        ticks = [t for t in axis.get_xticks() if axis.get_xlim()[0] <= t <= axis.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    train_line = accuracy_axis.get_lines()[0]
    final = result.history.accuracies[-1]
    assert train_line.get_ydata()[-1] == pytest.approx(100 * final)       # percent, as the epoch lines print
    assert all(label.get_text().endswith("%") for label in accuracy_axis.get_yticklabels() if label.get_text())
    plt.close(figure)
