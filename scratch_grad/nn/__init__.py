"""scratch_grad.nn: modules, losses, optimizers and training on the scratch_grad engine, shaped like torch.nn.

    import numpy as np
    from scratch_grad import nn

    model = nn.MLP([784, 40, 10], activation="sigmoid", output_activation="sigmoid", rng=np.random.default_rng(0))
    optimizer = nn.SGD(model.parameters(), lr=5.0)
    loss = nn.quadratic_cost(model(x), y_onehot)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

See scratch_grad/nn/README.md. The founding experiments, the plain NumPy reference net and training parity
with torch are applications of this library: scratch_grad.experiments (`scratch-grad train`).
"""
from .modules import (ACTIVATIONS, ELU, GELU, MLP, Dropout, Identity, LeakyReLU, Linear, Module, Parameter, ReLU,
                      Sequential, Sigmoid, Softplus, Tanh, activation, default_rng, load_npz, manual_seed, save_npz)
from .losses import (LOSSES, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, QuadraticCost,
                     binary_cross_entropy_with_logits, cross_entropy, log_softmax, loss, mse_loss, quadratic_cost,
                     softmax)
from .optim import OPTIMIZERS, SGD, Adam, AdamW, Optimizer
from .training import EpochStats, History, evaluate, fit, one_hot, predict

__all__ = ["ACTIVATIONS", "ELU", "GELU", "MLP", "Dropout", "Identity", "LeakyReLU", "Linear", "Module", "Parameter",
           "ReLU", "Sequential", "Sigmoid", "Softplus", "Tanh", "activation", "default_rng", "load_npz",
           "manual_seed", "save_npz", "LOSSES", "BCEWithLogitsLoss", "CrossEntropyLoss", "MSELoss", "QuadraticCost",
           "binary_cross_entropy_with_logits", "cross_entropy", "log_softmax", "loss", "mse_loss", "quadratic_cost",
           "softmax", "OPTIMIZERS", "SGD", "Adam", "AdamW", "Optimizer", "EpochStats", "History", "evaluate", "fit",
           "one_hot", "predict"]
