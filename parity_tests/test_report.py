"""`scratch-grad parity --html/--plot`: the report a person reads. A planted broken op must show up
in the HTML as failing cells that open on their evidence and the reproducer's source; a correct op
must show as passing; the page must need nothing from the network; the JSON must carry every field
of the oracle's Finding, whatever fields it has."""
import dataclasses
import json
import sys
from html.parser import HTMLParser

import pytest

from scratch_grad.cli import main as cli
from scratch_grad.ops import REGISTRY
from scratch_grad.testing import report_html
from scratch_grad.testing.oracle import Finding
from scratch_grad.testing.parity import OpRow, ParityResult, _record, format_table, to_json

VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "area", "base", "source"}


class Element:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children, self.text = [], []

    @property
    def classes(self):
        return (self.attrs.get("class") or "").split()

    def all_text(self):
        return "".join(part if isinstance(part, str) else part.all_text() for part in self.text)

    def find_all(self, predicate):
        found = [self] if predicate(self) else []
        for child in self.children:
            found += child.find_all(predicate)
        return found


class TreeBuilder(HTMLParser):
    """html.parser into a small tree (the report closes every tag it opens)."""

    def __init__(self):
        super().__init__()
        self.root = Element("root", {}, None)
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        element = Element(tag, attrs, self.current)
        self.current.children.append(element)
        self.current.text.append(element)
        if tag not in VOID:
            self.current = element

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        assert self.current.tag == tag, f"</{tag}> closes <{self.current.tag}>"
        self.current = self.current.parent

    def handle_data(self, data):
        self.current.text.append(data)


def parse(text):
    builder = TreeBuilder()
    builder.feed(text)
    builder.close()
    assert builder.current is builder.root, "unclosed tags"
    return builder.root


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """One small run with the broken op registered by --import (and tanh, which is right)."""
    directory = tmp_path_factory.mktemp("report")
    paths = {kind: directory / f"parity.{kind}" for kind in ("json", "html", "png")}
    try:
        code = cli(["parity", "--import", "parity_tests.broken_op_plugin", "--op", "logcosh_broken", "--op", "tanh",
                    "--samples", "3", "--graphs", "6", "--workers", "1", "--quiet", "--json", str(paths["json"]),
                    "--html", str(paths["html"]), "--plot", str(paths["png"]),
                    "--reproducers", str(directory / "reproducers")])
    finally:
        REGISTRY.pop("logcosh_broken", None)
        sys.modules.pop("parity_tests.broken_op_plugin", None)
    data = json.loads(paths["json"].read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    html = paths["html"].read_text()
    return code, data, html, parse(html), paths


def cell(tree, op, column, dtype):
    found = tree.find_all(lambda e: e.attrs.get("id") == report_html.cell_id(op, column, dtype))
    assert len(found) == 1, (op, column, dtype)
    return found[0]


def test_the_planted_failure_shows_with_its_evidence_and_reproducer(planted_run):
    code, data, _, tree, _ = planted_run
    assert code == 1
    failing = cell(tree, "logcosh_broken", "vjp_torch", "float64")
    assert "fail" in failing.classes
    assert failing.find_all(lambda e: e.tag == "details"), "a cell opens on its evidence"
    text = failing.all_text()
    assert "engine bug" in text and "scratch_grad" in text and "torch" in text and "finite differences" in text
    evidence = data["ops"]["logcosh_broken"]["matrix"]["vjp_torch"]["float64"]["evidence"]
    with open(evidence["reproducer"]) as handle:
        source = handle.read()
    assert "logcosh_broken" in source and evidence["reproducer_source"] == source
    sources = [e.all_text() for e in failing.find_all(lambda e: e.tag == "pre" and "source" in e.classes)]
    assert sources == [source], "the reproducer's source, inline, exactly as written"
    assert failing.find_all(lambda e: e.tag == "button" and "copy" in e.classes)
    listed = tree.find_all(lambda e: e.attrs.get("id") == "failures")[0]
    assert f'#{report_html.cell_id("logcosh_broken", "vjp_torch", "float64")}' in [
        a.attrs.get("href") for a in listed.find_all(lambda e: e.tag == "a")]


def test_a_correct_op_shows_as_passing(planted_run):
    _, data, _, tree, _ = planted_run
    assert data["ops"]["tanh"]["passed"]
    for dtype in ("float64", "float32"):
        passing = cell(tree, "tanh", "vjp_torch", dtype)
        assert "pass" in passing.classes and "fail" not in passing.classes
        number = passing.find_all(lambda e: e.tag == "summary")[0].all_text()
        assert 0 <= float(number) <= 1
        assert not passing.find_all(lambda e: e.tag == "pre" and "source" in e.classes)
    row = tree.find_all(lambda e: e.tag == "tr" and e.find_all(lambda c: c.attrs.get("id", "").startswith("cell-tanh-")))
    assert row and "pass" in row[0].classes


def test_header_settings_versions_time_and_no_network_at_view_time(planted_run):
    _, data, html, tree, _ = planted_run
    header = tree.find_all(lambda e: e.tag == "header")[0].all_text()
    for name in ("python", "numpy", "torch", "scratch_grad"):
        assert f"{name} {data['versions'][name]}" in header
    assert data["started"] in header and "samples 3" in header and "graphs 6" in header
    assert "logcosh_broken" in data["failed_ops"] and f"{len(data['failed_ops'])} FAILED" in header
    for element in tree.find_all(lambda e: True):
        for attribute in ("src", "href"):
            value = element.attrs.get(attribute)
            assert value is None or value.startswith("#"), f"<{element.tag} {attribute}={value}>"
    assert "@import" not in html and "url(" not in html and "<link" not in html


def test_the_page_is_rendered_from_the_json_and_the_heatmap_is_a_png(planted_run):
    _, data, html, _, paths = planted_run
    assert report_html.render(data) == html          # a saved JSON renders the same page
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_finding_field_is_kept(planted_run):
    _, data, _, _, _ = planted_run
    finding = data["ops"]["logcosh_broken"]["matrix"]["vjp_torch"]["float64"]["evidence"]["finding"]
    assert set(finding) == {f.name for f in dataclasses.fields(Finding)}


class FakeReport:
    def __init__(self, findings):
        self.findings = findings

    def notes(self):
        return []


def test_a_new_check_and_new_finding_fields_get_their_own_column_and_rows():
    """The oracle may add checks (say 'invariants') and fields (say an mpmath reference `mp`): the
    table, the JSON and the HTML show them with no change here."""
    @dataclasses.dataclass
    class FutureFinding(Finding):
        mp: float = 0.0
        new_flag: str = ""

    row = OpRow()
    _record(row, FakeReport([
        FutureFinding("vjp_torch", 0, (2,), "float64", True, 0.25, analytic=1.0, torch=1.0, mp=1.0),
        FutureFinding("invariants", 0, (2,), "float64", False, float("inf"), "invariant broken", analytic=2.0,
                      mp=float("nan"), torch=2.5, new_flag="zero cotangent gave a nonzero gradient"),
    ]), "float64", "sample 0")
    result = ParityResult({"myop": row}, {}, ("float64",), 1, 0, 0, 0.1, 1)
    assert "invariants" in format_table(result).splitlines()[0]
    data = json.loads(json.dumps(to_json(result), allow_nan=False))
    assert data["columns"][-1] == "invariants"
    cell_data = data["ops"]["myop"]["matrix"]["invariants"]["float64"]
    assert cell_data["status"] == "fail" and cell_data["evidence"]["finding"]["mp"] == "nan"
    assert data["ops"]["myop"]["matrix"]["vjp_torch"]["float64"]["evidence"]["finding"]["mp"] == 1.0
    tree = parse(report_html.render(data))
    new = cell(tree, "myop", "invariants", "float64")
    assert "fail" in new.classes and "zero cotangent gave a nonzero gradient" in new.all_text()
    assert "high precision (mpmath)" in cell(tree, "myop", "vjp_torch", "float64").all_text()


@pytest.mark.parametrize("option", ["--html", "--plot", "--json"])
def test_bad_output_paths_exit_2_before_any_work(option, tmp_path, capsys, monkeypatch):
    import scratch_grad.testing.parity as parity
    monkeypatch.setattr(parity, "run_parity", lambda **kwargs: pytest.fail("the run started"))
    for bad in (str(tmp_path / "missing" / "out"), str(tmp_path)):
        assert cli(["parity", "--op", "tanh", option, bad]) == 2
        assert option in capsys.readouterr().err
