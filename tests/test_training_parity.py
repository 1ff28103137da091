"""Training parity (scratch_grad.experiments.lockstep): the MNIST net trained in scratch_grad and in torch
from the same weights on the same batches, compared after every step; planted formula slips must diverge
where they start."""
import numpy as np
import pytest

from scratch_grad import nn
from scratch_grad.errors import ScratchGradError
from scratch_grad.experiments.lockstep import training_parity

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mnist_net_trains_in_parity_with_torch_for_100_steps_float64(optimizer):
    """784-40-10 sigmoid net, quadratic cost, batch 20 (SGD lr 5, Adam lr 1e-3), same weights, same batches:
    every parameter and the loss agree with torch after each of 100 steps, within the error model's
    trajectory tolerance (scratch_grad.testing.tolerance), which in float64 stays near float64 rounding."""
    report = training_parity(steps=100, optimizer=optimizer, dtype=np.float64)
    assert report.passed, report.summary()
    assert len(report.parameter_errors) == 100
    assert report.parameter_names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    # the tolerance is calibrated by torch float32 against torch float64, every step, and never shrinks
    assert len(report.reference_errors) == 100 and report.reference_errors[0] > 0
    assert all(b >= a for a, b in zip(report.tolerances, report.tolerances[1:]))
    # float64 is checked at float64 precision: a few thousand unit roundoffs, not float32's
    assert max(report.tolerances) < 1e-12 and report.max_parameter_error() < 1e-13
    # the run trained: the loss moved, so agreement is not two frozen copies agreeing
    assert report.losses[-1][0] < 0.8 * report.losses[0][0]


def test_parity_with_momentum_nesterov_weight_decay_and_cross_entropy():
    report = training_parity(steps=30, optimizer="sgd", lr=0.5, momentum=0.9, nesterov=True, weight_decay=1e-3,
                             sizes=(784, 16, 10), activation="relu", output_activation=None, loss="cross_entropy")
    assert report.passed, report.summary()
    report = training_parity(steps=30, optimizer="adamw", weight_decay=1e-2, sizes=(784, 16, 10),
                             activation="tanh", output_activation=None, loss="cross_entropy")
    assert report.passed, report.summary()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_float32_parity_holds_within_the_error_model(optimizer):
    report = training_parity(steps=25, optimizer=optimizer, dtype=np.float32, stop_at_divergence=False)
    assert report.passed, report.summary()
    # the error model is measured (torch f32 vs a torch f64 shadow), nonzero, and never shrinks
    assert len(report.reference_errors) == 25 and report.reference_errors[0] > 0
    assert all(b >= a for a, b in zip(report.tolerances, report.tolerances[1:]))
    # float32 really is compared at float32 precision: errors are above float64 rounding
    assert report.max_parameter_error() > 1e-12


def test_a_slightly_wrong_learning_rate_diverges_at_step_one():
    report = training_parity(steps=10, optimizer="sgd", make_optimizer=lambda p: nn.SGD(p, lr=5.0 * (1 + 1e-6)))
    assert not report.passed
    divergence = report.first_divergence
    assert divergence.step == 1 and divergence.parameter in report.parameter_names
    assert divergence.error > 1e3 * divergence.tolerance and divergence.ours != divergence.theirs
    assert "DIVERGED at step 1" in report.summary()


def test_adam_with_another_eps_diverges_at_step_one():
    report = training_parity(steps=5, optimizer="adam", make_optimizer=lambda p: nn.Adam(p, lr=1e-3, eps=1e-7))
    assert not report.passed and report.first_divergence.step == 1


def test_the_first_divergent_step_and_parameter_are_reported():
    """A bug that only starts at step 38 and only touches the output bias is reported there and not before."""
    class LateBug(nn.SGD):
        def _update(self, p, g, state):
            if self.step_count >= 38 and p.shape == (10,):
                g = g * 1.001
            super()._update(p, g, state)

    report = training_parity(steps=60, optimizer="sgd", make_optimizer=lambda p: LateBug(p, lr=5.0))
    assert report.first_divergence.step == 38
    assert report.first_divergence.parameter == "2.bias"
    assert len(report.parameter_errors) == 38          # stops at the divergence by default
    assert max(report.parameter_errors[36].values()) < report.tolerances[36]


def test_an_lr_off_by_1e_12_is_caught_at_step_one_in_float64():
    """The float64 tolerance is calibrated to float64's own rounding on this trajectory (~2e-14 at step 1
    here), so a slip far below any fixed tolerance such as 1e-10 is still reported where it starts."""
    report = training_parity(steps=3, optimizer="sgd", make_optimizer=lambda p: nn.SGD(p, lr=5.0 * (1 + 1e-12)))
    assert not report.passed and report.first_divergence.step == 1
    assert 1e-13 < report.first_divergence.error < 1e-11


def test_a_dtype_without_an_error_model_is_refused():
    with pytest.raises(ScratchGradError, match="no error model for dtype float16"):
        training_parity(steps=1, dtype=np.float16)
