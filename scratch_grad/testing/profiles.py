"""Test budgets per profile, without importing hypothesis (the CLI reads them too).

    ci    bounded and deterministic: the whole parity_tests suite in a few minutes on 2 cores
    dev   the default for a local `pytest`: random, about twice the ci budget, failures replayed
    fuzz  long campaigns (`scratch-grad fuzz`)

The profile is chosen by the HYPOTHESIS_PROFILE environment variable.
"""
import os
from dataclasses import dataclass

PROFILE_VARIABLE = "HYPOTHESIS_PROFILE"
DEFAULT_PROFILE = "dev"


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
