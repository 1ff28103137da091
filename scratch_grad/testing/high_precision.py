"""The fourth reference: an op's own mpmath definition, evaluated and differentiated in high precision.

torch and finite differences can share an error with scratch_grad: a derivative tail that underflows
in all three (tanh'(20) computed as 1 - tanh(20)^2 = 0 in float64, where the true value is 1.7e-17),
or a reference that takes a shortcut (torch's softplus returns x above 20). A registry entry may
therefore declare `mp`, its forward written on mpmath numbers (`OpSpec.mp`); for a single-op program
this module evaluates it at 113 bits and differentiates it numerically, also in high precision
(mpmath.diff with a step relative to the input, evaluated at twice the working precision), so the
reference trusts neither the VJP's formula nor torch's. Kinds:

    elementwise, binary   mp(x, y, ..., **params): one mpmath number per input, entry by entry after
                          broadcasting (array-valued params broadcast too: clip's bounds)
    reduction             mp(values, **params): the list of the entries reduced into one output

Each referenced entry comes with its *magnitude*: the terms summed into it plus its condition number
with respect to its inputs (how much it moves when every input moves by one unit roundoff, measured
on the mpmath function itself). A correct implementation is within a few unit roundoffs of that
magnitude; the oracle compares entry by entry (testing/oracle.py), so a result that lost its
digits in a tail fails even where it is tiny next to the rest of the array.

Entries are not referenced where the derivative does not exist (the one-sided derivatives differ:
kinks, ties; torch's convention decides there), where an input is not finite (inf, NaN: matched
against torch instead), or where mpmath cannot evaluate the definition (an empty mean). mpmath is
slow, so at most MAX_CHECKED entries of each gradient are referenced, and inputs larger than
MAX_ENTRIES are not referenced at all.
"""
from dataclasses import dataclass, field

import numpy as np

PREC = 64                  # bits the reference is accurate to (float64 results carry 53)
WORKING = 2 * PREC + 24    # bits the definition is evaluated at: differences of nearby values stay exact
STEP_BITS = PREC + 8       # difference step: 2^-STEP_BITS times the input's magnitude
# at an input of exactly 0 the step is 2^-ZERO_STEP_BITS: a step of 2^-STEP_BITS there leaves a truncation
# error of h^2 f''' = 2^-144 (x^3 at 0 came out 4.5e-44, not 0), and counted curvature as a kink (cos at 0)
ZERO_STEP_BITS = 2 * STEP_BITS + 128
RESOLVE_ZERO_BITS = 1100    # a derivative computed as 0 is resolved down to 2^-1100 before it is believed
MAX_BITS = 8192            # the most bits a derivative is ever evaluated at
KINK_BITS = 40             # one-sided derivatives further apart than 2^-40 (relative): no derivative here
MAX_ENTRIES = 256          # inputs or outputs larger than this are not referenced
MAX_CHECKED = 8            # entries referenced per output and per gradient (chosen deterministically)
MAX_GROUP = 64             # a broadcast input entry feeding more outputs than this is not referenced
MAX_SLICE = 32             # reductions: entries reduced into one output
KINDS = ("elementwise", "binary", "reduction")
CONDITION_STEP = 2.0 ** -30    # relative perturbation used to measure an entry's condition number


@dataclass
class Referenced:
    """High-precision values of one array: value (float64), magnitude (terms + condition, float64)
    and valid (bool: referenced here)."""
    value: np.ndarray
    magnitude: np.ndarray
    valid: np.ndarray

    @classmethod
    def empty(cls, shape):
        return cls(np.full(shape, np.nan), np.zeros(shape), np.zeros(shape, dtype=bool))


@dataclass
class MpReference:
    forward: list                                   # one Referenced per output
    gradients: dict = field(default_factory=dict)   # leaf index -> Referenced (gradient of L)
    notes: list = field(default_factory=list)

    @property
    def covered(self):
        return any(r.valid.any() for r in self.forward) or any(r.valid.any() for r in self.gradients.values())


def worth_it(program):
    """Whether an ordinary sample is worth the (slow) high-precision reference: it has an entry where
    tails and shortcuts live (|x| > 3, or within 1e-3 of 0), or a non-finite one. The oracle also
    references every fourth sample regardless (`check_program(high_precision_reference="auto")`)."""
    for value in list(program.leaves) + [c for c in program.constants if isinstance(c, np.ndarray)]:
        value = np.asarray(value)
        if value.dtype.kind != "f" or value.size == 0:
            continue
        magnitude = np.abs(value)
        if np.any(~np.isfinite(magnitude) | (magnitude > 3.0) | (magnitude < 1e-3)):
            return True
        # near ties: distinct entries a few ulps apart, where a reduction's derivative exists but float
        # arithmetic may lose it (std of [a, a + ulp]: torch rounds the spread away and says 0)
        flat = np.sort(value.ravel())
        gaps = np.diff(flat)
        if np.any((gaps > 0) & (gaps <= 8 * np.spacing(np.abs(flat[1:])))):
            return True
    return False


def covers(spec):
    """Whether the high-precision reference exists for this op (the parity table says so per op)."""
    return spec.mp is not None and spec.kind in KINDS


def reference(program, rng=None):
    """The MpReference of a single-op program, or None when the op has no mp definition or the
    program is too large. Never raises for the engine's sake: a definition mpmath cannot evaluate at
    some entry leaves that entry unreferenced."""
    if len(program.steps) != 1 or program.outputs != [0]:
        return None
    step = program.steps[0]
    spec = step.spec
    if not covers(spec):
        return None
    import mpmath
    values = [program.leaves[r.index] if r.kind == "leaf" else program.constants[r.index] for r in step.args]
    if any(np.size(v) > MAX_ENTRIES for v in values):
        return None
    rng = np.random.default_rng(0) if rng is None else rng
    leaf_of = {}                      # leaf -> the argument positions it is passed at (x + x: both)
    for k, r in enumerate(step.args):
        if r.kind == "leaf" and program.requires_grad[r.index]:
            leaf_of.setdefault(r.index, []).append(k)
    cotangent = np.asarray(program.cotangents[0], dtype=np.float64)
    with mpmath.workprec(WORKING):
        if spec.kind == "reduction":
            return _reduction_reference(spec, values, step.params, cotangent, leaf_of, rng, mpmath)
        return _elementwise_reference(spec, values, step.params, cotangent, leaf_of, rng, mpmath)


# ---- differentiating in high precision ---------------------------------------------------------------------

class _Point:
    """f at one point (a list of mpmath numbers), with its partial derivatives computed once each."""
    __slots__ = ("f", "args", "value", "partials")

    def __init__(self, f, args):
        self.f, self.args, self.partials = f, args, {}
        self.value = _call(f, args)

    def partial(self, mpmath, k):
        """(derivative, exists) in args[k]: the mean of the one-sided differences at a step of
        2^-STEP_BITS |args[k]|, evaluated at WORKING bits; it exists where they agree (no kink, no tie)."""
        if k not in self.partials:
            self.partials[k] = self._partial(mpmath, k)
        return self.partials[k]

    def _partial(self, mpmath, k):
        if self.value is None or not mpmath.isfinite(self.value):
            return None, False
        result = self._difference(mpmath, k, self.value)
        derivative = result[0]
        if derivative is not None and self.value != 0:
            # the difference of two values of size |f| resolves only 2^-WORKING |f|, so a derivative only
            # down to 2^(STEP_BITS - WORKING) |f| / |x|. Where the derivative is tiny next to f / x
            # (tanh'(20) = 1.7e-17 beside tanh(20) = 1; exp'(1e-308) = 1 beside exp(1e-308) / 1e-308 =
            # 1e308) more bits are needed. A derivative that came out 0 is believed only once it is resolved
            # below float64's smallest subnormal (2^-1074).
            scale = abs(self.args[k]) if self.args[k] != 0 else mpmath.mpf(1)
            wanted = abs(derivative) * mpmath.ldexp(1, -PREC) if derivative else mpmath.ldexp(1, -RESOLVE_ZERO_BITS)
            bits = int(mpmath.log(abs(self.value) / (scale * wanted), 2)) + _step_bits(self.args[k]) + 8
            if bits > WORKING:
                with mpmath.workprec(min(bits, MAX_BITS)):
                    result = self._difference(mpmath, k, _call(self.f, self.args))
        return result

    def _difference(self, mpmath, k, value):
        if value is None or not mpmath.isfinite(value):
            return None, False
        base = self.args[k]
        if base == 0 and mpmath.mp.prec < ZERO_STEP_BITS + PREC + 24:
            with mpmath.workprec(ZERO_STEP_BITS + PREC + 24):   # f(h) - f(0) resolved at the tiny step
                return self._difference(mpmath, k, _call(self.f, self.args))
        step = mpmath.ldexp(abs(base) if base != 0 else mpmath.mpf(1), -_step_bits(base))
        moved = []
        for sign in (1, -1):
            args = list(self.args)
            args[k] = base + sign * step
            shifted = _call(self.f, args)
            if shifted is None or not mpmath.isfinite(shifted):
                return None, False
            moved.append(shifted)
        right = (moved[0] - value) / step
        left = (value - moved[1]) / step
        if abs(left - right) > mpmath.ldexp(abs(left) + abs(right), -KINK_BITS) + mpmath.ldexp(1, -WORKING):
            return None, False                      # a kink or a tie: the derivative does not exist here
        derivative = (left + right) / 2
        if base == 0 and abs(derivative) < mpmath.ldexp(step, 8):
            derivative = mpmath.mpf(0)   # x^3 at 0 gives h^2: within the truncation error of a step h
        return derivative, True


def _step_bits(base):
    return STEP_BITS if base != 0 else ZERO_STEP_BITS


def _condition(mpmath, point, k, partial, floats):
    """How far the partial moves when the float inputs move independently by a relative amount, per unit
    of that amount: the rounding of its inputs a computation makes (or of the values it derives from
    them, such as a mean), magnified. Measured along two sign patterns of the perturbation (all up,
    alternating), the larger kept: one pattern can cancel, as scaling a whole row cancels in its
    variance's derivative."""
    worst = mpmath.mpf(0)
    order = sorted(floats)
    for pattern in ((lambda n: 1), (lambda n: (-1) ** n)):
        steps = {j: 1 + pattern(n) * mpmath.mpf(CONDITION_STEP) for n, j in enumerate(order)}
        moved = _Point(point.f, [a * steps[j] if j in steps else a for j, a in enumerate(point.args)])
        value, exists = moved.partial(mpmath, k)
        if not exists:
            return max(worst, abs(partial))
        worst = max(worst, abs(value - partial) / mpmath.mpf(CONDITION_STEP))
        if len(order) == 1:
            break
    return worst


def _mp_number(mpmath, value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return mpmath.mpf(float(value))


def _finite(mpmath, values):
    return all(isinstance(v, (bool, int)) or mpmath.isfinite(v) for v in values)


def _call(f, args):
    try:
        value = f(*args)
    except (ZeroDivisionError, ValueError, TypeError, ArithmeticError):
        return None
    # a complex value (a negative base to a fractional power, where a difference step crossed 0) is
    # outside the op's real domain: no reference there
    import mpmath  # a test dependency, imported only where the reference runs
    return None if isinstance(value, mpmath.mpc) else value


def _choose(size, rng):
    """Up to MAX_CHECKED flat positions of an array of `size` entries, deterministic for rng."""
    if size <= MAX_CHECKED:
        return list(range(size))
    return sorted(int(i) for i in rng.choice(size, size=MAX_CHECKED, replace=False))


# ---- elementwise and binary ops -------------------------------------------------------------------------

def _elementwise_reference(spec, values, params, cotangent, leaf_of, rng, mpmath):
    array_params = {key: v for key, v in params.items() if isinstance(v, np.ndarray)}
    scalar_params = {key: v for key, v in params.items() if key not in array_params}
    names = list(array_params)
    operands = [np.asarray(v) for v in values] + [array_params[key] for key in names]
    try:
        shape = np.broadcast_shapes(*[o.shape for o in operands])
    except ValueError:
        return None
    if shape != cotangent.shape or int(np.prod(shape)) > MAX_ENTRIES:
        return None
    n_inputs = len(values)
    floats = {k for k, o in enumerate(operands[:n_inputs]) if o.dtype.kind == "f"}
    broadcast = [np.broadcast_to(o, shape) for o in operands]

    def f(*args):
        extra = dict(zip(names, args[n_inputs:]))
        return spec.mp(*args[:n_inputs], **scalar_params, **extra)

    points = {}

    def point(e):
        """The _Point of output entry e (None where an input is not finite)."""
        if e not in points:
            args = [_mp_number(mpmath, b[e]) for b in broadcast]
            points[e] = _Point(f, args) if _finite(mpmath, args) else None
        return points[e]

    forward = Referenced.empty(shape)
    size = int(np.prod(shape))
    for flat in _choose(size, rng):
        e = tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()
        p = point(e)
        if p is None or p.value is None or not (mpmath.isfinite(p.value) or mpmath.isinf(p.value)):
            continue
        magnitude = abs(p.value)
        for k in floats:
            partial, exists = p.partial(mpmath, k)
            if exists:
                magnitude += abs(p.args[k] * partial)
        forward.value[e], forward.magnitude[e], forward.valid[e] = float(p.value), float(magnitude), True

    reference = MpReference([forward])
    for leaf, ks in leaf_of.items():
        if not set(ks) <= floats:
            continue
        x = np.asarray(values[ks[0]])
        result = Referenced.empty(x.shape)
        # the output entries each input entry is broadcast to (its gradient sums over them)
        owner = np.broadcast_to(np.arange(x.size).reshape(x.shape), shape)
        for flat in _choose(x.size, rng):
            position = np.unravel_index(flat, x.shape) if x.ndim else ()
            group = [tuple(int(i) for i in e) for e in zip(*np.nonzero(owner == flat))] if shape else [()]
            if len(group) > MAX_GROUP:
                continue
            total = magnitude = mpmath.mpf(0)
            exists = True
            for e in group:
                p = point(e)
                weight = mpmath.mpf(float(cotangent[e]))
                for k in ks:
                    partial, exists = p.partial(mpmath, k) if p is not None else (None, False)
                    if not exists:
                        break
                    total += weight * partial
                    magnitude += abs(weight * partial) + abs(weight) * _condition(mpmath, p, k, partial, floats)
                if not exists:
                    break
            if exists:
                result.value[position], result.magnitude[position] = float(total), float(magnitude)
                result.valid[position] = True
        reference.gradients[leaf] = result
    return reference


# ---- reductions -------------------------------------------------------------------------------------------

def _reduced_axes(ndim, axis):
    if axis is None or ndim == 0:      # a 0-d input reduces over nothing (torch accepts dim 0 and -1 there)
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(sorted({int(a) % ndim for a in axes}))


def _reduction_reference(spec, values, params, cotangent, leaf_of, rng, mpmath):
    x = np.asarray(values[0])
    if x.dtype.kind != "f":
        return None
    axis, keepdims = params.get("axis"), params.get("keepdims", False)
    other = {key: v for key, v in params.items() if key not in ("axis", "keepdims")}
    axes = _reduced_axes(x.ndim, axis)
    kept = tuple(a for a in range(x.ndim) if a not in axes)
    out_shape = tuple(x.shape[a] for a in kept)
    slice_size = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    if slice_size > MAX_SLICE or slice_size == 0:
        return None
    order = kept + axes
    flat = (np.transpose(x, order) if x.ndim else x).reshape(out_shape + (slice_size,))
    positions = np.arange(x.size).reshape(x.shape)
    positions = (np.transpose(positions, order) if x.ndim else positions).reshape(out_shape + (slice_size,))
    full_shape = tuple(1 if a in axes else n for a, n in enumerate(x.shape)) if keepdims else out_shape
    if cotangent.shape != full_shape:
        return None
    c = cotangent.reshape(out_shape)

    def f(*entries):
        return spec.mp(list(entries), **other)

    forward = Referenced.empty(out_shape)
    result = Referenced.empty(x.shape)
    chosen = set(_choose(x.size, rng))
    outputs = set(_choose(int(np.prod(out_shape)), rng))
    for o_flat, o in enumerate(np.ndindex(*out_shape)):
        needed = [i for i, position in enumerate(positions[o]) if int(position) in chosen]
        if o_flat not in outputs and not needed:
            continue
        args = [_mp_number(mpmath, v) for v in flat[o]]
        if not _finite(mpmath, args):
            continue
        p = _Point(f, args)
        if p.value is None or not (mpmath.isfinite(p.value) or mpmath.isinf(p.value)):
            continue
        floats = set(range(len(args)))
        if o_flat in outputs:
            magnitude = abs(p.value)
            for i in range(len(args)):
                partial, exists = p.partial(mpmath, i)
                if exists:
                    magnitude += abs(args[i] * partial)
            forward.value[o], forward.magnitude[o], forward.valid[o] = float(p.value), float(magnitude), True
        weight = mpmath.mpf(float(c[o]))
        for i in needed:
            partial, exists = p.partial(mpmath, i)
            if not exists:
                continue
            where = np.unravel_index(int(positions[o][i]), x.shape) if x.ndim else ()
            result.value[where] = float(weight * partial)
            result.magnitude[where] = float(abs(weight * partial)
                                            + abs(weight) * _condition(mpmath, p, i, partial, floats))
            result.valid[where] = True
    forward = Referenced(*(a.reshape(full_shape) for a in (forward.value, forward.magnitude, forward.valid)))
    reference = MpReference([forward])
    for leaf, ks in leaf_of.items():
        if ks == [0]:
            reference.gradients[leaf] = result
    return reference
