"""The package's imports run one way, read from its source with ast: every import statement, at module level
or inside a function, relative or absolute (and importlib.import_module of a constant name), must name a
module of the same layer or a lower one, and no module of the package may reach itself through imports.

The layers, lowest first (a module may import its own layer and those below it):
    errors                          exceptions, and `describe` for messages
    data, progress                  standalone helpers: the embedded datasets, progress output
    engine                          Variable, recording, backprop, the op table (engine.OPS) ops fill
    trace                           one representation of a traced program (when present)
    ops                             the registry and every op
    compiler, functional            sg.compile; jvp, jacobian, hessian
    nn                              modules, losses, optimizers, the training loop
    scratch_grad                    the package's __init__: the public API, re-exported from below
    testing                         the oracle, fuzzing, mutation testing, reproducers
    experiments                     founding runs, regression, NumPy reference net, training parity
    cli, __main__                   the scratch-grad command
"""
import ast
import importlib.util
from pathlib import Path

import pytest

import scratch_grad

PACKAGE = "scratch_grad"
ROOT = Path(scratch_grad.__file__).resolve().parent
LAYERS = (
    ("errors",),
    ("data", "progress"),
    ("engine",),
    ("trace",),
    ("ops",),
    ("compiler", "functional"),
    ("nn",),
    ("",),                     # scratch_grad/__init__.py itself
    ("testing",),
    ("experiments",),
    ("cli", "__main__"),
)
LEVEL = {f"{PACKAGE}.{name}" if name else PACKAGE: level for level, names in enumerate(LAYERS) for name in names}
# upward imports that are being removed elsewhere, each with where (delete the entry when it is gone: the
# test below fails on an entry that no longer matches, so none outlives its reason)
KNOWN_UPWARD = set()


def package_modules(root=ROOT, package=PACKAGE):
    """{module name: (path, is a package __init__)} for every .py file under root."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (path, is_package)
    return modules


def imported_names(source, module, is_package):
    """Every module name an import in `source` (module `module`) may load: `import a.b` gives a.b, `from a
    import b` gives a.b if that is a module (the caller decides) else a; relative imports resolved."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[:len(parts) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module
            found.extend((origin, alias.name) for alias in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.args[0].value, None))
    return found


def import_graph(modules):
    """{module: set of package modules it imports} (modules: as package_modules returns)."""
    graph = {}
    for module, (path, is_package) in modules.items():
        targets = set()
        for origin, name in imported_names(path.read_text(), module, is_package):
            if name is not None and f"{origin}.{name}" in modules:
                targets.add(f"{origin}.{name}")          # from package import submodule
            elif origin in modules:
                targets.add(origin)
        targets.discard(module)
        graph[module] = targets
    return graph


def layer_of(module):
    """The level of the longest layer prefix of module (scratch_grad.testing.oracle: testing's)."""
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        level = LEVEL.get(".".join(parts[:k]))
        if level is not None:
            return level
    return None


def upward_imports(graph):
    """(importer, imported) pairs where a module imports one of a higher layer."""
    return sorted((a, b) for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None. Iterative depth-first search."""
    state = {}                                     # module: 1 on the current path, 2 done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            step = next(stack[-1], None)
            if step is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(step) == 1:
                return path[path.index(step):] + [step]
            elif not state.get(step):
                state[step] = 1
                path.append(step)
                stack.append(iter(sorted(graph.get(step, ()))))
    return None


@pytest.fixture(scope="module")
def graph():
    return import_graph(package_modules())


def test_every_module_of_the_package_has_a_layer(graph):
    assert {"scratch_grad.engine", "scratch_grad.ops.registry", "scratch_grad.testing.oracle",
            "scratch_grad.cli.parity"} <= set(graph)
    assert [module for module in graph if layer_of(module) is None] == []


def test_imports_run_one_way_errors_engine_ops_then_the_layers_above(graph):
    upward = upward_imports(graph)
    assert [edge for edge in upward if edge not in KNOWN_UPWARD] == []
    stale = sorted(KNOWN_UPWARD - set(upward))
    assert stale == [], f"these upward imports are gone: delete them from KNOWN_UPWARD: {stale}"


def test_the_engine_imports_nothing_of_the_package_but_errors(graph):
    assert graph["scratch_grad.engine"] == {"scratch_grad.errors"}


def test_no_import_cycle_among_the_package_modules(graph):
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_walker_sees_every_kind_of_import_and_flags_an_upward_one(graph):
    """must-FAIL cases: planted into the engine, a function-local relative import of an op, an absolute import
    of the oracle and an importlib call are each seen, flagged as upward, and (engine <-> ops) make a cycle."""
    planted = ("import numpy as np\nfrom .errors import ShapeError\n"
               "def f():\n    from .ops import sum_to\n    import scratch_grad.testing.oracle\n"
               "def g():\n    importlib.import_module('scratch_grad.cli.parity')\n")
    modules = package_modules()
    names = imported_names(planted, "scratch_grad.engine", False)
    assert ("scratch_grad.ops", "sum_to") in names and ("scratch_grad.testing.oracle", None) in names
    assert ("scratch_grad.cli.parity", None) in names
    targets = {origin if f"{origin}.{name}" not in modules else f"{origin}.{name}" for origin, name in names}
    planted_graph = {**graph, "scratch_grad.engine": {t for t in targets if t in modules}}
    assert {("scratch_grad.engine", "scratch_grad.ops"), ("scratch_grad.engine", "scratch_grad.testing.oracle"),
            ("scratch_grad.engine", "scratch_grad.cli.parity")} <= set(upward_imports(planted_graph))
    assert find_cycle(planted_graph) is not None
    # and a `from package import submodule` is an import of the submodule, not of the package's __init__
    assert ("scratch_grad", "engine") in imported_names("def f():\n    from .. import engine\n",
                                                        "scratch_grad.testing.mutate", False)
    assert "scratch_grad.engine" in graph["scratch_grad.testing.mutate"]


def test_the_cycle_finder_on_small_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": {"d"}, "d": {"b"}}) == ["b", "c", "d", "b"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_layers_name_modules_that_exist():
    """A layer that names a missing module is a typo (trace may come later: it is the one exception)."""
    for names in LAYERS:
        for name in names:
            if name in ("", "trace"):
                continue
            assert importlib.util.find_spec(f"{PACKAGE}.{name}") is not None, name
