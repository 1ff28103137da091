"""Turns the run's report dict into a text table, a JSON file and an optional PNG chart."""
import json
import math

# implementations that never ran (the library is missing or does not import): named once in the report's
# header, not in every table
NAMED_AT_THE_TOP = ("not installed", "unavailable")
UNIT_TITLES = {"us/step": "µs per training step", "us/op": "µs per op", "us/node": "µs per node"}


def format_number(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_ratio(value):
    return "-" if value is None else f"{value:.2f}x"


def format_bytes(value):
    return "-" if value is None else f"{value / 2**20:,.1f} MB"


def workload_table(workload):
    has_memory = workload["kind"] == "chain"
    width = max([16] + [len(label) + 2 for label in workload["results"]])   # scratch_grad@REF can be long
    header = f"{'implementation':<{width}}{'median':>10}  {'min-max':<19}{'vs numpy':>9}{'paired':>8}{'vs torch':>9}"
    header += f"{'peak mem':>12}" if has_memory else ""
    header += "  check (max norm. error)"
    lines = [f"== {workload['name']}: {workload['description']}  [{UNIT_TITLES[workload['unit']]}; "
             f"checked and timed in {workload['seconds']:.1f} s]", header]
    for label, result in workload["results"].items():
        if result["status"] in NAMED_AT_THE_TOP:
            continue
        if result["status"] != "ok":
            lines.append(f"{label:<{width}}{result['status']}: {result.get('detail', '')}")
            continue
        spread = f"{format_number(result['min'])}-{format_number(result['max'])}"
        line = (f"{label:<{width}}{format_number(result['median']):>10}  {spread:<19}"
                f"{format_ratio(result.get('ratio_to_numpy')):>9}{format_ratio(result.get('paired_ratio_to_numpy')):>8}"
                f"{format_ratio(result.get('ratio_to_torch')):>9}")
        if has_memory:
            memory = result.get("peak_memory_bytes")
            line += f"{format_bytes(memory) if 'memory_error' not in result else 'error':>12}"
        agreement = result["agreement"]
        line += "  reference" if agreement.get("reference") else f"  ok ({agreement['max_error']:.1e})"
        lines.append(line)
        if "memory_error" in result:
            lines.append(f"{'':<{width}}memory probe: {result['memory_error']}")
    return "\n".join(lines)


def parity_section(parity):
    lines = ["== parity_suite: speed of the scratch_grad.testing checks"]
    if parity["status"] == "skipped":
        return "\n".join(lines + [f"skipped: {parity['note']}"])
    op_check = parity.get("op_check")
    if op_check:
        lines.append(f"{op_check['function']}: {op_check['ops_timed']} of {op_check['ops_total']} ops checked, "
                     f"median {format_number(op_check['median_ms_per_op'])} ms per op, "
                     f"total {format_number(op_check['total_ms'])} ms, {len(op_check['failures'])} failing")
        slowest = sorted(op_check["per_op_ms"].items(), key=lambda item: -item[1])[:5]
        lines.append("slowest: " + ", ".join(f"{name} {format_number(ms)} ms" for name, ms in slowest))
        lines += [f"failing: {name}: {message.splitlines()[0]}" for name, message in op_check["failures"].items()]
    fuzz = parity.get("graph_fuzz")
    if fuzz:
        if "error" in fuzz:
            lines.append(f"{fuzz['function']}: error: {fuzz['error']}")
        else:
            rate = fuzz["graphs_per_second"]
            lines.append(f"{fuzz['function']}({fuzz['called_with']}): {fuzz['seconds']:.2f} s, "
                         + (f"{rate:.1f} checked graphs per second" if rate else "graph count unknown")
                         + f", {fuzz['graphs_failing']} failing")
    lines += [f"note: {note}" for note in parity.get("notes", [])]
    return "\n".join(lines)


def text_report(report):
    settings = report["settings"]
    malloc = settings["malloc"]
    lines = [
        f"scratch_grad benchmarks ({'quick' if settings['quick'] else 'full'}), one process, implementations "
        f"interleaved round-robin; median and min-max of {settings['repeats']} rounds "
        f"(chains: {settings['chain_repeats']}); 'paired': the median over rounds of the ratio to NumPy by hand's "
        "sample of the same round (steadier than the ratio of medians when the machine drifts)",
        f"threads: {settings['threads']} -- " + "; ".join(settings["thread_pinning"]),
        f"malloc: mmap threshold {malloc['mmap_threshold'] or 'default'}, trim threshold "
        f"{malloc['trim_threshold'] or 'default'} -- {malloc['applied_by']}",
        f"memory: {settings['memory_method']}",
        "garbage collector: collected before and disabled during each timed sample, as timeit does; chain samples "
        "also start from a trimmed heap (malloc_trim(0), untimed)",
        "implementations: " + ", ".join(
            f"{label} {info['version']}" if info["status"] == "available" else f"{label} ({info['status']})"
            for label, info in report["implementations"].items()),
    ]
    for label, info in report["implementations"].items():
        if info["status"] != "available":
            lines.append(f"  {label}: {info['status']}: {info['detail']}")
    for workload in report["workloads"]:
        lines += ["", workload_table(workload)]
    if "parity_suite" in report:
        lines += ["", parity_section(report["parity_suite"])]
    phases = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in report["phase_seconds"].items())
    lines += ["", f"total run time {report['duration_seconds']:.1f} s ({phases})"]
    return "\n".join(lines)


def write_json(report, path):
    with open(path, "w") as file:
        json.dump(report, file, indent=1, allow_nan=False, default=str)
        file.write("\n")


def ran(report):
    """The implementations timed in at least one workload, in table order: the only ones the chart shows."""
    return [label for label in report["implementations"]
            if any(workload["results"].get(label, {}).get("status") == "ok" for workload in report["workloads"])]


def write_plot(report, path):
    """Write chart(report) as a PNG. Returns None on success, else why no chart was written (matplotlib
    is optional)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no chart"
    figure = chart(report)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None


def chart(report):
    """Ratio-to-NumPy bars per workload; time per node and peak memory against chain length (log-log);
    only the implementations that ran."""
    import matplotlib.pyplot as plt

    labels = ran(report)
    colors = {label: f"C{index % 10}" for index, label in enumerate(labels)}  # same colour in every panel
    bar_workloads = [workload for workload in report["workloads"] if workload["kind"] != "chain"]
    chains = [workload for workload in report["workloads"] if workload["kind"] == "chain"]
    figure, (bars, per_node, memory) = plt.subplots(1, 3, figsize=(18, 5.5), gridspec_kw={"width_ratios": [2, 1, 1]})

    width = 0.8 / max(len(labels), 1)
    for index, label in enumerate(labels):
        ratios = [workload["results"].get(label, {}).get("ratio_to_numpy", math.nan) for workload in bar_workloads]
        positions = [position + (index - (len(labels) - 1) / 2) * width for position in range(len(bar_workloads))]
        bars.bar(positions, ratios, width, label=label, color=colors[label])
    bars.axhline(1.0, color="black", linewidth=0.8)
    bars.set_yscale("log")
    bottom, top = bars.get_ylim()
    bars.set_ylim(bottom, top * 10)  # headroom for the legend above the tallest bar
    bars.set_xticks(range(len(bar_workloads)))
    bars.set_xticklabels([workload["name"].replace("mlp_", "").replace("_", " ") for workload in bar_workloads],
                         rotation=20, ha="right", fontsize=8)
    bars.set_ylabel("time / NumPy by hand (log; lower is faster)")
    bars.set_title(f"median time relative to NumPy by hand ({report['settings']['threads']} thread(s))")
    bars.legend(fontsize=8, ncol=4, loc="upper center")

    for label in labels:
        points = [(workload["length"], workload["results"][label]) for workload in chains
                  if workload["results"].get(label, {}).get("status") == "ok"]
        if points:
            per_node.plot([length for length, _ in points], [result["median"] for _, result in points],
                          marker="o", label=label, color=colors[label])
        with_memory = [(length, result["peak_memory_bytes"]) for length, result in points
                       if result.get("peak_memory_bytes") is not None]
        if with_memory:
            memory.plot([length for length, _ in with_memory], [value / 2**20 for _, value in with_memory],
                        marker="o", label=label, color=colors[label])
    for axes, title, ylabel in ((per_node, "time per node (flat = linear scaling)", "µs per node"),
                                (memory, "peak RSS increase", "MB")):
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("chain length (ops)")
        axes.set_ylabel(ylabel)
        axes.set_title(title)
        if axes.lines:
            axes.legend(fontsize=8)
        else:
            axes.text(0.5, 0.5, "not measured in this run", ha="center", va="center", transform=axes.transAxes,
                      color="#777")
    figure.tight_layout()
    return figure
