"""Runs the workloads: check every implementation against NumPy by hand, exclude any that disagree, time the rest.

Each workload returns a plain dict (JSON-ready): name, kind, description, unit, and ``results`` keyed by
implementation label with a ``status`` of "ok" (agreed, then timed), "disagrees" (excluded from timing),
"error", "n/a", "skipped" (over the chain budget), "not installed" or "unavailable".
"""
import statistics
import time
from dataclasses import dataclass

from benchmarks.implementations import REFERENCE, TORCH
from benchmarks.progress import Silent
from benchmarks.measure import compare, compare_mlp_snapshots, mlp_snapshot, summarise, time_interleaved
from benchmarks.workloads import (CHAIN_OPS, MLP_CONFIGS, PER_OP_CHAIN_LENGTH, QUICK_SCALING_LENGTHS,
                                  SCALING_LENGTHS, NotApplicable, make_batch, make_chain_input, make_initial_params)

CHAIN_DTYPE = "float64"


@dataclass(frozen=True)
class Settings:
    quick: bool
    repeats: int  # rounds for the MLP and per-op workloads
    target_sample_seconds: float  # each sample repeats a call until it lasts about this long
    scaling_lengths: tuple
    chain_budget_seconds: float  # skip a chain length whose projected single run is longer

    @classmethod
    def make(cls, quick, repeats=None, chain_budget_seconds=None):
        return cls(quick=quick, repeats=repeats or (5 if quick else 31),
                   target_sample_seconds=0.003 if quick else 0.03,
                   scaling_lengths=QUICK_SCALING_LENGTHS if quick else SCALING_LENGTHS,
                   chain_budget_seconds=chain_budget_seconds or (1.0 if quick else 15.0))

    def chain_repeats(self, length):
        default = 3 if self.quick else (7 if length <= 10_000 else 5)
        return min(default, self.repeats)


def error_text(error):
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]


def announce(progress, workload, description, implementations, repeats, skip=None):
    """The line saying what is timed now (and the bar of its rounds on a terminal)."""
    count = sum(1 for i in implementations if i.available and i.label not in (skip or {}))
    skipped = f" (skipped: {', '.join(skip)})" if skip else ""
    progress.announce(f"{workload} ({description}): checking {count} implementations against NumPy by hand, "
                      f"then timing {repeats} round(s){skipped}", rounds=repeats)


def check_then_time(implementations, build, snapshot, agreement, units_per_call, repeats, settings,
                    use_check_time_as_estimate=False, skip=None, release_memory=False, progress=None):
    """The shared protocol. ``build(impl) -> (timed_function, snapshot_args)``; the reference goes first."""
    results, timed, estimates, expected = {}, {}, {}, None
    skip = skip or {}
    progress = progress or Silent()
    for implementation in implementations:
        label = implementation.label
        if not implementation.available:
            results[label] = {"status": implementation.status, "detail": implementation.detail}
            continue
        if label in skip:
            results[label] = {"status": "skipped", "detail": skip[label]}
            continue
        try:
            timed_function, snapshot_args = build(implementation)
            start = time.perf_counter()
            observed = snapshot(*snapshot_args)
            check_seconds = time.perf_counter() - start
        except NotApplicable as reason:
            results[label] = {"status": "n/a", "detail": str(reason)}
            continue
        except Exception as error:  # noqa: BLE001 - reported, the implementation is excluded
            results[label] = {"status": "error", "detail": error_text(error)}
            continue
        if label == REFERENCE:
            expected = observed
            check = {"agrees": True, "max_error": 0.0, "tolerance": 0.0, "problems": [], "reference": True}
        elif expected is None:
            results[label] = {"status": "error", "detail": "no reference result to compare with"}
            continue
        else:
            check = agreement(observed, expected)
        if not check["agrees"]:
            results[label] = {"status": "disagrees", "detail": "; ".join(check["problems"][:3]), "agreement": check}
            continue
        results[label] = {"status": "ok", "agreement": check}
        timed[label] = timed_function
        estimates[label] = check_seconds

    timings = time_interleaved(timed, repeats, settings.target_sample_seconds,
                               estimates if use_check_time_as_estimate else None, release_memory,
                               on_round=progress.step)
    for label, timing in timings.items():
        if timing.error:
            results[label].update(status="error", detail=f"while timing: {timing.error}")
        else:
            results[label].update(summarise(timing.seconds_per_call, units_per_call),
                                  calls_per_sample=timing.calls_per_sample)
    add_ratios(results)
    return results


def add_ratios(results):
    """Ratios of medians to NumPy by hand and to torch, and the paired ratio to NumPy by hand: the median
    over rounds of the ratio of the two samples taken in the same round. On this shared machine a whole
    run drifts between slower and faster phases (the same NumPy step measured 95-160 us in one run);
    both samples of a round see the same phase, while a ratio of medians can pair a slow phase of one
    implementation with a fast phase of the other."""
    for baseline, key in ((REFERENCE, "ratio_to_numpy"), (TORCH, "ratio_to_torch")):
        base = results.get(baseline, {})
        for result in results.values():
            if result["status"] == "ok" and base.get("status") == "ok":
                result[key] = result["median"] / base["median"]
                if baseline == REFERENCE:
                    result["paired_ratio_to_numpy"] = statistics.median(
                        sample / reference for sample, reference in zip(result["samples"], base["samples"]))


def run_mlp_workload(config, implementations, settings, progress=None):
    params, batch = make_initial_params(config), make_batch(config)
    progress = progress or Silent()
    announce(progress, config.name, config.description, implementations, settings.repeats)

    def build(implementation):
        step, loss_and_grads = implementation.make_mlp_step(config, params, batch)
        return step, (step, loss_and_grads)

    def agreement(observed, expected):
        return compare_mlp_snapshots(observed, expected, config.dtype)

    started = time.perf_counter()
    results = check_then_time(implementations, build, mlp_snapshot, agreement, units_per_call=1,
                              repeats=settings.repeats, settings=settings, progress=progress)
    return {"name": config.name, "kind": "mlp", "description": config.description, "dtype": config.dtype,
            "unit": "us/step", "results": results, "seconds": time.perf_counter() - started}


def chain_check_and_time(length, implementations, settings, repeats, use_check_time_as_estimate, skip=None,
                         release_memory=False, progress=None):
    x0 = make_chain_input()

    def build(implementation):
        forward_backward = implementation.make_chain(CHAIN_OPS, length, x0)
        return forward_backward, (forward_backward,)

    def snapshot(forward_backward):
        value, grad = forward_backward()
        return value, [grad]

    def agreement(observed, expected):
        return compare(*observed, *expected, CHAIN_DTYPE)

    return check_then_time(implementations, build, snapshot, agreement, units_per_call=length, repeats=repeats,
                           settings=settings, use_check_time_as_estimate=use_check_time_as_estimate, skip=skip,
                           release_memory=release_memory, progress=progress)


def chain_name(length):
    return f"chain_{length:.0e}".replace("+0", "")


def chain_description(length):
    cycle = ", ".join(op.name if op.name in ("sin", "cos", "tanh") else f"{op.name} {op.constant:g}"
                      for op in CHAIN_OPS)
    return f"chain of {length:,} elementwise ops ({cycle}, cycled) on a {make_chain_input().shape} {CHAIN_DTYPE} array"


def run_per_op_workload(implementations, settings, progress=None):
    started = time.perf_counter()
    progress = progress or Silent()
    announce(progress, "per_op_overhead", chain_description(PER_OP_CHAIN_LENGTH), implementations, settings.repeats)
    results = chain_check_and_time(PER_OP_CHAIN_LENGTH, implementations, settings, settings.repeats,
                                   use_check_time_as_estimate=False, progress=progress)
    return {"name": "per_op_overhead", "kind": "per_op",
            "description": chain_description(PER_OP_CHAIN_LENGTH) + ", forward + backward", "dtype": CHAIN_DTYPE,
            "unit": "us/op", "length": PER_OP_CHAIN_LENGTH, "results": results,
            "seconds": time.perf_counter() - started}


def run_scaling_workloads(implementations, settings, progress=None):
    """One workload per chain length, shortest first. An implementation is skipped at a length whose projected
    single run exceeds the budget, and at every length after one where it failed or was skipped."""
    workloads, last_us_per_node, stopped = [], {}, {}
    progress = progress or Silent()
    for length in settings.scaling_lengths:
        skip = dict(stopped)
        for label, us_per_node in last_us_per_node.items():
            projected = us_per_node * length * 1e-6
            if label not in skip and projected > settings.chain_budget_seconds:
                skip[label] = (f"projected {projected:.1f} s per run > chain budget "
                               f"{settings.chain_budget_seconds:g} s (--chain-budget)")
        started = time.perf_counter()
        announce(progress, chain_name(length), chain_description(length), implementations,
                 settings.chain_repeats(length), skip)
        # each sample starts from a trimmed heap: see measure.time_interleaved
        results = chain_check_and_time(length, implementations, settings, settings.chain_repeats(length),
                                       use_check_time_as_estimate=True, skip=skip, release_memory=True,
                                       progress=progress)
        for label, result in results.items():
            if result["status"] == "ok":
                last_us_per_node[label] = result["median"]
            elif result["status"] in ("error", "disagrees", "skipped"):
                stopped.setdefault(label, f"not run: {result['status']} at the {length:,}-op chain")
        workloads.append({"name": chain_name(length), "kind": "chain",
                          "description": chain_description(length) + ", forward + backward",
                          "dtype": CHAIN_DTYPE, "unit": "us/node", "length": length, "results": results,
                          "seconds": time.perf_counter() - started})
    return workloads


def selected_mlp_configs(names=None):
    return [config for config in MLP_CONFIGS if names is None or config.name in names]
