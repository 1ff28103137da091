"""The parity run as one self-contained HTML page (`scratch-grad parity --html PATH`).

Drawn from the JSON of the run (`parity.to_json`), so a saved JSON renders too:

    python -m scratch_grad.testing.report_html parity.json report.html

The page needs nothing at view time (inline CSS and a few lines of inline JS; without JS it still
works): a header with the run's settings, versions and time; the op x check x dtype matrix, each
cell coloured by its worst error over tolerance and opening (a <details>) on the evidence of that
draw: the oracle's Finding, scratch_grad's value beside each reference it carries, the
classification, and for a failure the message and the standalone reproducer's source, to copy.
Failures are listed again above the matrix. Every cell has an id (`cell-OP-CHECK-DTYPE`): a link
with that fragment opens it.
"""
import argparse
import html
import json
import math
import re
import sys

# Finding fields that are not a reference value: measures of the comparison and scratch_grad's own value
_MEASURES = ("ratio", "error", "tolerance")
_REFERENCE_TITLES = {"torch": "torch", "fd": "finite differences", "fd_left": "FD one-sided, left",
                     "fd_right": "FD one-sided, right", "mp": "high precision (mpmath)",
                     "reference": "the value compared against"}
_SHOWN_ABOVE = ("analytic", "classification", "passed")    # fields the evidence shows in its own lines
_DTYPE_SHORT = {"float64": "f64", "float32": "f32", "float16": "f16", "bfloat16": "bf16"}
AGREEMENT = ("agree", "bit for bit")   # classifications that are plain agreement (not a warning)
PASS_FLOOR = 1e-4       # passing ratios at or below this get the palest green


def as_float(value):
    """A number from the JSON (NaN and infinities are strings there); None if it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(value)
    return None


def format_ratio(value):
    ratio = as_float(value)
    if ratio is None:
        return "-"
    if math.isnan(ratio):
        return "NaN"
    if math.isinf(ratio):
        return "∞"
    if ratio == 0:
        return "0"
    # 1.8e+13 -> 1.8e13, 2.6e-08 -> 2.6e-8: fits a narrow cell
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), f"{ratio:.2g}")


def format_value(value):
    number = as_float(value)
    if number is None:
        return str(value)
    if math.isnan(number) or math.isinf(number) or number == int(number) and abs(number) < 1e15:
        return str(int(number)) if math.isfinite(number) else str(number)
    return f"{number:.10g}"


def cell_colour(cell):
    """Background of a cell: pale green (far inside the tolerance) to yellow (at it) for a pass,
    red for a failure, amber for a pass that saw a larger error (a failing random graph that
    localize() put on another op)."""
    if cell is None or not cell.get("checks"):
        return "#f0f0f0"
    ratio = as_float(cell.get("worst_ratio"))
    ratio = math.inf if ratio is None or math.isnan(ratio) else ratio
    if cell.get("status") != "pass":
        return "hsl(0, 75%, 62%)" if ratio > 1e3 else "hsl(4, 80%, 72%)"
    if ratio > 1:
        return "hsl(35, 95%, 72%)"
    # log scale: PASS_FLOOR and below -> hue 130 (green), 1 -> hue 55 (yellow)
    position = (math.log10(max(ratio, PASS_FLOOR)) - math.log10(PASS_FLOOR)) / -math.log10(PASS_FLOOR)
    return f"hsl({130 - 75 * position:.0f}, 60%, {86 - 8 * position:.0f}%)"


def cell_id(op, column, dtype):
    return "cell-" + re.sub(r"[^A-Za-z0-9_.-]", "_", f"{op}-{column}-{dtype}")


def _e(value):
    return html.escape(str(value), quote=True)


# ---- the evidence of one cell ----------------------------------------------------------------------------------

def _is_reference(name, value):
    if name in _MEASURES or name == "analytic" or name.endswith(_MEASURES):
        return False
    number = as_float(value)
    return number is not None and not isinstance(value, int) and not math.isnan(number)


def _values_table(finding):
    """scratch_grad's value beside each reference the Finding carries (any float field that is not
    a measure of the comparison: torch, finite differences, one-sided differences, mpmath...). The
    `reference` field (the value compared against) is shown only when no other row has its value."""
    references = [(name, value) for name, value in finding.items() if _is_reference(name, value)]
    others = {as_float(value) for name, value in references if name != "reference"}
    references = [(name, value) for name, value in references if name != "reference" or as_float(value) not in others]
    rows = [("scratch_grad", finding.get("analytic"))] if "analytic" in finding else []
    rows += [(_REFERENCE_TITLES.get(name, name), value) for name, value in references]
    if not rows or all(as_float(v) is None or math.isnan(as_float(v)) for _, v in rows):
        return ""
    analytic = as_float(finding.get("analytic"))
    where = "the projection u^T J v" if finding.get("projected") else "the worst entry"
    lines = [f'<table class="values"><tr><th>value at {where}</th><th></th><th>scratch_grad − reference</th></tr>']
    for title, value in rows:
        number = as_float(value)
        difference = ""
        if title != "scratch_grad" and analytic is not None and number is not None and math.isfinite(number) \
                and math.isfinite(analytic):
            difference = f"{analytic - number:+.3e}"
        lines.append(f"<tr><td>{_e(title)}</td><td class=num>{_e(format_value(value))}</td>"
                     f"<td class=num>{_e(difference)}</td></tr>")
    lines.append("</table>")
    return "".join(lines)


def _fields_list(finding):
    """Every other field of the Finding, whatever fields it has (empty and NaN ones left out)."""
    items = []
    for name, value in finding.items():
        if _is_reference(name, value) or name in _SHOWN_ABOVE or value in ("", None, [], "nan"):
            continue
        if isinstance(value, list):
            value = "(" + ", ".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
        shown = format_ratio(value) if name == "ratio" else format_value(value)
        items.append(f"<div><dt>{_e(name)}</dt><dd>{_e(shown)}</dd></div>")
    return f'<dl class="fields">{"".join(items)}</dl>'


def _reproducer_block(evidence, opened):
    source = evidence.get("reproducer_source")
    if not source:
        return ""
    path = evidence.get("reproducer") or "(not written to a file)"
    return (f'<details class="repro"{" open" if opened else ""}><summary>standalone reproducer <code>{_e(path)}</code> '
            f'<button type="button" class="copy">copy</button></summary><pre class="source">{_e(source)}</pre></details>')


def evidence_block(op, column_title, dtype, cell):
    status = "pass" if cell.get("status") == "pass" else "FAIL"
    evidence = cell.get("evidence") or {}
    parts = [f'<div class="ev-head"><b>{_e(op)}</b> · {_e(column_title)} · {_e(dtype)}: '
             f'<span class="v-{status.lower()}">{status}</span>, worst {_e(format_ratio(cell.get("worst_ratio")))} '
             f'× tolerance over {cell.get("checks", 0)} draw(s)</div>']
    if evidence:
        classification = evidence.get("classification") or "-"
        parts.append(f'<div>worst draw: <b>{_e(evidence.get("where", "?"))}</b>; classification: '
                     f'<b>{_e(classification)}</b></div>')
    counts = cell.get("classifications") or {}
    if len(counts) > 1 or (counts and not evidence.get("classification")):
        parts.append('<div class="counts">all draws: ' + ", ".join(
            f"{_e(name)} ×{count}" for name, count in sorted(counts.items(), key=lambda item: -item[1])) + "</div>")
    finding = evidence.get("finding")
    if finding:
        parts.append(_values_table(finding))
        parts.append(_fields_list(finding))
    if evidence.get("message") and status == "FAIL":
        parts.append(f'<details class="msg"><summary>the checker\'s message</summary>'
                     f'<pre class="message">{_e(evidence["message"])}</pre></details>')
    parts.append(_reproducer_block(evidence, opened=status == "FAIL"))
    return "".join(parts)


# ---- the page ------------------------------------------------------------------------------------------------

def _header(data):
    passed = data.get("passed")
    failed = data.get("failed_ops") or []
    badge = "ALL PASS" if passed and data.get("ops") else (f"{len(failed)} FAILED" if failed else "NOTHING RUN")
    settings = data.get("settings") or {}
    versions = data.get("versions") or {}
    setting_items = "".join(f"<span><b>{_e(k)}</b> {_e(v if not isinstance(v, list) else ', '.join(map(str, v)) or '-')}"
                            f"</span>" for k, v in settings.items() if v not in (None, [], ""))
    version_items = "".join(f"<span><b>{_e(k)}</b> {_e(v)}</span>" for k, v in versions.items())
    when = data.get("started") or "unknown time"
    return (f'<header><h1>scratch_grad parity <span class="badge {"pass" if passed else "fail"}">{badge}</span></h1>'
            f'<p class="summary">{_e(data.get("summary", ""))}</p>'
            f'<div class="meta"><div><b>run</b> {_e(when)} · {float(data.get("seconds", 0)):.1f} s on '
            f'{_e(data.get("workers", "?"))} worker(s)</div>'
            f'<div class="items"><i>settings</i>{setting_items}</div>'
            f'<div class="items"><i>versions</i>{version_items}</div></div></header>')


def _legend():
    stops = ", ".join(cell_colour({"checks": 1, "status": "pass", "worst_ratio": PASS_FLOOR * 10 ** (k / 2)})
                      for k in range(9))
    return (
        '<section class="legend"><div class="scale">'
        f'<div class="bar" style="background: linear-gradient(to right, {stops})"></div>'
        '<div class="ticks"><span>≤1e-4</span><span>1e-3</span><span>1e-2</span><span>0.1</span><span>1</span></div>'
        '</div><div class="keys">'
        f'<span class="key" style="background:{cell_colour({"checks": 1, "status": "fail", "worst_ratio": 10})}">'
        'FAIL</span>'
        '<span class="key">0<sup class="warn">*</sup> some draws were warnings or failed through another op: counted 0</span>'
        f'<span class="key" style="background:{cell_colour(None)}">- not run</span>'
        f'<span class="key" style="background:{cell_colour(None)}">none: the op has no high-precision '
        f'(mpmath) definition</span></div>'
        '<p>A cell\'s number is the <b>worst |error| / tolerance</b> over all the draws of that op, check and '
        'dtype (the tolerance comes from the error model of <code>testing/tolerance.py</code>): at most 1 passes. '
        'Draws classified as a warning (finite-difference noise, a kink, a wrong or undefined reference) count 0. '
        'compiled=eager is bit for bit: 0 or ∞. Click a cell for the evidence of its worst draw.</p></section>')


def _failures(data, titles):
    """One line per failing cell (a link to it in the matrix), opening on the same evidence."""
    items = []
    for op, entry in sorted((data.get("ops") or {}).items()):
        for column, by_dtype in (entry.get("matrix") or {}).items():
            for dtype, cell in by_dtype.items():
                if cell.get("status") == "pass":
                    continue
                title = titles.get(column, column)
                evidence = cell.get("evidence") or {}
                items.append(
                    f'<li><details><summary><a href="#{cell_id(op, column, dtype)}">{_e(op)} · {_e(title)} · '
                    f'{_e(dtype)}</a> <span class="ratio">{_e(format_ratio(cell.get("worst_ratio")))} × tolerance'
                    f'</span> {_e(evidence.get("classification", ""))} <span class="where">'
                    f'({_e(evidence.get("where", ""))})</span></summary><div class="failure">'
                    f'{evidence_block(op, title, dtype, cell)}</div></details></li>')
        if not entry.get("matrix") and not entry.get("passed", True):     # a JSON from before the matrix
            items.append(f"<li>{_e(op)}<pre class=message>{_e(chr(10).join(entry.get('failures', [])))}</pre></li>")
    if not items:
        return ""
    return (f'<section id="failures"><h2>{len(items)} failing cell(s)</h2><ol>{"".join(items)}</ol>'
            '<p class="hint">Each opens on its evidence and its standalone reproducer (runs on its own, exits 1 '
            'while the mismatch persists).</p></section>')


def _has_warnings(cell):
    """Some draws of a passing cell were not plain agreement (FD noise, a kink, a wrong reference...)."""
    return any(name not in AGREEMENT for name in (cell.get("classifications") or {}))


def _matrix(data, titles):
    columns = data.get("columns") or sorted({c for e in data.get("ops", {}).values() for c in e.get("matrix", {})})
    dtypes = data.get("dtypes") or []
    ops = data.get("ops") or {}
    head = ['<thead><tr><th rowspan="2" class="opcol">op</th>']
    head += [f'<th colspan="{len(dtypes)}" class="group">{_e(titles.get(c, c))}</th>' for c in columns]
    head.append('<th rowspan="2" class="notes">notes (warnings, not failures)</th></tr><tr>')
    head += [f'<th class="dt{" first" if k == 0 else ""}">{_e(_DTYPE_SHORT.get(d, d))}</th>'
             for _ in columns for k, d in enumerate(dtypes)]
    head.append("</tr></thead>")
    body = ["<tbody>"]
    right_half = len(columns) * len(dtypes) // 2
    for op in sorted(ops, key=lambda name: (name.startswith("("), name)):
        entry = ops[op]
        status = "pass" if entry.get("passed") else "fail"
        body.append(f'<tr class="{status}"><th class="opcol"><span class="mark {status}"></span>{_e(op)}</th>')
        position = 0
        for column in columns:
            for k, dtype in enumerate(dtypes):
                cell = (entry.get("matrix") or {}).get(column, {}).get(dtype)
                first = " first" if k == 0 else ""
                if cell is None or not cell.get("checks"):
                    # an op with no mpmath definition is not covered by the high-precision reference at all
                    text = "none" if column.endswith("_mp") and entry.get("high_precision") is False else "-"
                    body.append(f'<td class="cell none{first}" style="background:{cell_colour(None)}">{text}</td>')
                else:
                    flip = " flip" if position >= right_half else ""
                    state = "pass" if cell.get("status") == "pass" else "fail"
                    mark = '<sup class="warn">*</sup>' if state == "pass" and _has_warnings(cell) else ""
                    body.append(
                        f'<td class="cell {state}{first}{flip}" id="{cell_id(op, column, dtype)}" '
                        f'style="background:{cell_colour(cell)}"><details><summary>'
                        f'{_e(format_ratio(cell.get("worst_ratio")))}{mark}</summary><div class="evidence">'
                        f'{evidence_block(op, titles.get(column, column), dtype, cell)}</div></details></td>')
                position += 1
        notes = ", ".join(f"{_e(note)} ×{count}" for note, count in sorted((entry.get("notes") or {}).items()))
        body.append(f'<td class="notes">{notes}</td></tr>')
    body.append("</tbody>")
    return f'<table class="matrix">{"".join(head)}{"".join(body)}</table>'


_CSS = """
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 24px 40px; color: #1d1d1f; }
header h1 { font-size: 22px; margin: 18px 0 4px; }
.badge { font-size: 14px; padding: 3px 10px; border-radius: 12px; vertical-align: middle; color: #fff; }
.badge.pass { background: #2e7d32; } .badge.fail { background: #c62828; }
.summary { margin: 4px 0 8px; color: #333; max-width: 1100px; }
.meta { font-size: 12.5px; color: #444; display: grid; gap: 3px; }
.meta .items span { margin-right: 14px; white-space: nowrap; display: inline-block; }
.meta i { font-style: normal; color: #888; margin-right: 8px; }
.legend { display: flex; flex-wrap: wrap; gap: 10px 24px; align-items: center; margin: 14px 0; font-size: 12.5px; }
.legend p { flex-basis: 100%; margin: 0; color: #444; max-width: 1100px; }
.scale .bar { width: 260px; height: 14px; border: 1px solid #bbb; border-radius: 3px; }
.scale .ticks { display: flex; justify-content: space-between; width: 260px; color: #555; font-size: 11px; }
.keys { display: flex; gap: 8px; flex-wrap: wrap; }
.key { padding: 1px 8px; border: 1px solid #bbb; border-radius: 3px; }
table.matrix { border-collapse: separate; border-spacing: 0; font-size: 12px; }
.matrix th, .matrix td { border-bottom: 1px solid #fff; }
.matrix thead th { position: sticky; background: #fafafa; z-index: 3; font-weight: 600; }
.matrix thead tr:first-child th { top: 0; height: 24px; }
.matrix thead tr:nth-child(2) th { top: 24px; color: #666; font-weight: normal; font-size: 11px; }
.matrix th.group { border-left: 3px solid #fff; padding: 2px 6px; white-space: nowrap; }
.matrix th.opcol { text-align: left; padding: 1px 10px 1px 4px; white-space: nowrap; font-family: ui-monospace, monospace;
  font-weight: normal; background: #fafafa; position: sticky; left: 0; z-index: 2; }
.matrix thead th.opcol { z-index: 4; }
.matrix tr.fail th.opcol { color: #b71c1c; font-weight: 700; }
.mark { display: inline-block; width: 8px; height: 8px; border-radius: 4px; margin-right: 6px; }
.mark.pass { background: #43a047; } .mark.fail { background: #e53935; }
.matrix td.cell { width: 60px; min-width: 60px; text-align: center; position: relative; padding: 0; }
.matrix .first { border-left: 3px solid #fff; }
.matrix td.fail { font-weight: 700; }
.matrix td.none { color: #aaa; }
sup.warn { color: #8d6e00; font-weight: 700; margin-left: 1px; line-height: 0; }
.cell > details > summary { list-style: none; cursor: pointer; padding: 2px 0; }
.cell > details > summary::-webkit-details-marker { display: none; }
.cell > details[open] > summary { outline: 2px solid #1d1d1f; outline-offset: -2px; }
.evidence { position: absolute; left: 0; top: 100%; z-index: 10; width: 660px; max-width: 90vw; text-align: left;
  font-weight: normal; background: #fff; border: 1px solid #999; border-radius: 6px; padding: 10px 12px;
  box-shadow: 0 6px 24px rgba(0,0,0,.25); }
.flip .evidence { left: auto; right: 0; }
.evidence > div, .failure > div { margin-bottom: 4px; }
.ev-head { font-size: 13px; }
span.v-pass { color: #2e7d32; font-weight: 700; } span.v-fail { color: #c62828; font-weight: 700; }
.counts { color: #555; }
table.values { border-collapse: collapse; margin: 6px 0; font-size: 12px; }
table.values td, table.values th { border: 1px solid #ddd; padding: 1px 8px; text-align: left; font-weight: normal; }
table.values th { background: #f5f5f5; color: #555; }
dl.fields { display: flex; flex-wrap: wrap; gap: 2px 6px; margin: 4px 0; font-size: 11.5px; }
dl.fields div { display: flex; border: 1px solid #e3e3e3; border-radius: 3px; background: #fafafa; }
dl.fields dt { color: #777; padding: 0 4px; } dl.fields dd { margin: 0; padding: 0 5px; background: #fff;
  font-family: ui-monospace, monospace; max-width: 520px; overflow-wrap: anywhere; }
td.num { font-family: ui-monospace, monospace; text-align: right; }
pre { font: 11.5px/1.35 ui-monospace, SFMono-Regular, Menlo, monospace; background: #f6f8fa; border: 1px solid #e1e4e8;
  border-radius: 4px; padding: 6px 8px; overflow: auto; white-space: pre; }
pre.message { max-height: 220px; white-space: pre-wrap; }
pre.source { max-height: 360px; margin: 0; }
.copy { font-size: 11px; padding: 1px 8px; margin-left: 6px; cursor: pointer; }
details.repro > summary, details.msg > summary { cursor: pointer; margin: 4px 0; }
details.repro code { font-size: 11px; overflow-wrap: anywhere; }
#failures { margin: 10px 0 16px; padding: 6px 14px 4px; border-left: 4px solid #c62828; background: #fff5f5;
  max-width: 1100px; }
#failures h2 { font-size: 15px; color: #b71c1c; margin: 4px 0; }
#failures ol { margin: 4px 0; padding-left: 22px; } #failures li { margin: 2px 0; }
#failures li > details > summary { cursor: pointer; }
#failures .ratio { font-weight: 700; color: #b71c1c; margin: 0 6px; } #failures .where { color: #666; }
#failures .failure { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; margin: 4px 0 8px; }
#failures .hint { color: #666; font-size: 12px; margin: 4px 0; }
td.notes { color: #666; font-size: 11px; padding-left: 10px; white-space: nowrap; }
"""

_JS = """
document.querySelectorAll('td.cell > details').forEach(function (d) {
  d.addEventListener('toggle', function () {
    if (!d.open) return;
    document.querySelectorAll('td.cell > details[open]').forEach(function (o) { if (o !== d) o.open = false; });
  });
});
document.addEventListener('keydown', function (e) {
  if (e.key === 'Escape') document.querySelectorAll('td.cell > details[open]').forEach(function (o) { o.open = false; });
});
document.querySelectorAll('button.copy').forEach(function (b) {
  b.addEventListener('click', function (e) {
    e.preventDefault();   // the button sits in a <summary>: copy without toggling
    var text = b.closest('details').querySelector('pre.source').textContent;
    function done() { b.textContent = 'copied'; setTimeout(function () { b.textContent = 'copy'; }, 1500); }
    if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text).then(done); return; }
    var area = document.createElement('textarea'); area.value = text; document.body.appendChild(area);
    area.select(); document.execCommand('copy'); document.body.removeChild(area); done();
  });
});
function openFromHash() {
  var target = location.hash && document.getElementById(location.hash.slice(1));
  if (!target) return;
  var d = target.querySelector('details');
  if (!d) return;
  d.open = true;   // the cell near the top (below the sticky header), its evidence below it
  window.scrollTo(0, target.getBoundingClientRect().top + window.scrollY - 90);
}
window.addEventListener('hashchange', openFromHash); openFromHash();
"""


def render(data):
    """The HTML page (a string) for the JSON dict of a parity run."""
    titles = dict(data.get("column_titles") or {})
    verdict = "ALL PASS" if data.get("passed") else f"{len(data.get('failed_ops') or [])} FAILED"
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>scratch_grad parity: {_e(verdict)}</title><style>{_CSS}</style></head><body>"
            f"{_header(data)}{_legend()}{_failures(data, titles)}{_matrix(data, titles)}"
            f"<script>{_JS}</script></body></html>\n")


def write(data, path):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render(data))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m scratch_grad.testing.report_html",
                                     description="Render a saved `scratch-grad parity --json` file as HTML.")
    parser.add_argument("json", help="the JSON written by scratch-grad parity --json")
    parser.add_argument("html", help="the HTML file to write")
    args = parser.parse_args(argv)
    try:
        with open(args.json) as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        print(f"report_html: cannot read {args.json}: {exc}", file=sys.stderr)
        return 2
    write(data, args.html)
    print(f"HTML report written to {args.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
