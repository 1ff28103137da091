"""The options the subcommands share, and their one validation.

A subcommand's parser takes the shared options it needs with the `add_*` functions below, then calls
`validate(parser, args)` before any work. argparse checks each value's form (the types below: `--workers 0`,
`--seed -1` and `--samples -1` are refused there); `validate` checks what needs more than the text, in this
order: output paths (their directory exists and is writable), the modules the subcommand needs (torch, the
reference: the "needs torch" guard), `--import` (a module from the current directory or a .py path, through
testing/imports.load), `--op` against the registry (after those imports), `--engine` (through load_engine).
Every refusal goes through `parser.error`: exit 2 with the usage line and a message, never a traceback.
"""
import argparse
import difflib
import math
import os


def checked(parse, accept, expected):
    """An argparse type: parse the text, then require accept(value); the message names what was expected."""
    def convert(text):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value
    convert.__name__ = expected         # argparse names the type in some messages
    return convert


positive_int = checked(int, lambda value: value >= 1, "a positive integer")
non_negative_int = checked(int, lambda value: value >= 0, "a non-negative integer")
positive_float = checked(float, lambda value: math.isfinite(value) and value > 0, "a positive finite number")


def add_ops(parser, text="check only this op (repeatable); default: the whole registry"):
    parser.add_argument("--op", action="append", dest="ops", metavar="NAME", help=text)


def add_seed(parser, text="seed of every draw (default 0)"):
    parser.add_argument("--seed", type=non_negative_int, default=0, metavar="S", help=text)


def add_workers(parser, default="min(2, cores)"):
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help=f"worker processes (default: {default})")


def add_json(parser, text="also write the results as JSON", optional_path=False):
    if optional_path:
        parser.add_argument("--json", metavar="PATH", nargs="?", const="-", help=text)
    else:
        parser.add_argument("--json", metavar="PATH", help=text)


def add_imports(parser):
    parser.add_argument("--import", action="append", dest="imports", default=[], metavar="MODULE_OR_PATH",
                        help="import this module first (a module importable from the current directory, or a path "
                             "to a .py file; repeatable), in every worker too: one that registers your own ops")


def add_engine(parser):
    parser.add_argument("--engine", metavar="NAME_OR_MODULE:ATTR", default=None,
                        help="check another engine through its adapter: torch, autograd, mygrad, jax, student, or "
                             "module:attr (see scratch_grad.testing.engines); default scratch_grad")


def add_reproducers(parser, default="reproducers"):
    parser.add_argument("--reproducers", metavar="DIR", default=default,
                        help=f"where failures write standalone reproducer scripts (default ./{default})")


# ---- checks that need more than the text ---------------------------------------------------------------------

def output_path_problem(path):
    """Why a file cannot be written at `path` (None if it can): checked before a run of minutes starts."""
    full = os.path.abspath(os.path.expanduser(path))
    directory = os.path.dirname(full)
    if os.path.isdir(full):
        return f"{path} is a directory"
    if not os.path.isdir(directory):
        return f"directory {directory} does not exist"
    if not os.access(directory, os.W_OK):
        return f"directory {directory} is not writable"
    return None


def directory_problem(path):
    """Why a directory cannot be used or created at `path` (None if it can)."""
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(full):
        if not os.path.isdir(full):
            return f"{path} exists and is not a directory"
        return None if os.access(full, os.W_OK) else f"directory {path} is not writable"
    missing = [full]                # created now and removed again: only trying tells (root, /proc, quotas)
    while not os.path.exists(os.path.dirname(missing[-1])):
        missing.append(os.path.dirname(missing[-1]))
    try:
        os.makedirs(full)
    except OSError as exc:
        return f"cannot create it ({exc.strerror})"
    for directory in missing:
        os.rmdir(directory)
    return None


OUTPUT_FILES = ("json", "html", "plot")       # options naming a file to write, wherever a subcommand has them


def require(parser, modules, why="the reference"):
    """The "needs torch" guard: exit 2 naming the missing module and how to install it."""
    import importlib
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            parser.exit(2, f"{parser.prog} needs {module} ({why}): {exc}; pip install 'scratch_grad[test]'\n")


def load_imports(parser, specs):
    """Import each --import spec (testing/imports.load); a module that fails to import exits 2 with the reason."""
    from ..testing.imports import load
    modules = []
    for spec in specs:
        try:
            modules.append(load(spec))
        except ImportError as exc:
            parser.error(f"--import {spec}: {exc}")
    return modules


def check_ops(parser, names):
    """The --op names, each once, in order; one not in the registry (after --import) exits 2."""
    from ..ops import REGISTRY
    unique = list(dict.fromkeys(names))
    for name in unique:
        if name not in REGISTRY:
            close = difflib.get_close_matches(name, list(REGISTRY), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see `scratch-grad ops`"
            parser.error(f"--op {name}: unknown op (not among the {len(REGISTRY)} registry ops){hint}")
    return unique


def load_engine_option(parser, spec):
    """The adapter --engine names (None for scratch_grad itself); one that cannot be loaded exits 2."""
    if spec is None:
        return None
    from ..testing.engines import load_engine
    try:
        return load_engine(spec)
    except Exception as exc:  # noqa: BLE001 - any failure to load the adapter is a bad option
        parser.error(f"--engine {spec}: {exc}")


def validate(parser, args, needs=("torch",)):
    """Every shared option of `args`, before any work (see the module's docstring for the order). Returns
    the engine adapter (None: scratch_grad); `args.ops` becomes the checked list (each name once)."""
    for name in OUTPUT_FILES:
        path = getattr(args, name, None)
        problem = path not in (None, "-") and output_path_problem(path)
        if problem:
            parser.error(f"--{name} {path}: {problem}")
    reproducers = getattr(args, "reproducers", None)
    problem = reproducers is not None and directory_problem(reproducers)
    if problem:
        parser.error(f"--reproducers {reproducers}: {problem}")
    require(parser, needs)
    load_imports(parser, getattr(args, "imports", None) or [])
    if getattr(args, "ops", None):
        args.ops = check_ops(parser, args.ops)
    return load_engine_option(parser, getattr(args, "engine", None))
