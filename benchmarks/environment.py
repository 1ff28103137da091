"""Thread pinning and allocator settings, applied the same way for every implementation in the run.

Threads: OMP/OPENBLAS/MKL/... env vars are set before numpy is imported when the runner is started as
``python -m benchmarks.runner`` (it imports nothing numeric before parsing its arguments). When numpy is already
loaded (the ``scratch-grad bench`` CLI, pytest), its BLAS pool is limited with threadpoolctl instead, if installed.
torch gets ``torch.set_num_threads``; JAX gets XLA_FLAGS (single-threaded Eigen) when one thread is asked for.

Allocator: glibc reads MALLOC_MMAP_THRESHOLD_ only at process start, so it cannot be set from Python by an env
var once the process runs. The runner instead makes the same call glibc makes for that variable,
``mallopt(M_MMAP_THRESHOLD, 4 MiB)``, plus ``mallopt(M_TRIM_THRESHOLD, 8 MiB)`` (a fixed mmap threshold alone
turns off glibc's dynamic adjustment, and with the default 128 KiB trim threshold the heap top is then given back
and faulted in again on every step). This applies to every later allocation, so to all implementations alike,
without re-executing the process (which would also replace a pytest process calling ``main``). The equivalent
before start is ``MALLOC_MMAP_THRESHOLD_=4194304 MALLOC_TRIM_THRESHOLD_=8388608``; if MALLOC_MMAP_THRESHOLD_
is already set, the runner leaves it alone. ``--malloc-mmap-threshold 0`` keeps glibc's defaults.
"""
import ctypes
import ctypes.util
import functools
import os
import sys
from contextlib import contextmanager

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                   "NUMEXPR_NUM_THREADS")
SINGLE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
DEFAULT_MMAP_THRESHOLD = 4 * 1024 * 1024
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
GLIBC_DEFAULT = "glibc default (dynamic mmap threshold starting at 128 KiB)"


@contextmanager
def restored_environ():
    """Env vars changed for the run are put back afterwards (matters when main() runs inside pytest)."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def thread_env(threads):
    values = {name: str(threads) for name in THREAD_ENV_VARS}
    if threads == 1:
        values["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + SINGLE_THREAD_XLA_FLAGS).strip()
    return values


def set_thread_env(threads):
    """Call before importing numpy/torch/jax. Returns notes on what could and could not be pinned this way."""
    numpy_loaded = "numpy" in sys.modules
    os.environ.update(thread_env(threads))
    when = ("numpy was already imported, so its BLAS pool ignores them" if numpy_loaded
            else "set before numpy was imported")
    notes = [f"{', '.join(THREAD_ENV_VARS)}={threads} ({when})"]
    if threads == 1:
        notes.append(f"XLA_FLAGS={SINGLE_THREAD_XLA_FLAGS}" if "jax" not in sys.modules
                     else "XLA_FLAGS not applied: jax was already imported")
    else:
        notes.append("JAX: default XLA thread pool (XLA has no exact thread-count flag)")
    return notes


@contextmanager
def limited_threads(threads):
    """After the libraries are imported: threadpoolctl over every BLAS/OpenMP pool, and torch.set_num_threads.

    Yields a list of notes; undoes both on exit.
    """
    notes = []
    limiter = None
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        notes.append("threadpoolctl not installed: BLAS pools pinned by env vars only")
    else:
        limiter = threadpool_limits(limits=threads)
        pools = sorted({f"{pool['internal_api']}={pool['num_threads']}" for pool in threadpool_info()})
        notes.append(f"threadpoolctl: {', '.join(pools) or 'no pools found'}")
    torch = sys.modules.get("torch")
    previous_torch_threads = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(threads)
        notes.append(f"torch.set_num_threads({threads})")
    try:
        yield notes
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
        if torch:
            torch.set_num_threads(previous_torch_threads)


@functools.lru_cache(maxsize=None)
def libc():
    """glibc through ctypes, or None (found once: find_library runs a subprocess, ~2 ms)."""
    path = ctypes.util.find_library("c")
    try:
        library = ctypes.CDLL(path)
        library.mallopt  # noqa: B018 - glibc only
        library.gnu_get_libc_version.restype = ctypes.c_char_p
        return library
    except (OSError, AttributeError, TypeError):
        return None


def configure_malloc(requested_threshold=None):
    """Apply the mmap/trim thresholds in-process; returns a description for the report and the child env vars."""
    from_environment = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    if requested_threshold is None and from_environment:
        return {"mmap_threshold": int(from_environment), "trim_threshold": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
                "applied_by": "MALLOC_MMAP_THRESHOLD_ set before the process started", "child_env": {}}
    if requested_threshold == 0:
        return {"mmap_threshold": None, "trim_threshold": None, "applied_by": GLIBC_DEFAULT, "child_env": {}}
    threshold = requested_threshold or DEFAULT_MMAP_THRESHOLD
    library = libc()
    if library is None:
        return {"mmap_threshold": None, "trim_threshold": None,
                "applied_by": "not applied: no glibc mallopt on this platform", "child_env": {}}
    applied = library.mallopt(M_MMAP_THRESHOLD, threshold) and library.mallopt(M_TRIM_THRESHOLD, 2 * threshold)
    glibc = library.gnu_get_libc_version().decode()
    return {"mmap_threshold": threshold, "trim_threshold": 2 * threshold,
            "applied_by": f"mallopt in-process (glibc {glibc}){'' if applied else ' FAILED'}; "
                          "same as MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ set before start",
            "child_env": {"MALLOC_MMAP_THRESHOLD_": str(threshold), "MALLOC_TRIM_THRESHOLD_": str(2 * threshold)}}


def release_free_memory():
    """malloc_trim(0): hand freed heap pages back, so the next RSS reading starts from live memory and the next
    timed sample does not pay for consolidating another implementation's freed chunks."""
    library = libc()
    if library is not None:
        library.malloc_trim(0)
