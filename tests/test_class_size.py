"""No class in the scratch_grad package is much over 200 lines (DEVELOPERS.md, style): a class that
long does several jobs, and a reader cannot hold it. Measured with ast, from `class` to the class's
last line, nested classes counted on their own too."""
import ast
import pathlib

import scratch_grad

MAX_CLASS_LINES = 210
PACKAGE = pathlib.Path(scratch_grad.__file__).parent


def class_sizes(source, module="<source>"):
    """{"module.Class" (dotted for nested classes): its lines} of every class in `source`."""
    sizes = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                name = f"{prefix}.{child.name}"
                sizes[name] = child.end_lineno - child.lineno + 1
                visit(child, name)
            else:
                visit(child, prefix)
    visit(ast.parse(source), module)
    return sizes


def package_class_sizes():
    sizes = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        sizes.update(class_sizes(path.read_text(encoding="utf-8"), module))
    return sizes


def test_no_class_in_the_package_is_over_the_limit():
    sizes = package_class_sizes()
    # not vacuous: the walk sees the whole package, subpackages included
    assert len(sizes) > 50 and "scratch_grad.engine.Variable" in sizes and "scratch_grad.compiler.node.CompiledNode" in sizes
    too_long = {name: lines for name, lines in sorted(sizes.items(), key=lambda item: -item[1])
                if lines > MAX_CLASS_LINES}
    assert not too_long, f"classes over {MAX_CLASS_LINES} lines (split them by job): {too_long}"


def test_the_measure_catches_a_long_class_and_a_long_nested_one():
    """Must-fail: a 211-line class, and a long class nested in a short one's method, are found."""
    body = "\n".join(f"    x{k} = {k}" for k in range(210))
    sizes = class_sizes(f"class Long:\n{body}\n\n\nclass Short:\n    pass\n", "m")
    assert sizes == {"m.Long": 211, "m.Short": 2}
    nested = "\n".join(f"            y{k} = {k}" for k in range(300))
    sizes = class_sizes(f"class Outer:\n    def method(self):\n        class Inner:\n{nested}\n", "m")
    assert sizes["m.Outer.Inner"] == 301 and sizes["m.Outer"] == 303
    assert max(sizes.values()) > MAX_CLASS_LINES
