"""``--baseline REF``: the engine as committed at a git ref, timed side by side with the working tree.

Machine noise here moves a 100 µs step by 10-40% between runs, far more than most engine changes;
timed in one process, interleaved round-robin with the working tree, a change of 1-2 µs shows. The
ref's ``scratch_grad/`` is exported with ``git archive`` into a temporary directory under another
package name (the engine imports itself only relatively), and a second copy of
``impl_scratch_grad`` is pointed at it, so both run the very same benchmark code.
"""
import importlib
import importlib.util
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from benchmarks.implementations import Implementation, LoadedImplementation

REPO = Path(__file__).resolve().parent.parent
_exports = []   # keeps each TemporaryDirectory alive while its package is imported


class BaselineError(RuntimeError):
    pass


PREFIX = "scratch_grad@"


def label_for(ref):
    return PREFIX + ref


def ref_of(label):
    """The git ref of a baseline label ("scratch_grad@HEAD~3" -> "HEAD~3"), or None for any other label."""
    return label[len(PREFIX):] if label.startswith(PREFIX) else None


def load_baseline(ref):
    """A LoadedImplementation running scratch_grad as committed at ``ref`` (or an "unavailable" one, with why)."""
    spec = Implementation(label_for(ref), "benchmarks.impl_scratch_grad", "scratch_grad", optional=False)
    try:
        package = _import_engine_at(ref)
    except BaselineError as error:
        return LoadedImplementation(spec, "unavailable", str(error))
    impl_path = Path(__file__).with_name("impl_scratch_grad.py")
    module_spec = importlib.util.spec_from_file_location(f"benchmarks._impl_{package.__name__}", impl_path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    module.sg = package           # its functions look `sg` up at call time
    module.NAME = label_for(ref)
    commit = _git("rev-parse", "--short", f"{ref}^{{commit}}").strip()
    module.version = lambda: f"{getattr(package, '__version__', 'dev')} at {commit}"
    return LoadedImplementation(spec, "available", module=module)


def _git(*args):
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BaselineError("git is not installed") from None
    if done.returncode != 0:
        raise BaselineError(f"git {' '.join(args)}: {done.stderr.strip() or 'failed'}")
    return done.stdout


def _import_engine_at(ref):
    _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    name = "scratch_grad_at_" + re.sub(r"\W", "_", ref)
    if name in sys.modules:
        return sys.modules[name]
    export = tempfile.TemporaryDirectory(prefix="scratch_grad_baseline_")
    _exports.append(export)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref, "scratch_grad"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise BaselineError(f"git archive {ref} scratch_grad: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}   # Python >= 3.11.4
        tar.extractall(export.name, **safe)
    (Path(export.name) / "scratch_grad").rename(Path(export.name) / name)
    sys.path.insert(0, export.name)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(export.name)
