"""pytest plugin: the registry-driven gradient checks of your own ops, in your own test suite.

    pytest --sg-import my_ops                     # installed scratch_grad: pytest loads the plugin by its entry point
    pytest -p scratch_grad.testing.pytest_plugin --sg-import ops/my_ops.py --sg-op softsign
    # or one line in conftest.py: pytest_plugins = ["scratch_grad.testing.pytest_plugin"]

Inert unless --sg-import or --sg-op is given. Then each op (--sg-op, repeatable; default: the ops the
--sg-import modules define) gets test items, added to the session under the module that defines it, one
per dtype and kind:

    my_ops.py::softsign::own[float64]       the op's own checks: hypothesis draws its inputs with its sampler
                                            (edges and kinks included) and checks the forward, the VJPs
                                            against torch and finite differences, second order; shrunk
    my_ops.py::softsign::graphs[float64]    random graphs built around the op, every leaf checked three ways;
                                            a failing graph counts when its failure is localized to the op

A failure shows the oracle's message (the op, input, shape, largest error, each reference) and the path
of a standalone reproducer (./reproducers, or $SCRATCH_GRAD_REPRODUCERS). --sg-engine checks another
engine's ops through its adapter (testing/engines); --sg-database keeps hypothesis' examples where
`scratch-grad fuzz --database` does (a directory or redis://HOST:PORT/DB), so failures found there replay
here first. Shrinking is bounded as in fuzz (testing/fuzz.py), and hypothesis' own reports are kept quiet.

The items are not Python test functions, so they are added in pytest_collection_modifyitems (first, so
that -k and the other selections see them), like pytest's own non-Python test examples: a pytest.File
per defining module, a Collector per op, an Item per check.
"""
from dataclasses import dataclass
from pathlib import Path

import pytest

OWN_EXAMPLES = 40       # per op and dtype, as `scratch-grad parity`'s samples
GRAPH_EXAMPLES = 30     # per op and dtype, as parity --op's graphs built around the op
DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Selection:
    ops: tuple
    dtypes: tuple
    engine: object = None           # the adapter, or None for scratch_grad
    database: object = None         # a hypothesis example database, or None for the user's settings


SELECTION = pytest.StashKey[Selection]()


def pytest_addoption(parser):
    group = parser.getgroup("scratch_grad", "scratch_grad: registry-driven gradient checks of your own ops")
    group.addoption("--sg-import", action="append", default=[], metavar="MODULE_OR_PATH",
                    help="import this module (importable from the current directory) or .py file, which registers "
                         "ops (repeatable); their checks are added to the session")
    group.addoption("--sg-op", action="append", default=[], metavar="NAME",
                    help="check this registry op (repeatable; default: the ops the --sg-import modules define)")
    group.addoption("--sg-engine", default=None, metavar="NAME_OR_MODULE:ATTR",
                    help="check another engine through its adapter (torch, autograd, mygrad, jax, or module:attr)")
    group.addoption("--sg-database", default=None, metavar="DIR|URL",
                    help="hypothesis example database, as scratch-grad fuzz --database (a directory or "
                         "redis://HOST:PORT/DB)")


def _selection(config):
    """The ops and settings the options ask for (None: the plugin stays inert); pytest.UsageError on a bad one."""
    imports, ops = config.getoption("sg_import"), config.getoption("sg_op")
    engine_spec, database_spec = config.getoption("sg_engine"), config.getoption("sg_database")
    if not imports and not ops:
        if engine_spec or database_spec:
            raise pytest.UsageError("--sg-engine/--sg-database: name the ops to check with --sg-import or --sg-op")
        return None
    from ..ops import REGISTRY
    from .imports import load, registered_by
    modules = []
    for spec in imports:
        try:
            modules.append(load(spec))
        except ImportError as exc:
            raise pytest.UsageError(f"--sg-import {spec}: {exc}") from None
    names = list(dict.fromkeys(ops)) or registered_by(modules)
    if not names:
        raise pytest.UsageError(f"--sg-import {' '.join(imports)}: defines no registry op; name the ops with --sg-op")
    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        raise pytest.UsageError(f"--sg-op {', '.join(unknown)}: unknown op (not in the registry)")
    engine = database = None
    if engine_spec:
        from .engines import load_engine
        try:
            engine = load_engine(engine_spec)
        except Exception as exc:  # noqa: BLE001 - any failure to load the adapter is a bad option
            raise pytest.UsageError(f"--sg-engine {engine_spec}: {exc}") from None
    if database_spec:
        from .database import DatabaseError, open_database
        try:
            database = open_database(database_spec, check=True)
        except DatabaseError as exc:
            raise pytest.UsageError(f"--sg-database: {exc}") from None
    dtypes = tuple(engine.capabilities.dtypes) if engine is not None else DTYPES
    return Selection(tuple(names), dtypes, engine, database)


def pytest_configure(config):
    selection = _selection(config)
    if selection is not None:
        config.stash[SELECTION] = selection


def _defining_file(name):
    """The file of the module that defined a registry op (this file if it has none, as an op made in __main__)."""
    import sys

    from ..ops import REGISTRY
    from .imports import defined_in
    module = sys.modules.get(defined_in(REGISTRY[name]) or "")
    return Path(getattr(module, "__file__", None) or __file__).resolve()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    selection = config.stash.get(SELECTION, None)
    if selection is None:
        return
    by_file = {}
    for name in selection.ops:
        by_file.setdefault(_defining_file(name), []).append(name)
    for path, names in by_file.items():
        items.extend(session.genitems(OpModule.from_parent(session, path=path, ops=tuple(names))))


class OpModule(pytest.File):
    """The module that defines the ops: one collector per op."""

    def __init__(self, *, ops, **kwargs):
        super().__init__(**kwargs)
        self.ops = ops

    def collect(self):
        for name in self.ops:
            yield OpChecks.from_parent(self, name=name)


class OpChecks(pytest.Collector):
    """One op's checks: its own, then graphs containing it, in each dtype."""

    def collect(self):
        for kind in ("own", "graphs"):
            for dtype in self.config.stash[SELECTION].dtypes:
                yield OpCheck.from_parent(self, name=f"{kind}[{dtype}]", op=self.name, kind=kind, dtype=dtype)


class OpCheckFailed(AssertionError):
    """The oracle's verdict on a failing example (its message names the reproducer)."""


class _Guilt:
    """A failing random graph counts against the op only when its failure is localized to it (the op fails
    alone on its inputs there: testing/graphs.localize); a graph failing because of another op, or of no op
    alone, is rejected (not an example of this property: the other op's own items, and `scratch-grad parity`'s
    "(engine)" row, report those)."""

    def __init__(self, op, engine):
        self.op, self.engine = op, engine
        self.localized = (None, ())

    def on_report(self, report):
        if report.passed or report.label != "graph":
            return
        from hypothesis import reject

        from .graphs import localize
        self.localized = (report, tuple(localize(report.program, engine=self.engine)))
        if self.op not in self.localized[1]:
            reject()

    def where(self, report):
        culprits = self.localized[1] if self.localized[0] is report else ()
        return f"\n  localized to: {', '.join(culprits)}" if culprits else ""


class OpCheck(pytest.Item):
    def __init__(self, *, op, kind, dtype, **kwargs):
        super().__init__(**kwargs)
        self.op, self.kind, self.dtype = op, kind, dtype

    def runtest(self):
        from hypothesis import HealthCheck, Verbosity

        from ..ops import REGISTRY
        from .fuzz import MIN_GRAPH_SHRINK_SECONDS, OWN_SHRINK_SECONDS, bounded_shrinking, quiet_hypothesis
        from .oracle import CheckFailure
        from .strategies import graph_property, op_property
        selection = self.config.stash[SELECTION]
        if selection.engine is not None and self.op not in selection.engine.ops:
            pytest.skip(f"engine {selection.engine.name} does not provide op '{self.op}'")
        settings = dict(deadline=None, verbosity=Verbosity.quiet, suppress_health_check=list(HealthCheck))
        if selection.database is not None:
            settings["database"] = selection.database
        guilt = _Guilt(self.op, selection.engine)
        hooks = {"engine": selection.engine, "on_report": guilt.on_report}
        if self.kind == "own":
            test = op_property(REGISTRY[self.op], self.dtype, max_examples=OWN_EXAMPLES, example_kwargs=hooks,
                               **settings)
            shrink = OWN_SHRINK_SECONDS
        else:
            test = graph_property(self.dtype, max_examples=GRAPH_EXAMPLES, require_op=self.op, example_kwargs=hooks,
                                  **settings)
            shrink = MIN_GRAPH_SHRINK_SECONDS
        try:
            with quiet_hypothesis(), bounded_shrinking(shrink):
                test()
        except CheckFailure as failure:
            raise OpCheckFailed(failure.report.message() + guilt.where(failure.report)) from None

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, OpCheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        what = "its own checks" if self.kind == "own" else "random graphs containing it"
        return self.path, None, f"op '{self.op}' ({self.dtype}): {what}"
