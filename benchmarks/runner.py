"""``scratch-grad bench``: scratch_grad timed side by side with NumPy by hand, torch and optional competitors.

    python -m benchmarks.runner [--quick] [--json PATH] [--plot PATH] [--threads N]    # = scratch-grad bench

Everything runs in this one process (the chain memory probes excepted: one subprocess per implementation),
with implementations interleaved round-robin. Each implementation is first checked against NumPy by hand
(loss and gradients, and again after one SGD step); one that disagrees or raises is reported and not timed.
Exit status: 0, or 1 if any implementation disagreed or raised.

This module imports nothing numeric at the top, so that thread env vars set in main() precede the numpy import.
See benchmarks/environment.py for thread pinning and the allocator (MALLOC_MMAP_THRESHOLD_) choice.
"""
import datetime
import gc
import math
import os
import platform
import sys
import time
from contextlib import contextmanager

WORKLOAD_GROUPS = ("mlp", "per-op", "scaling", "memory", "parity")


def json_safe(value):
    """NaN and infinities (a wildly wrong gradient) become strings; JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


@contextmanager
def frozen_imports():
    """gc.freeze() the ~250k objects torch and JAX import, so the gc.collect() before each sample stays cheap."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def attach_memory(scaling_workloads, settings_threads, child_env, quick):
    from benchmarks import memory_probe

    lengths_by_label = {}
    for workload in scaling_workloads:
        for label, result in workload["results"].items():
            if result["status"] == "ok":
                lengths_by_label.setdefault(label, []).append(workload["length"])
    measured = memory_probe.measure_all(lengths_by_label, settings_threads, child_env,
                                        timeout=300 if quick else 3600)
    for workload in scaling_workloads:
        for label, by_length in measured.items():
            outcome = by_length.get(workload["length"])
            if outcome is None:
                continue
            result = workload["results"][label]
            if "error" in outcome:
                result["memory_error"] = outcome["error"]
            else:
                result["peak_memory_bytes"] = outcome["peak_memory_bytes"]


def _phase_count(args, settings, suite):
    count = 0
    if "mlp" in args.workloads:
        count += len(suite.selected_mlp_configs())
    if "per-op" in args.workloads:
        count += 1
    if "scaling" in args.workloads:
        count += len(settings.scaling_lengths) + ("memory" in args.workloads)
    return count + ("parity" in args.workloads)


def _say_missing(progress, loaded):
    """Name once, before any timing, what will not run and why (the tables do not repeat it)."""
    missing = [item for item in loaded if not item.available]
    for item in missing:
        library = item.spec.library
        hint = f" (pip install {library})" if item.status == "not installed" else ""
        progress.say(f"{item.label}: {item.status}{hint}: {item.detail}")


def run(args, progress=None):
    from benchmarks.environment import configure_malloc, limited_threads, set_thread_env
    from benchmarks.progress import Silent

    progress = progress or Silent()
    thread_notes = set_thread_env(args.threads)
    malloc = configure_malloc(args.malloc_mmap_threshold)

    import numpy as np

    from benchmarks import implementations, memory_probe, parity_speed, suite

    settings = suite.Settings.make(args.quick, args.repeats, args.chain_budget)
    progress.phases = _phase_count(args, settings, suite)
    wanted = None if args.implementations is None else set(args.implementations) | {implementations.REFERENCE}
    phase_started = time.perf_counter()
    progress.say("importing the implementations...")
    loaded = implementations.load_all(wanted)
    if args.baseline:
        from benchmarks.baseline import load_baseline
        loaded += [load_baseline(ref) for ref in args.baseline]
    _say_missing(progress, loaded)
    phase_seconds = {"imports": time.perf_counter() - phase_started}
    workloads = []
    with limited_threads(args.threads) as pool_notes, frozen_imports():
        if "mlp" in args.workloads:
            for config in suite.selected_mlp_configs():
                workloads.append(suite.run_mlp_workload(config, loaded, settings, progress))
        if "per-op" in args.workloads:
            workloads.append(suite.run_per_op_workload(loaded, settings, progress))
        scaling = suite.run_scaling_workloads(loaded, settings, progress) if "scaling" in args.workloads else []
        workloads += scaling
    phase_seconds["workloads"] = sum(workload["seconds"] for workload in workloads)
    if scaling and "memory" in args.workloads:
        phase_started = time.perf_counter()
        progress.announce("measuring peak memory of the chains (a fresh subprocess per implementation)")
        attach_memory(scaling, args.threads, malloc["child_env"], args.quick)
        phase_seconds["memory_probes"] = time.perf_counter() - phase_started
    phase_started = time.perf_counter()
    if "parity" in args.workloads:
        progress.announce("timing the parity suite's own checks (check_op per registry op, random graphs)")
    parity = parity_speed.measure(args.quick) if "parity" in args.workloads else None
    phase_seconds["parity_suite"] = time.perf_counter() - phase_started
    progress.close()

    report = {
        "schema_version": 1,
        "settings": {
            "quick": args.quick, "threads": args.threads, "thread_pinning": thread_notes + pool_notes,
            "malloc": {key: value for key, value in malloc.items() if key != "child_env"},
            "repeats": settings.repeats,
            "chain_repeats": {length: settings.chain_repeats(length) for length in settings.scaling_lengths},
            "target_sample_seconds": settings.target_sample_seconds,
            "chain_budget_seconds": settings.chain_budget_seconds,
            "scaling_lengths": list(settings.scaling_lengths), "memory_method": memory_probe.METHOD,
            "workload_groups": list(args.workloads),
        },
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "numpy": np.__version__},
        "implementations": {
            item.label: {"status": item.status, "detail": item.detail,
                         "name": getattr(item.module, "NAME", item.label), "version": item.version(),
                         "optional": item.spec.optional}
            for item in loaded},
        "workloads": workloads,
        "phase_seconds": phase_seconds,
    }
    if parity is not None:
        report["parity_suite"] = parity
    return report


def main(argv=None):
    """`python -m benchmarks.runner [options]`: the same command as `scratch-grad bench` (its parser and option
    checks are scratch_grad/cli/bench.py)."""
    from scratch_grad.cli.bench import main as bench_main
    return bench_main(argv)


def execute(args):
    """Run the benchmarks for parsed and validated options; print the report; the exit status."""
    from benchmarks.environment import restored_environ

    from benchmarks.progress import BenchProgress

    started = time.perf_counter()
    progress = BenchProgress(phases=0)
    progress.say(f"scratch_grad benchmarks ({'quick' if args.quick else 'full'}): progress on stderr, the report "
                 "on stdout at the end")
    with restored_environ():
        report = run(args, progress)
    report["started"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report["duration_seconds"] = time.perf_counter() - started
    report = json_safe(report)

    from benchmarks import report as reporting

    print(reporting.text_report(report))
    if args.json:
        reporting.write_json(report, args.json)
        print(f"JSON written to {args.json}")
    if args.plot:
        problem = reporting.write_plot(report, args.plot)
        print(problem or f"chart written to {args.plot}")
    failed = [f"{label} in {workload['name']}" for workload in report["workloads"]
              for label, result in workload["results"].items() if result["status"] in ("disagrees", "error")]
    if failed:
        print(f"FAILED agreement or run: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
