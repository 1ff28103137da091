"""Test budgets per profile, without importing hypothesis (the CLI reads them too).

    ci    the default: bounded and deterministic (the same examples on every run and machine, so
          the README's `pytest -n auto`, which CI runs, is never flaky); about a minute on 2 cores
    dev   random, twice the ci budget; failures are saved in .hypothesis/ and replayed first
    fuzz  long campaigns (`scratch-grad fuzz`)

The profile is chosen by the HYPOTHESIS_PROFILE environment variable.
"""
import os
from dataclasses import dataclass

PROFILE_VARIABLE = "HYPOTHESIS_PROFILE"
DEFAULT_PROFILE = "ci"


@dataclass(frozen=True)
class Budget:
    op_examples: int        # examples per (op, dtype)
    graph_examples: int     # random graphs per dtype
    max_ops: int            # ops per random graph


BUDGETS = {"ci": Budget(op_examples=20, graph_examples=150, max_ops=10),
           "dev": Budget(op_examples=40, graph_examples=300, max_ops=12),
           "fuzz": Budget(op_examples=500, graph_examples=100_000, max_ops=14)}


def current_profile():
    name = os.environ.get(PROFILE_VARIABLE, DEFAULT_PROFILE)
    if name not in BUDGETS:
        raise ValueError(f"{PROFILE_VARIABLE}={name!r}: choose one of {sorted(BUDGETS)}")
    return name


def budget(profile=None):
    return BUDGETS[profile or current_profile()]
