"""Agreement checks (before any timing) and interleaved round-robin timing."""
import gc
import math
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks.environment import release_free_memory

# Normalised max error, max|observed - expected| / max|expected|, allowed per dtype.
TOLERANCE = {"float64": 1e-9, "float32": 2e-4}


def normalised_error(observed, expected):
    observed, expected = np.asarray(observed), np.asarray(expected)
    scale = max(float(np.max(np.abs(expected), initial=0.0)), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(observed.astype(np.float64) - expected), initial=0.0)) / scale


def compare(observed_value, observed_grads, expected_value, expected_grads, dtype):
    """{"agrees": bool, "max_error": float, "tolerance": float, "problems": [..]} for a value and its grads."""
    tolerance = TOLERANCE[dtype]
    problems = []
    errors = [normalised_error(observed_value, expected_value)]
    if not errors[0] <= tolerance:  # also catches NaN
        problems.append(f"value {observed_value!r} vs expected {expected_value!r}")
    for index, (observed, expected) in enumerate(zip(observed_grads, expected_grads)):
        observed = np.asarray(observed)
        if observed.shape != expected.shape:
            problems.append(f"grad {index}: shape {observed.shape}, expected {expected.shape}")
            continue
        if observed.dtype != expected.dtype:
            problems.append(f"grad {index}: dtype {observed.dtype}, expected {expected.dtype}")
        error = normalised_error(observed, expected)
        errors.append(error)
        if not error <= tolerance:  # also catches NaN
            problems.append(f"grad {index}: normalised error {error:.3g} > {tolerance:g}")
    if len(observed_grads) != len(expected_grads):
        problems.append(f"{len(observed_grads)} grads, expected {len(expected_grads)}")
    return {"agrees": not problems, "max_error": max(errors), "tolerance": tolerance, "problems": problems}


def mlp_snapshot(step, loss_and_grads):
    """Loss and grads at the initial weights, then again after one SGD step (which checks the update too)."""
    before = loss_and_grads()
    step()
    after = loss_and_grads()
    return before, after


def compare_mlp_snapshots(observed, expected, dtype):
    checks = [compare(*seen, *wanted, dtype) for seen, wanted in zip(observed, expected)]
    problems = [f"{when}: {problem}" for when, check in zip(("initial", "after one step"), checks)
                for problem in check["problems"]]
    return {"agrees": not problems, "max_error": max(check["max_error"] for check in checks),
            "tolerance": checks[0]["tolerance"], "problems": problems}


@dataclass
class Timing:
    seconds_per_call: list = field(default_factory=list)  # one entry per round
    calls_per_sample: int = 1
    error: str = ""


def time_call(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def time_interleaved(functions, repeats, target_sample_seconds, estimated_seconds=None, release_memory=False,
                     on_round=None):
    """Time every function ``repeats`` times, round-robin, rotating the order each round.

    Each sample runs a function enough times back to back to last about ``target_sample_seconds``
    (calibrated from ``estimated_seconds[label]`` or from one warm-up plus one timed call).
    A function that raises is dropped and its error recorded. Returns {label: Timing}.
    Like timeit, the cyclic garbage collector is off while a sample runs (and a collection runs
    before it): otherwise CPython's full collections, which rescan every live object each time
    the heap grows by 25%, dominate long chains in every Python engine alike.

    ``release_memory`` (long chains) also calls malloc_trim(0) before each sample, untimed. A chain of
    1e6 ops frees up to ~1 GB of small chunks when it ends, and glibc sorts and merges them during the
    *next* implementation's mallocs: measured, scratch_grad's forward went from 1.2 to 1.6-2.1 us/node
    when it followed torch's 1e6 chain, and back to 1.2 with a trim in between. Each sample then starts
    from the heap a fresh process would have, whichever implementation ran before it.

    ``on_round()`` is called after each round (the run's progress bar).
    """
    timings = {label: Timing() for label in functions}
    active = []
    for label, function in functions.items():
        try:
            if estimated_seconds and label in estimated_seconds:
                estimate = estimated_seconds[label]
            else:
                function()
                estimate = time_call(function)
        except Exception as error:  # noqa: BLE001 - reported per implementation, not fatal
            timings[label].error = f"{type(error).__name__}: {error}"
            continue
        timings[label].calls_per_sample = max(1, math.ceil(target_sample_seconds / max(estimate, 1e-9)))
        active.append(label)

    for round_index in range(repeats):
        shift = round_index % max(len(active), 1)
        for label in active[shift:] + active[:shift]:
            if timings[label].error:
                continue
            function, calls = functions[label], timings[label].calls_per_sample
            gc.collect()
            if release_memory:
                release_free_memory()
            gc.disable()
            try:
                start = time.perf_counter()
                for _ in range(calls):
                    function()
                elapsed = time.perf_counter() - start
            except Exception as error:  # noqa: BLE001
                timings[label].error = f"{type(error).__name__}: {error}"
                continue
            finally:
                gc.enable()
            timings[label].seconds_per_call.append(elapsed / calls)
        if on_round is not None:
            on_round()
    return timings


def summarise(seconds_per_call, units_per_call):
    """Median and min-max in microseconds per unit (per step, per op or per node)."""
    per_unit = [seconds * 1e6 / units_per_call for seconds in seconds_per_call]
    return {"median": statistics.median(per_unit), "min": min(per_unit), "max": max(per_unit), "samples": per_unit}
