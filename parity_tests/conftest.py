"""The parity suite's setup: hypothesis profiles and one torch thread per process.

Choose the budget with HYPOTHESIS_PROFILE=ci|dev|fuzz (default ci; see scratch_grad/testing/profiles.py):

    pytest parity_tests -n auto                            # ci: bounded, deterministic
    HYPOTHESIS_PROFILE=dev pytest parity_tests             # random, failures saved and replayed first

Failures print and save a standalone reproducer (./reproducers, or $SCRATCH_GRAD_REPRODUCERS).
"""
import pytest
import torch

from scratch_grad.testing.strategies import register_profiles

PROFILE = register_profiles()
torch.set_num_threads(1)      # tiny tensors; with pytest -n auto, threads would only fight


def pytest_report_header(config):
    return f"hypothesis profile: {PROFILE} (set HYPOTHESIS_PROFILE=ci|dev|fuzz)"


@pytest.fixture
def reproducer_dir(tmp_path, monkeypatch):
    """Reproducers written by checks inside a test go to a temporary directory."""
    directory = tmp_path / "reproducers"
    monkeypatch.setenv("SCRATCH_GRAD_REPRODUCERS", str(directory))
    return directory
