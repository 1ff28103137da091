"""scratch_grad.experiments: what is run with the nn library rather than part of it.

- runs.py: the founding MNIST net (784-40-10 sigmoid, or the modern recipe) and the random
  10-10-10-5 classifier, each one `scratch-grad train --task`; RunResult.
- regression.py: the notebook's hand-derived two-layer regression, its gradients checked against
  scratch_grad, torch, finite differences and the gradient oracle.
- numpy_net.py: the classic MNIST net in plain NumPy (backprop by hand): the speed baseline and an
  independent second trajectory.
- lockstep.py: training parity, `training_parity()`: the same MLP trained in scratch_grad and in torch
  in lockstep, compared after every step (`scratch-grad train --task mnist --parity STEPS`); torch is
  imported when it runs. (Not training_parity.py: the function exported here would hide the module.)

Layers: experiments import nn, ops, the engine, data and testing; nothing in nn imports experiments.
See scratch_grad/experiments/README.md.
"""
from .numpy_net import NumpySigmoidNet
from .regression import run_regression
from .runs import MNIST_RECIPES, RunResult, run_mnist, run_random_classifier, seeded_rngs
from .lockstep import TrainingParityReport, training_parity

__all__ = ["NumpySigmoidNet", "run_regression", "MNIST_RECIPES", "RunResult", "run_mnist", "run_random_classifier",
           "seeded_rngs", "TrainingParityReport", "training_parity"]
