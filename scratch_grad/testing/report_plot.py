"""The parity matrix as a PNG heatmap (`scratch-grad parity --plot PATH`; needs matplotlib).

The same op x check x dtype matrix as the HTML report, from the same JSON dict: the colour is
log10 of the worst |error| / tolerance (green far inside, yellow at the tolerance, red beyond),
failing cells are marked with a cross, cells that did not run are grey.
"""
import math
import textwrap

from .report_html import _DTYPE_SHORT, as_float, format_ratio

LOG_RANGE = (-4.0, 4.0)     # colour range of log10(ratio); 0 (ratio 1) is the tolerance


def matrix_values(data):
    """(ops, [(column, dtype)], values, failed): values[i][j] = log10 of the worst ratio, clipped to
    LOG_RANGE (None where the cell did not run), failed[i][j] whether the cell failed."""
    columns = data.get("columns") or []
    dtypes = data.get("dtypes") or []
    ops = sorted(data.get("ops") or {}, key=lambda name: (name.startswith("("), name))
    pairs = [(column, dtype) for column in columns for dtype in dtypes]
    values, failed = [], []
    for op in ops:
        matrix = data["ops"][op].get("matrix") or {}
        row_values, row_failed = [], []
        for column, dtype in pairs:
            cell = matrix.get(column, {}).get(dtype)
            if not cell or not cell.get("checks"):
                row_values.append(None)
                row_failed.append(False)
                continue
            ratio = as_float(cell.get("worst_ratio"))
            ratio = math.inf if ratio is None or math.isnan(ratio) else ratio
            logged = LOG_RANGE[0] if ratio <= 0 else min(max(math.log10(ratio), LOG_RANGE[0]), LOG_RANGE[1])
            row_values.append(logged)
            row_failed.append(cell.get("status") != "pass")
        values.append(row_values)
        failed.append(row_failed)
    return ops, pairs, values, failed


def figure(data):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LinearSegmentedColormap, TwoSlopeNorm

    ops, pairs, values, failed = matrix_values(data)
    titles = data.get("column_titles") or {}
    grid = np.ma.masked_invalid(np.array([[np.nan if v is None else v for v in row] for row in values] or [[np.nan]],
                                         dtype=float))
    colours = LinearSegmentedColormap.from_list(
        "parity", [(0.0, "#a5d6a7"), (0.5, "#fff176"), (0.5001, "#ef9a9a"), (1.0, "#b71c1c")])
    colours = colours.with_extremes(bad="#e0e0e0")
    fig, axis = plt.subplots(figsize=(3.4 + 0.62 * max(len(pairs), 1), 1.9 + 0.26 * max(len(ops), 1)),
                             layout="constrained")
    image = axis.imshow(grid, aspect="auto", cmap=colours, interpolation="nearest",
                        norm=TwoSlopeNorm(vmin=LOG_RANGE[0], vcenter=0.0, vmax=LOG_RANGE[1]))
    for i, op in enumerate(ops):
        matrix = data["ops"][op].get("matrix") or {}
        for j, (column, dtype) in enumerate(pairs):
            if values[i][j] is None:
                axis.text(j, i, "-", ha="center", va="center", fontsize=7, color="#999")
                continue
            text = format_ratio(matrix[column][dtype].get("worst_ratio"))
            axis.text(j, i, ("✗ " if failed[i][j] else "") + text, ha="center", va="center", fontsize=6.5,
                      color="white" if failed[i][j] else "#222", fontweight="bold" if failed[i][j] else "normal")
    axis.set_yticks(range(len(ops)))
    axis.set_yticklabels(ops, fontsize=8, family="monospace")
    axis.set_xticks(range(len(pairs)))
    axis.set_xticklabels([_DTYPE_SHORT.get(dtype, dtype) for _, dtype in pairs], fontsize=7.5)
    groups = []          # (centre, title) of each check above its dtypes
    for index, (column, _) in enumerate(pairs):
        if index == 0 or pairs[index - 1][0] != column:
            span = sum(1 for c, _ in pairs if c == column)
            groups.append((index + (span - 1) / 2, titles.get(column, column)))
            if index:
                axis.axvline(index - 0.5, color="white", linewidth=3)
    top = axis.secondary_xaxis("top")
    top.set_xticks([centre for centre, _ in groups])
    top.set_xticklabels(["\n".join(textwrap.wrap(title, 15)) for _, title in groups], fontsize=8.5, fontweight="bold")
    top.tick_params(length=0)
    axis.tick_params(length=0)
    for tick, op in zip(axis.get_yticklabels(), ops):
        if not data["ops"][op].get("passed", True):
            tick.set_color("#b71c1c")
            tick.set_fontweight("bold")
    low, high = int(LOG_RANGE[0]), int(LOG_RANGE[1])
    bar = fig.colorbar(image, ax=axis, fraction=0.035, pad=0.01, shrink=min(1.0, 6 / max(len(ops), 1) + 0.3),
                       ticks=range(low, high + 1))
    bar.ax.set_yticklabels([f"≤1e{low}"] + [f"1e{k}" for k in range(low + 1, 0)] + ["1"]
                           + [f"1e{k}" for k in range(1, high)] + [f"≥1e{high}"], fontsize=7.5)
    verdict = "ALL PASS" if data.get("passed") else f"{len(data.get('failed_ops') or [])} FAILED"
    fig.suptitle(f"scratch_grad parity: {verdict}   {data.get('started', '')}", fontsize=10)
    fig.supxlabel("cell: worst |error| / tolerance over the draws of that op, check and dtype "
                  "(≤ 1 passes; warnings count 0); ✗ failed; - not run", fontsize=7.5, color="#444")
    return fig


def write(data, path):
    import matplotlib.pyplot as plt
    fig = figure(data)
    fig.savefig(path, dpi=110)
    plt.close(fig)
