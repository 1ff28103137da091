"""scratch_grad.experiments: the founding runs on real MNIST (classic and modern recipes), the plain NumPy
network's trajectory beside scratch_grad's, the random classifier, and the notebook regression's
hand-derivation checks. Training parity with torch: tests/test_training_parity.py."""
import numpy as np
import pytest

from scratch_grad.data import load_mnist
from scratch_grad.experiments import regression
from scratch_grad.experiments import runs as experiments

torch = pytest.importorskip("torch")


def test_every_module_of_the_package_is_reachable_by_its_name():
    """No name means two things: an exported function named like a module (training_parity once) would hide
    it, and `import scratch_grad.experiments.X as m` would return the function."""
    import importlib
    import pkgutil

    import scratch_grad.experiments as package
    names = [info.name for info in pkgutil.iter_modules(package.__path__)]
    assert {"runs", "regression", "numpy_net", "lockstep"} <= set(names)
    for name in names:
        module = importlib.import_module(f"scratch_grad.experiments.{name}")
        assert getattr(package, name) is module, name


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


# ---- the MNIST runs, the plain NumPy network ---------------------------------------------------------

def test_classic_mnist_net_learns_on_a_subset(mnist):
    # 200 steps of the classic recipe (lr 5 needs a while to leave the sigmoid plateau): 81% here
    result = experiments.run_mnist("classic", epochs=2, seed=3, emit=lambda line: None,
                                   splits=_subset(mnist, 2000, 500))
    assert result.final_accuracy > 0.6           # chance is 0.10
    assert result.history.epochs[0].accuracy is not None and result.history.epochs[0].seconds > 0


def test_modern_recipe_learns_on_a_subset(mnist):
    result = experiments.run_mnist("modern", epochs=1, seed=3, emit=lambda line: None,
                                   splits=_subset(mnist, 2000, 500))
    assert result.final_accuracy > 0.75
    assert result.config["optimizer"] == "adam" and result.config["loss"] == "cross_entropy"


def test_numpy_network_follows_the_same_trajectory_as_scratch_grad(mnist):
    lines = []
    result = experiments.run_mnist("classic", epochs=1, seed=4, compare_numpy=True, emit=lines.append,
                                   splits=_subset(mnist, 1000, 300))
    numpy_epoch = result.extra["numpy_history"].epochs[0]
    assert result.extra["max_weight_difference_vs_numpy"] < 1e-12
    assert numpy_epoch.test_accuracy == result.final_accuracy
    assert numpy_epoch.loss == pytest.approx(result.history.epochs[0].loss, rel=1e-12)
    assert any("seconds per epoch" in line for line in lines)


def test_same_seed_same_run_other_seed_other_run(mnist):
    splits = _subset(mnist, 400, 100)
    runs = [experiments.run_mnist("classic", epochs=1, seed=seed, emit=lambda line: None, splits=splits)
            for seed in (5, 5, 6)]
    assert runs[0].history.losses == runs[1].history.losses
    assert runs[0].history.losses != runs[2].history.losses


def _subset(splits, n_train, n_test):
    from scratch_grad.data import MNISTSplits
    return MNISTSplits(splits.x_train[:n_train], splits.y_train[:n_train], splits.x_test[:n_test],
                       splits.y_test[:n_test], source=f"embedded subset {n_train}/{n_test}")


# ---- experiment 1: the random classifier ---------------------------------------------------------------

def test_random_classifier_prints_each_sample_and_is_reproducible():
    lines = []
    result = experiments.run_random_classifier(emit=lines.append)
    sample_lines = [line for line in lines if line.strip()[:1].isdigit() and "[" in line]
    assert len(sample_lines) == 16
    probabilities = result.extra["probabilities"]
    assert probabilities.shape == (16, 5) and np.allclose(probabilities.sum(axis=1), 1)
    assert result.history.losses[-1] < result.history.losses[0]
    assert result.config["sizes"] == [10, 10, 10, 5] and len(result.history.epochs) == 20
    assert any(line.startswith("final loss") for line in lines)
    again = experiments.run_random_classifier(emit=lambda line: None)
    np.testing.assert_array_equal(again.extra["probabilities"], probabilities)
    other = experiments.run_random_classifier(seed=1, emit=lambda line: None)
    assert not np.array_equal(other.extra["probabilities"], probabilities)


def test_random_classifier_memorises_the_set_with_more_steps():
    result = experiments.run_random_classifier(epochs=200, lr=0.05, emit=lambda line: None)
    assert result.final_accuracy == 1.0


# ---- experiment 2: hand-derived gradients --------------------------------------------------------------

@pytest.fixture(scope="module")
def regression_problem():
    x, y, _, _ = regression.linear_regression()
    params = regression.initial_parameters(x.shape[1], 4, y.shape[1], seed=0)
    return x, y, params


def test_correct_hand_derivation_agrees_with_autograd_torch_and_finite_differences(regression_problem):
    x, y, params = regression_problem
    fd = regression.finite_difference_gradients(params, x, y)
    for grads in (regression.hand_gradients(params, x, y), regression.scratch_grad_gradients(params, x, y),
                  regression.torch_gradients(params, x, y)):
        for name, row in regression.compare_gradients(grads, fd).items():
            assert row["rel_error"] < 1e-8, name
    # and hand-derived vs scratch_grad agree to rounding, far tighter than finite differences can tell
    hand, auto = regression.hand_gradients(params, x, y), regression.scratch_grad_gradients(params, x, y)
    for name in regression.PARAMETER_NAMES:
        np.testing.assert_allclose(hand[name], auto[name], rtol=1e-13, atol=1e-15)


def test_notebook_dldz2_makes_every_gradient_exactly_twice_too_large(regression_problem):
    """(z2 - y)*(2/n) vs the correct (z2 - y)/n: a factor 2 (not 4) in all six gradient lines."""
    x, y, params = regression_problem
    notebook = regression.hand_gradients(params, x, y, convention="notebook")
    correct = regression.hand_gradients(params, x, y)
    for name in regression.PARAMETER_NAMES:
        np.testing.assert_allclose(notebook[name], 2 * correct[name], rtol=1e-14)
    rows = regression.compare_gradients(notebook, regression.finite_difference_gradients(params, x, y))
    for name, row in rows.items():
        assert row["ratio"] == pytest.approx(2.0, rel=1e-8), name
        assert row["rel_error"] == pytest.approx(1.0, rel=1e-8), name


def test_the_gradient_oracle_flags_the_notebook_derivation_and_passes_the_correct_one():
    assert regression.check_hand_derivation("correct").passed
    report = regression.check_hand_derivation("notebook")
    assert not report.passed
    failed = {f.index for f in report.failures()}
    assert failed == {0, 1, 2, 3}                      # W1, b1, W2, b2: all four are wrong
    first = report.failures()[0]
    assert first.analytic == pytest.approx(2 * first.torch, rel=1e-12)
    assert first.torch == pytest.approx(first.fd, rel=1e-6)
    assert "disagrees with torch and finite differences" in first.classification


def test_hand_derived_op_stays_out_of_the_registry():
    import scratch_grad as sg
    spec = regression.hand_derived_op("notebook")
    assert spec.name not in sg.REGISTRY


def test_trajectory_check_catches_the_b2_equals_b1_update_line(regression_problem):
    x, y, params = regression_problem
    lr = 0.1
    correct = regression.compare_trajectories(
        lambda p: regression.hand_sgd_step(p, regression.hand_gradients(p, x, y), lr),
        lambda p: regression.autograd_sgd_step(p, x, y, lr), params, steps=20)
    assert correct is None
    buggy = regression.compare_trajectories(
        lambda p: regression.hand_sgd_step(p, regression.hand_gradients(p, x, y), lr, notebook_update_bug=True),
        lambda p: regression.autograd_sgd_step(p, x, y, lr), params, steps=20)
    assert buggy["step"] == 1 and buggy["parameter"] == "b2" and "shape (4,)" in buggy["reason"]


def test_trajectory_check_catches_the_update_bug_even_when_shapes_agree():
    """With one hidden unit b1 and b2 both have shape (1,): NumPy gives no hint, the values still differ."""
    x, y, _, _ = regression.linear_regression()
    params = regression.initial_parameters(x.shape[1], 1, y.shape[1], seed=0)
    buggy = regression.compare_trajectories(
        lambda p: regression.hand_sgd_step(p, regression.hand_gradients(p, x, y), 0.1, notebook_update_bug=True),
        lambda p: regression.autograd_sgd_step(p, x, y, 0.1), params, steps=5)
    assert buggy["step"] == 1 and buggy["parameter"] == "b2" and "difference" in buggy["reason"]


def test_notebook_gradient_convention_diverges_at_step_one_though_its_loss_still_falls(regression_problem):
    x, y, params = regression_problem
    step = lambda p: regression.hand_sgd_step(p, regression.hand_gradients(p, x, y, "notebook"), 0.1)  # noqa: E731
    divergence = regression.compare_trajectories(step, lambda p: regression.autograd_sgd_step(p, x, y, 0.1), params, 5)
    assert divergence["step"] == 1 and divergence["parameter"] == "W1"
    trained = params
    for _ in range(50):
        trained = step(trained)
    assert regression.regression_loss(trained, x, y) < 1e-3 * regression.regression_loss(params, x, y)


def test_regression_experiment_trains_to_the_exact_fit():
    lines = []
    result = regression.run_regression(emit=lines.append)
    assert result.final_loss < 1e-6
    assert result.extra["hand_vs_scratch_grad"] < 1e-12
    assert result.extra["update_bug_divergence"]["parameter"] == "b2"
    assert any("2.000000x" in line for line in lines)
    assert any("notebook dL/dz2: FAILS" in line for line in lines)
