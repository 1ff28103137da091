"""Standalone reproducers: a failing program written as a script anyone can run.

The script inlines the inputs, states the program twice (scratch_grad, then the equivalent torch
code, line for line), prints the largest gradient difference per input, runs the three-way
oracle on the same function, and exits 1 while the mismatch persists. It needs only numpy,
torch and scratch_grad; ops that a fresh `import scratch_grad` does not provide (an op
registered by a test, a planted mutant) are imported from where they were defined.
"""
import hashlib
import importlib
import math
import os
import sys
import textwrap
from pathlib import Path

import numpy as np

from ..trace import LEAF, STEP

DEFAULT_DIRECTORY = "reproducers"


def reproducer_directory():
    return Path(os.environ.get("SCRATCH_GRAD_REPRODUCERS", DEFAULT_DIRECTORY))


# ---- Python literals for values ------------------------------------------------------------------------

def _float_literal(value):
    value = float(value)
    if math.isfinite(value):
        return repr(value)
    return "float('nan')" if math.isnan(value) else ("float('inf')" if value > 0 else "-float('inf')")


def _nested(values):
    if isinstance(values, list):
        return "[" + ", ".join(_nested(v) for v in values) + "]"
    if isinstance(values, float):
        return _float_literal(values)
    return repr(values)


def _layout_of(array):
    if array.ndim == 0 or array.flags.c_contiguous:
        return None
    if any(s < 0 for s in array.strides):
        return "reversed"
    if array.flags.f_contiguous:
        return "transposed"
    return "strided"


def literal(value):
    """Python source that evaluates to `value` (arrays keep dtype and, via with_layout, layout)."""
    if isinstance(value, np.ndarray):
        dtype = "bool_" if value.dtype == np.bool_ else value.dtype.name
        text = f"np.array({_nested(value.tolist())}, dtype=np.{dtype})"
        layout = _layout_of(value)
        return f"with_layout({text}, {layout!r})" if layout else text
    if isinstance(value, (bool, np.bool_)):
        return repr(bool(value))
    if isinstance(value, np.integer):
        return f"np.{value.dtype.name}({int(value)})"
    if isinstance(value, np.floating):
        return f"np.{value.dtype.name}({_float_literal(value)})"
    if isinstance(value, float):
        return _float_literal(value)
    if isinstance(value, tuple):
        inner = ", ".join(literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, slice):
        return f"slice({literal(value.start)}, {literal(value.stop)}, {literal(value.step)})"
    if value is Ellipsis:
        return "Ellipsis"
    if isinstance(value, np.dtype):
        return f"np.dtype({value.name!r})"
    return repr(value)


# ---- naming ops ------------------------------------------------------------------------------------------

def _fresh_registry_has(spec):
    """Whether `import scratch_grad` alone provides this exact spec: it is in the registry and was
    defined inside the scratch_grad package (not by a test or a user's module, not a mutant)."""
    import scratch_grad
    if scratch_grad.REGISTRY.get(spec.name) is not spec:
        return False
    module, _ = _module_attribute(spec)
    return module is None or module.split(".")[0] == "scratch_grad"


def _module_attribute(spec):
    """(module, attribute) of a module-level name bound to spec, searched in its functions' modules."""
    for fn in (spec.forward, *[v for v in spec.vjps if v is not None], spec.torch):
        module_name = getattr(fn, "__module__", None)
        module = sys.modules.get(module_name) if module_name else None
        if module is None:
            continue
        for attribute, value in vars(module).items():
            if value is spec:
                return module_name, attribute
            if getattr(value, "spec", None) is spec:     # the public function make_function returned
                return module_name, attribute + ".spec"
    return None, None


def _import_root(module_name):
    """The directory to put on sys.path so that `import module_name` works."""
    module = sys.modules[module_name]
    path = Path(module.__file__).resolve().parent
    for _ in range(module_name.count(".")):
        path = path.parent
    return str(path)


def _torch_name(spec):
    import torch
    fn = spec.torch
    name = getattr(fn, "__name__", "")
    if name and getattr(torch, name, None) is fn:
        return f"torch.{name}"
    if name and getattr(torch.nn.functional, name, None) is fn:
        return f"torch.nn.functional.{name}"
    return None


# ---- the script ------------------------------------------------------------------------------------------

def render(program, report=None, context=None, title="", directory=None):
    """The reproducer's source. context: (setup source, expression of a context manager) that
    re-creates the conditions of the failure (a planted mutant), or None. directory: where the
    script will live; ops defined outside scratch_grad are found by module name, or else by their
    path relative to the script (never an absolute path of the machine that wrote it)."""
    import scratch_grad
    specs = {}
    for step in program.steps:
        specs.setdefault(step.spec.name, step.spec)
    base = Path(directory if directory is not None else reproducer_directory()).resolve()
    roots = set()
    spec_lines, scratch_names, torch_names = [], {}, {}
    for name, spec in specs.items():
        if _fresh_registry_has(spec):
            spec_expr = f"sg.REGISTRY[{name!r}]"
            public = getattr(scratch_grad, name, None)
            scratch_names[name] = f"sg.{name}" if getattr(public, "spec", None) is spec else f"OPS[{name!r}]"
        else:
            module, attribute = _module_attribute(spec)
            if module is None:
                spec_lines.append(f"# op {name!r} was defined where it cannot be imported from: re-create it here")
                spec_expr = f"sg.REGISTRY[{name!r}]"
            else:
                roots.add(os.path.relpath(_import_root(module), base))
                alias = f"spec_{name}"
                spec_lines.append(f"from {module} import {attribute.split('.')[0]} as _{alias}  # defines {name!r}")
                spec_expr = f"_{alias}" + ("." + attribute.split(".", 1)[1] if "." in attribute else "")
            scratch_names[name] = f"OPS[{name!r}]"
        spec_lines.append(f"SPECS[{name!r}] = {spec_expr}")
        torch_names[name] = _torch_name(spec) or f"SPECS[{name!r}].torch"

    leaf_names = [f"x{k}" for k in range(len(program.leaves))]
    lines = []
    for k, value in enumerate(program.leaves):
        grad_note = "requires grad" if program.requires_grad[k] else "no grad"
        lines.append(f"x{k} = {literal(value)}  # leaf {k}, {grad_note}")
    for k, value in enumerate(program.constants):
        lines.append(f"c{k} = {literal(value)}  # constant {k}")
    for k, value in enumerate(program.cotangents):
        lines.append(f"cotangent{k} = {literal(value)}  # weight of output {k} in L = sum <output, cotangent>")
    inputs_block = "\n".join(lines)

    def argument(ref, prefix):
        if ref.kind == LEAF:
            return f"{prefix}{ref.index}"
        if ref.kind == STEP:
            return f"s{ref.index}"
        return f"torch_constant(c{ref.index}, dtype)" if prefix == "t" else f"c{ref.index}"

    scratch_lines, torch_lines = [], []
    for k, step in enumerate(program.steps):
        params = "".join(f", {key}={literal(value)}" for key, value in step.params.items())
        scratch_args = ", ".join(argument(r, "v") for r in step.args)
        torch_args = ", ".join(argument(r, "t") for r in step.args)
        scratch_lines.append(f"    s{k} = {scratch_names[step.spec.name]}({scratch_args}{params})")
        torch_lines.append(f"    s{k} = {torch_names[step.spec.name]}({torch_args}{params})")
    outputs = ", ".join(f"s{k}" for k in program.outputs)
    v_args = ", ".join(f"v{k}" for k in range(len(program.leaves)))
    t_args = ", ".join(f"t{k}" for k in range(len(program.leaves)))
    flags = ", ".join(str(bool(f)) for f in program.requires_grad)
    cotangents = ", ".join(f"cotangent{k}" for k in range(len(program.cotangents)))
    summary = report.message() if report is not None else title
    setup, manager = context if context else ("", "contextlib.nullcontext()")
    source = f'''#!/usr/bin/env python3
# {SIZE_MARK} {" ".join(str(v) for v in size(program))}
"""Standalone reproducer written by scratch_grad.testing.

{textwrap.indent(summary, "    ").strip()}

Run: python {{this file}}. It computes the gradients of L = sum_k <output_k, cotangent_k> with
scratch_grad and with torch (float64) on the inlined inputs, prints the largest difference per
input, then runs the three-way oracle (scratch_grad vs torch vs finite differences) on the same
program. Exit status 1 while the mismatch persists.
"""
import contextlib
import sys
import traceback
from pathlib import Path

# where the ops of this program that scratch_grad does not define were imported from, relative to
# this script (the current directory is searched first, as Python does for `python -c "import m"`)
for relative in {sorted(roots)!r}:
    root = str((Path(__file__).resolve().parent / relative).resolve())
    if root not in sys.path:
        sys.path.append(root)
if "" not in sys.path:
    sys.path.insert(0, "")

import numpy as np
import torch

import scratch_grad as sg
from scratch_grad.ops.registry import make_function
from scratch_grad.testing import check_fn
from scratch_grad.testing.gen import with_layout

SPECS = {{}}
{chr(10).join(spec_lines)}
OPS = {{name: make_function(spec) for name, spec in SPECS.items()}}
{setup}

# ---- inputs, inlined ----------------------------------------------------------------------------------
{inputs_block}
REQUIRES_GRAD = [{flags}]
COTANGENTS = [{cotangents}]


def torch_constant(value, dtype):
    tensor = torch.as_tensor(np.array(value, order="C"))
    return tensor.to(dtype) if tensor.is_floating_point() else tensor


# ---- the program in scratch_grad ---------------------------------------------------------------------
def scratch_program({v_args}):
{chr(10).join(scratch_lines)}
    return [{outputs}]


# ---- the same program in torch (each registry entry's reference) --------------------------------------
def torch_program({t_args}{", " if t_args else ""}dtype=torch.float64):
{chr(10).join(torch_lines)}
    return [{outputs}]


def main():
    leaves = [{", ".join(leaf_names)}]
    with {manager}:
        try:
            return compare(leaves)
        except Exception:  # noqa: BLE001 - the engine raising is the failure this script reproduces
            traceback.print_exc()
            print("scratch_grad raised (above) on this program")
            return 1


def compare(leaves):
    """scratch_grad and torch on the inlined program, then the three-way oracle: 0 when it passes."""
    variables = [sg.Variable(x, requires_grad=flag) for x, flag in zip(leaves, REQUIRES_GRAD)]
    wanted = [v for v, flag in zip(variables, REQUIRES_GRAD) if flag]
    # outputs computed from constants alone are plain arrays: they carry no gradient
    live = [isinstance(o, sg.Variable) and o.requires_grad for o in scratch_program(*variables)]
    outputs = [o for o, keep in zip(scratch_program(*variables), live) if keep]
    cotangents = [c for c, keep in zip(COTANGENTS, live) if keep]
    scratch_grads = sg.grad(outputs, wanted, grad_outputs=cotangents, allow_unused=True)
    tensors = [torch.tensor(np.array(x, order="C"), dtype=torch.float64, requires_grad=flag)
               for x, flag in zip(leaves, REQUIRES_GRAD)]
    torch_wanted = [t for t, flag in zip(tensors, REQUIRES_GRAD) if flag]
    torch_outputs = [o for o, keep in zip(torch_program(*tensors), live) if keep]
    torch_grads = torch.autograd.grad(torch_outputs, torch_wanted,
                                      [torch.tensor(c, dtype=torch.float64) for c in cotangents],
                                      allow_unused=True)
    for k, (mine, theirs) in enumerate(zip(scratch_grads, torch_grads)):
        mine = np.zeros(wanted[k].shape) if mine is None else np.asarray(mine, dtype=np.float64)
        theirs = np.zeros(wanted[k].shape) if theirs is None else theirs.detach().numpy()
        if mine.shape != theirs.shape:
            print(f"input {{k}}: scratch_grad gradient shape {{mine.shape}}, torch {{theirs.shape}}")
            continue
        difference = np.abs(mine - theirs)
        where = tuple(int(i) for i in np.unravel_index(int(np.argmax(difference)), difference.shape)) \\
            if difference.size else ()
        print(f"input {{k}}: largest |scratch_grad - torch| = {{difference.max() if difference.size else 0.0:.3e}}"
              f" at {{where}}: scratch_grad {{mine[where] if mine.size else None}}, "
              f"torch {{theirs[where] if theirs.size else None}}")

    def live_outputs(*variables):
        return [o for o, keep in zip(scratch_program(*variables), live) if keep]

    report = check_fn(live_outputs, variables, cotangent=cotangents, raise_on_failure=False)
    print(report.message() if not report.passed else "the three-way check passes now")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
'''
    return source


SIZE_MARK = "program size (steps, leaf entries):"


def size(program):
    """How big a failing program is: fewer steps first, then fewer input entries (a smaller program is
    the better reproducer of the same failure)."""
    return len(program.steps), int(sum(np.size(v) for v in program.leaves))


def written_size(path):
    """The size recorded in a reproducer written earlier (infinitely large if it has none)."""
    try:
        with open(path) as handle:
            for line in handle.readlines()[:3]:
                if SIZE_MARK in line:
                    return tuple(int(v) for v in line.split(SIZE_MARK)[1].split())
    except (OSError, ValueError):
        pass
    return (float("inf"),)


def write(program, report=None, context=None, directory=None, stem=None, hashed=True):
    """Write the reproducer script and return its path: `stem` followed by a hash of its content, or
    `stem` alone with hashed=False (the caller names the failure: a rewrite replaces it)."""
    directory = Path(directory) if directory is not None else reproducer_directory()
    source = render(program, report, context, directory=directory)
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(source.encode()).hexdigest()[:10]
    stem = stem or f"{program.name or 'program'}-{program.dtype}"
    path = directory / (f"{stem}-{digest}.py" if hashed else f"{stem}.py")
    path.write_text(source)
    return str(path)
