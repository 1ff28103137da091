"""How fast the parity suite itself runs: per-op check time and checked random graphs per second.

The checker API is discovered at run time, so this workload is skipped with a note until it exists:
- per-op checks: ``scratch_grad.testing.check_op(name)`` over the op names from ``OP_NAME_SOURCES``;
- graph fuzzing: the first function found under ``GRAPH_FUZZ_CANDIDATES``, called with a count argument if its
  signature has one named in ``COUNT_PARAMETERS`` (and ``seed=0`` if it takes a seed).
Adapt the three tuples below when the checker's names settle.
"""
import importlib
import inspect
import statistics
import time

CHECK_OP = ("scratch_grad.testing", "check_op")
OP_NAME_SOURCES = (("scratch_grad.testing", "OP_NAMES"), ("scratch_grad.testing", "op_names"),
                   ("scratch_grad", "REGISTRY"))
GRAPH_FUZZ_CANDIDATES = (("scratch_grad.testing", "fuzz_graphs"), ("scratch_grad.testing", "check_random_graphs"),
                         ("scratch_grad.testing", "fuzz"), ("scratch_grad.testing.fuzz", "fuzz_graphs"),
                         ("scratch_grad.testing.fuzz", "run"))
COUNT_PARAMETERS = ("n_graphs", "num_graphs", "graphs", "count", "n", "examples", "max_examples", "iterations")


def find_attribute(candidates):
    """(qualified name, object) of the first importable ``module.attribute`` among candidates, else (None, None)."""
    for module_name, attribute in candidates:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, attribute):
            return f"{module_name}.{attribute}", getattr(module, attribute)
    return None, None


def op_names():
    source, names = find_attribute(OP_NAME_SOURCES)
    if callable(names):
        names = names()
    return source, sorted(names) if names is not None else []


def time_op_checks(check_op, names, repeats, budget_seconds):
    per_op, failures = {}, {}
    if names:  # warm-up, untimed: the first check pays for lazy imports (torch) and first-use caches
        try:
            check_op(names[0])
        except Exception:  # noqa: BLE001 - reported when timed below
            pass
    started = time.perf_counter()
    for name in names:
        if time.perf_counter() - started > budget_seconds:
            break
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            try:
                check_op(name)
            except Exception as error:  # noqa: BLE001 - a failing check is reported, its time still counts
                failures[name] = f"{type(error).__name__}: {str(error)[:200]}"
            seconds.append(time.perf_counter() - start)
        per_op[name] = statistics.median(seconds) * 1e3
    return {"per_op_ms": per_op, "failures": failures, "ops_timed": len(per_op), "ops_total": len(names),
            "median_ms_per_op": statistics.median(per_op.values()) if per_op else None,
            "total_ms": sum(per_op.values())}


def time_graph_fuzz(fuzz, graph_count):
    parameters = inspect.signature(fuzz).parameters
    kwargs = {"seed": 0} if "seed" in parameters else {}
    count_parameter = next((name for name in COUNT_PARAMETERS if name in parameters), None)
    if count_parameter:
        kwargs[count_parameter] = graph_count
    start = time.perf_counter()
    result = fuzz(**kwargs)
    elapsed = time.perf_counter() - start
    reports = list(result) if isinstance(result, (list, tuple)) else []
    if count_parameter is None:
        graph_count = len(reports) or None
    failing = sum(not report.passed for report in reports if hasattr(report, "passed"))
    return {"called_with": kwargs, "seconds": elapsed, "graphs": graph_count, "graphs_failing": failing,
            "graphs_per_second": graph_count / elapsed if graph_count else None}


def measure(quick):
    """A dict for the report; ``status`` is "ok", "partial" or "skipped" (with a ``note``)."""
    try:
        importlib.import_module("scratch_grad.testing")
    except Exception as error:  # noqa: BLE001
        return {"status": "skipped", "note": f"scratch_grad.testing not importable: {type(error).__name__}: {error}"}
    check_op_name, check_op = find_attribute([CHECK_OP])
    fuzz_name, fuzz = find_attribute(GRAPH_FUZZ_CANDIDATES)
    result = {"status": "ok", "notes": []}
    if check_op is None:
        result["notes"].append("no scratch_grad.testing.check_op: per-op check time skipped")
    else:
        source, names = op_names()
        result["op_check"] = {"function": check_op_name, "op_names_from": source,
                              **time_op_checks(check_op, names, repeats=1 if quick else 3,
                                               budget_seconds=5 if quick else 120)}
    if fuzz is None:
        candidates = ", ".join(f"{module}.{name}" for module, name in GRAPH_FUZZ_CANDIDATES)
        result["notes"].append(f"no graph-fuzz entry ({candidates}): graphs per second skipped")
    else:
        try:
            result["graph_fuzz"] = {"function": fuzz_name, **time_graph_fuzz(fuzz, graph_count=10 if quick else 200)}
        except Exception as error:  # noqa: BLE001 - the signature guess may be wrong: say so, keep the rest
            result["graph_fuzz"] = {"function": fuzz_name, "error": f"{type(error).__name__}: {str(error)[:200]}"}
            result["notes"].append(f"calling {fuzz_name} failed; adapt parity_speed.time_graph_fuzz")
    if check_op is None and fuzz is None:
        return {"status": "skipped", "note": "; ".join(result["notes"])}
    if result["notes"]:
        result["status"] = "partial"
    return result
