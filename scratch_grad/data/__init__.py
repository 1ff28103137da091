"""Data sets for scratch_grad: MNIST (IDX reader/writer/loader) and seeded toy sets.

Pure NumPy; deliberately independent of the autograd engine.
"""
from . import mnist, toy
from .mnist import (EMBEDDED_MD5, MNIST_FILES, DataError, MNISTSplits, embedded_mnist_dir, load_mnist, read_idx,
                    write_idx)
from .toy import linear_regression, random_classification

__all__ = mnist.__all__ + toy.__all__
