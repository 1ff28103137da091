"""The engine's contract: what torch's gradcheck and MyGrad's test factories check besides the values.

On every checked program (findings of check "invariants", one per violation, or one passing finding):

- reentrant: backward run twice over the same graph (retain_graph) gives bit-identical gradients
  (gradcheck's nondet check): a VJP that changes saved values or its in-flowing buffer shows here;
- a zero cotangent gives exactly zero gradients wherever the gradient exists (torch's gradient for the
  real cotangent is finite there; at sqrt(0) 0 * inf is NaN in torch too);
- nothing is mutated: the inputs, the constants and the cotangent hold the same bits after backward
  (MyGrad's factories assert this of the inputs and the seed gradient);
- nothing is aliased: a returned gradient shares memory with no input, constant, cotangent or other
  gradient (MyGrad's "gradients are not views of each other or of the seed");
- each VJP of a single op, called directly on raw arrays, returns an array in its input's dtype, of a
  shape that reduces to its input's shape: the engine casts and reduces VJP results, which would hide a
  float32 VJP that silently computes in float64 (gradcheck's check_grad_dtypes, one level down).
Gradients' dtypes and shapes as the engine returns them are compared in oracle.py.
"""
import numpy as np

from .faults import raised_by_checker
from .findings import Finding, raised

CHECK = "invariants"


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def _violation(index, shape, dtype, what, detail):
    return Finding(CHECK, index, tuple(shape), str(dtype), False, np.inf, what, detail=detail)


def _snapshot(values):
    return [np.array(v, copy=True) if isinstance(v, np.ndarray) else v for v in values]


def _shares(a, b):
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or a.size == 0 or b.size == 0:
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=10_000))
    except np.exceptions.TooHardError:
        return True


def snapshot(program):
    """Copies of the program's constants and cotangents, taken before anything ran on them: a write into
    them that a later run repeats (a VJP returning g with its result written in) is seen only so."""
    return _snapshot(program.constants), _snapshot(program.cotangents)


def check(program, torch_gradients=None, before=None):
    """The invariant findings of `program` (see the module doc); torch_gradients: torch's float64
    gradients for the program's cotangent, which say where a gradient exists (finite); before: the
    `snapshot` taken before the program first ran (default: now)."""
    from ..engine import Variable, grad
    dtype = program.dtype
    findings = []
    wanted = program.differentiable_leaves()
    if not wanted:
        return findings
    constants, cotangents = before if before is not None else snapshot(program)
    try:
        variables, outputs = program.run_scratch()
        leaves_before = [np.array(v._data, copy=True) for v in variables]
        live = [(o, c) for o, c in zip(outputs, program.cotangents) if isinstance(o, Variable) and o.requires_grad]
        if not live:
            return findings
        targets = [variables[k] for k in wanted]
        seeds = [np.asarray(c) for _, c in live]
        first = grad([o for o, _ in live], targets, grad_outputs=seeds, retain_graph=True, allow_unused=True)
        again = grad([o for o, _ in live], targets, grad_outputs=seeds, retain_graph=True, allow_unused=True)
        zeros = grad([o for o, _ in live], targets, grad_outputs=[np.zeros_like(s) for s in seeds],
                     allow_unused=True)
    except Exception as exc:  # noqa: BLE001 - the engine raised: a finding, not a crash
        if raised_by_checker(exc):
            raise
        return [raised(CHECK, -1, (), dtype, "scratch_grad", exc)]

    for j, k in enumerate(wanted):
        a, b, z = first[j], again[j], zeros[j]
        shape = program.leaves[k].shape
        if (a is None) != (b is None) or (a is not None and not _same_bits(a, b)):
            findings.append(_violation(k, shape, dtype, "not reentrant (backward run twice over the same graph "
                                       "gave different gradients)", _first_difference(a, b)))
        if z is not None:
            exists = np.ones(np.shape(z), dtype=bool)
            if torch_gradients is not None and np.shape(torch_gradients[j]) == np.shape(z):
                # finite in the checked dtype: -1/x^2 at x = 1e-38 overflows float32, and 0 * inf is NaN
                with np.errstate(invalid="ignore", over="ignore"):
                    exists = np.isfinite(np.asarray(torch_gradients[j], dtype=np.float64).astype(dtype))
            bad = exists & (np.asarray(z) != 0)
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                findings.append(_violation(k, shape, dtype, "non-zero gradient from a zero cotangent",
                                           f"entry {where}: {np.asarray(z)[where]!r} (expected exactly 0)"))
    _mutation_findings(program, variables, leaves_before, constants, cotangents, findings)
    _aliasing_findings(program, variables, wanted, first, findings)
    if len(program.steps) == 1:
        findings.extend(_vjp_contract(program))
    if not findings:
        findings.append(Finding(CHECK, -1, (), str(dtype), True, 0.0, "agree"))
    return findings


def _first_difference(a, b):
    if a is None or b is None:
        return "one run returned no gradient"
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return f"shapes {a.shape} and {b.shape}"
    differs = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    where = tuple(int(i) for i in np.argwhere(differs)[0]) if differs.any() else ()
    return f"entry {where}: {a[where]!r} then {b[where]!r}"


def _mutation_findings(program, variables, leaves_before, constants, cotangents, findings):
    dtype = program.dtype
    for k, (v, before) in enumerate(zip(variables, leaves_before)):
        if not _same_bits(v._data, before):
            findings.append(_violation(k, before.shape, dtype, "input mutated (a leaf's values changed during "
                                       "backward)", _first_difference(before, v._data)))
    for k, (now, before) in enumerate(zip(program.constants, constants)):
        if isinstance(before, np.ndarray) and not _same_bits(now, before):
            findings.append(_violation(-1, before.shape, dtype, f"constant {k} mutated during backward",
                                       _first_difference(before, now)))
    for k, (now, before) in enumerate(zip(program.cotangents, cotangents)):
        if not _same_bits(now, before):
            findings.append(_violation(-1, np.shape(before), dtype, f"cotangent {k} mutated (the in-flowing "
                                       "gradient was written into)", _first_difference(before, now)))


def _aliasing_findings(program, variables, wanted, gradients, findings):
    dtype = program.dtype
    others = [("input", k, v._data) for k, v in enumerate(variables)]
    others += [("input", k, v._base) for k, v in enumerate(variables) if v._base is not None]
    others += [("constant", k, c) for k, c in enumerate(program.constants) if isinstance(c, np.ndarray)]
    others += [("cotangent", k, np.asarray(c)) for k, c in enumerate(program.cotangents)]
    for j, (k, g) in enumerate(zip(wanted, gradients)):
        if not isinstance(g, np.ndarray):
            continue
        shared = [(what, i) for what, i, a in others if _shares(g, a)]
        shared += [("gradient of input", wanted[i]) for i, h in enumerate(gradients)
                   if i != j and isinstance(h, np.ndarray) and _shares(g, h)]
        if shared:
            names = ", ".join(f"{what} {i}" for what, i in shared)
            findings.append(_violation(k, g.shape, dtype, "gradient aliases other memory",
                                       f"the returned gradient shares memory with {names}"))


def _read_only(value):
    """A read-only copy, as the engine hands saved inputs to VJPs (a VJP writing into one raises)."""
    if not isinstance(value, np.ndarray):
        return value
    value = value.copy()
    value.flags.writeable = False
    return value


def _vjp_contract(program):
    """Each VJP of the program's single op on raw arrays: its result's dtype is its input's, and its
    shape reduces to the input's (the engine would hide both by casting and summing)."""
    from ..engine import sum_to_array
    step = program.steps[0]
    spec = step.spec
    args = [_read_only(program.leaves[r.index] if r.kind == "leaf" else program.constants[r.index])
            for r in step.args]
    dtype = program.dtype
    findings = []
    try:
        with np.errstate(all="ignore"):
            out = _read_only(np.asarray(spec.forward(*args, **step.params)))
    except Exception as exc:  # noqa: BLE001
        if raised_by_checker(exc):
            raise
        return [raised(CHECK, -1, (), dtype, "the op's forward", exc)]
    g = np.asarray(program.cotangents[0], dtype=out.dtype) if program.cotangents else np.ones_like(out)
    vjps = spec.vjps_for(len(args))
    for i, (vjp, r) in enumerate(zip(vjps, step.args)):
        if vjp is None or r.kind != "leaf" or not program.requires_grad[r.index]:
            continue
        x = args[i]
        incoming = g.copy()
        try:
            with np.errstate(all="ignore"):
                result = vjp(incoming, out, *args, **step.params)
        except Exception as exc:  # noqa: BLE001
            if raised_by_checker(exc):
                raise
            findings.append(raised(CHECK, r.index, np.shape(x), dtype, f"the VJP for input {i}", exc))
            continue
        if not _same_bits(incoming, g):
            findings.append(_violation(r.index, x.shape, dtype, f"VJP for input {i} wrote into its in-flowing "
                                       "gradient g", _first_difference(g, incoming)))
        result = np.asarray(result)
        if result.dtype != x.dtype:
            findings.append(_violation(r.index, x.shape, dtype, f"VJP result dtype {result.dtype} for a {x.dtype} "
                                       "input", f"the VJP for input {i} computes in {result.dtype}; the engine "
                                       "casts it back, hiding the wrong precision"))
        try:
            sum_to_array(result, x.shape)
        except Exception:  # noqa: BLE001
            findings.append(_violation(r.index, x.shape, dtype, f"VJP result shape {result.shape} does not reduce "
                                       f"to the input's {x.shape}", f"the VJP for input {i}"))
    return findings
