"""Peak memory of one forward+backward of the op chain, measured in a fresh subprocess per implementation.

Method (resident set size, Linux): after a warm-up chain, for each length: gc.collect() and malloc_trim(0), read
VmRSS, reset the peak VmHWM by writing "5" to /proc/self/clear_refs, run the chain once, read VmHWM. Reported:
VmHWM - VmRSS, the extra resident memory at the peak (graph, saved values, gradients, allocator slack). Unlike
tracemalloc this sees torch's and XLA's allocations too. A subprocess keeps one library's caches out of another's.

Child usage: python -m benchmarks.memory_probe --implementation LABEL --threads N LENGTH [LENGTH ...]
"""
import argparse
import concurrent.futures
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

METHOD = ("peak RSS increase (VmHWM after a reset via /proc/self/clear_refs minus VmRSS before) during one "
          "forward+backward after a first one (jit compilation and tracing excluded), in a fresh subprocess per "
          "implementation")
REPO_ROOT = Path(__file__).resolve().parents[1]


def read_status_kib(key):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"{key} not in /proc/self/status")


def reset_peak_rss():
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def measure_peak_bytes(implementation, length, x0):
    from benchmarks.environment import release_free_memory
    from benchmarks.workloads import CHAIN_OPS

    forward_backward = implementation.make_chain(CHAIN_OPS, length, x0)
    forward_backward()       # a step's memory, not a first call's: jax-jit compiles and sg.compile traces there
    gc.collect()
    release_free_memory()
    baseline = read_status_kib("VmRSS")
    reset_peak_rss()
    forward_backward()
    return (read_status_kib("VmHWM") - baseline) * 1024


def child_main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--implementation", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("lengths", type=int, nargs="+")
    args = parser.parse_args(argv)

    from benchmarks.environment import limited_threads, set_thread_env
    set_thread_env(args.threads)
    from benchmarks.implementations import load_all
    from benchmarks.workloads import CHAIN_OPS, make_chain_input

    from benchmarks.baseline import load_baseline, ref_of

    results = {}
    ref = ref_of(args.implementation)
    (implementation,) = [load_baseline(ref)] if ref else load_all([args.implementation])
    with limited_threads(args.threads):
        x0 = make_chain_input()
        implementation.make_chain(CHAIN_OPS, min(args.lengths), x0)()  # warm-up: lazy imports, first-use caches
        for length in sorted(args.lengths):
            try:
                results[length] = {"peak_memory_bytes": measure_peak_bytes(implementation, length, x0)}
            except Exception as error:  # noqa: BLE001 - reported in the table
                results[length] = {"error": f"{type(error).__name__}: {error}"}
    print(json.dumps(results))
    return 0


def run_child(label, lengths, threads, extra_env, timeout):
    env = dict(os.environ, **extra_env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "benchmarks.memory_probe", "--implementation", label, "--threads", str(threads),
               *map(str, lengths)]
    try:
        completed = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {length: {"error": f"memory probe timed out after {timeout} s"} for length in lengths}
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return {length: {"error": f"memory probe exited {completed.returncode}: {last_line}"} for length in lengths}
    return {int(length): result for length, result in json.loads(completed.stdout.strip().splitlines()[-1]).items()}


def measure_all(lengths_by_label, threads, extra_env, timeout, parallel=2):
    """{label: {length: {"peak_memory_bytes": int} or {"error": str}}}, probes run ``parallel`` at a time.

    Call it after timing is done: the probes load the cores, but RSS does not depend on speed.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {label: pool.submit(run_child, label, lengths, threads, extra_env, timeout)
                   for label, lengths in lengths_by_label.items() if lengths}
        return {label: future.result() for label, future in futures.items()}


if __name__ == "__main__":
    sys.exit(child_main())
