"""Linear algebra: matmul (1-D, 2-D, batched with broadcast batch dims) and einsum."""
import functools
import math
import string

import numpy as np

from .lazy_torch import torch
from .registry import FINITE, OpSpec, export, refuse_keywords, register
from .shape import reshape, transpose
from ..engine import Variable, raw
from ..errors import ShapeError


def _swap_last(x):
    ndim = raw(x).ndim
    return transpose(x, axes=tuple(range(ndim - 2)) + (ndim - 1, ndim - 2))


def _as_matrices(g, x, y):
    """Promote 1-D operands as matmul does ((k,) -> (1, k) on the left, (k, 1) on the right) and give
    g the matching (..., n, m) shape."""
    x_vec, y_vec = raw(x).ndim == 1, raw(y).ndim == 1
    x2 = reshape(x, (1,) + raw(x).shape) if x_vec else x
    y2 = reshape(y, raw(y).shape + (1,)) if y_vec else y
    g_shape = raw(g).shape
    if x_vec:
        g_shape = g_shape[:-1] + (1,) + g_shape[-1:] if not y_vec else (1, 1)
    if y_vec:
        g_shape = g_shape + (1,) if not x_vec else (1, 1)
    return (reshape(g, g_shape) if g_shape != raw(g).shape else g), x2, y2


def _matmul_vjp_x(g, out, x, y):
    if x.ndim == 2 and y.ndim == 2:
        return g @ y.T                            # the common case; .ndim and .T work on arrays and Variables
    g2, x2, y2 = _as_matrices(g, x, y)
    gx = g2 @ _swap_last(y2)                      # (..., n, k); the engine sums broadcast batch dims
    if raw(x).ndim == 1:
        gx = reshape(gx, raw(gx).shape[:-2] + raw(gx).shape[-1:])
    return gx


def _matmul_vjp_y(g, out, x, y):
    if x.ndim == 2 and y.ndim == 2:
        return x.T @ g
    g2, x2, y2 = _as_matrices(g, x, y)
    gy = _swap_last(x2) @ g2                      # (..., k, m)
    if raw(y).ndim == 1:
        gy = reshape(gy, raw(gy).shape[:-1])
    return gy


def _matmul_forward(x, y):
    try:
        return np.matmul(x, y)
    except ValueError:   # checked only on failure: the hot path is the bare matmul
        if getattr(x, "ndim", 0) == 0 or getattr(y, "ndim", 0) == 0:
            raise ValueError("matmul needs arrays of at least 1 dimension (use mul for scalars)") from None
        raise


def _matmul_sample(gen):
    # edge mode: size 0 sides too (a contraction over k = 0 gives zeros)
    n, k, m = (gen.integer(0 if gen.edges else 1, 4) for _ in range(3))
    batch_x, batch_y = gen.broadcastable_shapes(2, max_dims=2, min_side=0)
    form = gen.choice(["matrix", "vector-left", "vector-right", "vector-both"])
    x_shape = (k,) if form in ("vector-left", "vector-both") else tuple(batch_x) + (n, k)
    y_shape = (k,) if form in ("vector-right", "vector-both") else tuple(batch_y) + (k, m)
    return (gen.array(x_shape, FINITE), gen.array(y_shape, FINITE)), {}


# FINITE: an infinite entry times a zero is NaN, so a product's gradient is NaN for reasons unrelated to the VJP
matmul = register(OpSpec("matmul", _matmul_forward, (_matmul_vjp_x, _matmul_vjp_y), torch.matmul, (FINITE, FINITE),
                         "matmul", sample=_matmul_sample, method=True))


# ---- einsum ----------------------------------------------------------------------------------------
_LETTERS = string.ascii_uppercase + string.ascii_lowercase   # ASCII order: numpy's implicit-output order


@functools.lru_cache(maxsize=1024)
def _einsum_plan(subscripts, shapes):
    """The explicit form of `subscripts` for operands of these shapes: one letter string per operand
    and one for the output, '...' replaced by letters (right-aligned, so ellipsis dimensions broadcast),
    an implicit output made explicit by NumPy's rule (ellipsis dims, then letters used once, sorted).
    Also returns every letter's size (the largest, where size-1 dimensions broadcast)."""
    def fail(message):
        raise ShapeError(f"op 'einsum' with subscripts {subscripts!r} on operands of shapes "
                         f"{list(shapes)}: {message}")

    text = subscripts.replace(" ", "")
    if text.count("->") > 1:
        fail("more than one '->'")
    lhs, arrow, rhs = text.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        fail(f"{len(terms)} operand subscripts but {len(shapes)} operands")
    for term in terms + [rhs]:
        letters_only = term.replace("...", "", 1)
        bad = [c for c in letters_only if c not in _LETTERS]
        if bad:
            fail(f"invalid character {bad[0]!r} in {term!r} (use letters, ',' '->' and one '...' per term)")

    ellipsis_dims = 0
    for k, (term, shape) in enumerate(zip(terms, shapes)):
        explicit = len(term.replace("...", ""))
        if ("..." in term and len(shape) < explicit) or ("..." not in term and len(shape) != explicit):
            fail(f"operand {k} has {len(shape)} dimensions but its subscripts {term!r} name {explicit}")
        if "..." in term:
            ellipsis_dims = max(ellipsis_dims, len(shape) - explicit)
    spare = [c for c in _LETTERS if c not in text]
    if ellipsis_dims > len(spare):
        fail("not enough unused letters to name the ellipsis dimensions")
    ellipsis = "".join(spare[:ellipsis_dims])
    expanded = []
    for term, shape in zip(terms, shapes):
        if "..." in term:
            own = len(shape) - (len(term) - 3)
            term = term.replace("...", ellipsis[ellipsis_dims - own:])
        expanded.append(term)

    if arrow:
        if ellipsis_dims and "..." not in rhs:
            fail("the operands have '...' dimensions but the output does not say where they go")
        output = rhs.replace("...", ellipsis)
        for c in output:
            if output.count(c) > 1:
                fail(f"output index {c!r} appears more than once")
            if not any(c in term for term in expanded):
                fail(f"output index {c!r} appears in no operand")
    else:
        named = "".join(t.replace("...", "") for t in terms)
        output = ellipsis + "".join(sorted(c for c in set(named) if named.count(c) == 1))

    sizes = {}
    for k, (term, shape) in enumerate(zip(expanded, shapes)):
        for c, n in zip(term, shape):
            seen = sizes.get(c)
            if seen is not None and seen[0] != n and 1 not in (seen[0], n):
                fail(f"index {c!r} has size {seen[0]} in operand {seen[1]} but size {n} in operand {k}")
            if seen is None or seen[0] == 1:
                sizes[c] = (n, k)
    return tuple(expanded), output, {c: n for c, (n, _) in sizes.items()}


def _einsum_forward(*operands, subscripts):
    if not operands:
        raise ShapeError(f"op 'einsum' with subscripts {subscripts!r}: needs at least one operand")
    terms, output, _ = _einsum_plan(subscripts, tuple(np.shape(x) for x in operands))
    # optimize: contract pairwise with BLAS (tensordot) instead of one nested loop over all indices
    return np.einsum(",".join(terms) + "->" + output, *operands, optimize=len(operands) > 1)


def _einsum_vjp(g, out, *xs, index, subscripts):
    """Gradient of one operand, itself an einsum: g (with the output's subscripts) times the other
    operands, summed over every index the operand does not have.

    Two index patterns need constant helper operands:
    - an index repeated in the operand ('ii', 'iij') reads a diagonal, so its gradient lives on that
      diagonal: each repeat gets a fresh letter tied to the first by an identity matrix (a Kronecker
      delta), e.g. for 'ii->i' the gradient is einsum('i,ia->ia', g, eye);
    - an index no other factor carries at the operand's full size (summed away only in this operand,
      or size 1 elsewhere by broadcasting) is spread by a ones vector, e.g. 'ij->i' gives
      einsum('i,j->ij', g, ones).
    The constants are raw arrays, so with create_graph the gradient stays an einsum of g and the other
    operands: differentiable again."""
    shapes = tuple(np.shape(raw(x)) for x in xs)
    terms, output, _ = _einsum_plan(subscripts, shapes)
    target, target_shape = terms[index], shapes[index]
    dtype = raw(g).dtype
    operands = [g] + [x for k, x in enumerate(xs) if k != index]
    subs = [output] + [t for k, t in enumerate(terms) if k != index]
    operand_shapes = [np.shape(raw(g))] + [s for k, s in enumerate(shapes) if k != index]

    spare = iter(c for c in _LETTERS if c not in "".join(terms) + output)
    result = ""
    for axis, c in enumerate(target):
        if c in target[:axis]:
            fresh = next(spare)
            operands.append(np.eye(target_shape[axis], dtype=dtype))
            subs.append(c + fresh)
            operand_shapes.append((target_shape[axis],) * 2)
            result += fresh
        else:
            result += c
    for axis, c in enumerate(target):
        if c in target[:axis]:
            continue
        # -1 where no factor carries c: a ones vector must then name it, also at size 0 ('j->' on an
        # empty operand: the gradient is einsum(',j->j', g, ones(0)))
        supplied = max((shape[sub.index(c)] for sub, shape in zip(subs, operand_shapes) if c in sub),
                       default=-1)
        if supplied < target_shape[axis]:
            operands.append(np.ones(target_shape[axis], dtype=dtype))
            subs.append(c)
    # the engine sums dimensions where this operand had size 1 and the result is broadcast
    return _einsum(*operands, subscripts=",".join(subs) + "->" + result)


_EINSUM_LETTERS = "ijkabAB"   # both cases: implicit outputs sort uppercase first (ASCII)


def _einsum_subscripts(gen):
    """Random subscripts: 1-3 operands of 0-3 indices drawn from a few letters, so that indices repeat
    within an operand (diagonals, traces) and across operands (contractions); '...' in some operands
    (then the output has it too); an implicit output, or an explicit one in a random order
    (transposed: 'ij->ji', 'ba'), keeping any subset of the indices."""
    letters = [_EINSUM_LETTERS[k] for k in gen.permutation(len(_EINSUM_LETTERS))[:gen.integer(1, 4)]]
    terms = []
    for _ in range(gen.integer(1, 3)):
        term = "".join(gen.choice(letters) for _ in range(gen.integer(0, 3)))
        if gen.integer(0, 3) == 3:
            at = gen.integer(0, len(term))
            term = term[:at] + "..." + term[at:]
        terms.append(term)
    lhs = ",".join(terms)
    if gen.boolean():
        return lhs
    used = [c for c in letters if c in lhs]
    kept = [c for c in used if gen.boolean()]
    output = [kept[k] for k in gen.permutation(len(kept))]
    if "..." in lhs:
        output.insert(gen.integer(0, len(output)), "...")
    return lhs + "->" + "".join(output)


def _einsum_sample(gen):
    subscripts = _einsum_subscripts(gen)
    lhs = subscripts.split("->")[0].split(",")
    # each index has one size (0 in edge mode: an empty contraction); an operand may have size 1
    # where the index is not repeated in it, broadcast against the others (NumPy and torch allow it)
    sizes = {c: gen.integer(0 if gen.edges else 1, 3) for c in sorted(set(subscripts)) if c in _LETTERS}
    with_ellipsis = [k for k, term in enumerate(lhs) if "..." in term]
    ellipsis_shapes = dict(zip(with_ellipsis, gen.broadcastable_shapes(len(with_ellipsis), max_dims=2)))
    operands = []
    for k, term in enumerate(lhs):
        head, _, tail = term.partition("...")
        named = head + tail

        def side(c):
            return 1 if named.count(c) == 1 and gen.integer(0, 5) == 5 else sizes[c]
        shape = tuple(side(c) for c in head) + tuple(ellipsis_shapes.get(k, ())) + tuple(side(c) for c in tail)
        operands.append(gen.array(shape, FINITE))
    return tuple(operands), {"subscripts": subscripts}


# variadic: the registry call is einsum(*operands, subscripts=...); `einsum` below is NumPy's order
_einsum = register(OpSpec(
    "einsum", _einsum_forward, (_einsum_vjp,), lambda *xs, subscripts: torch.einsum(subscripts, *xs), (FINITE,),
    "matmul", sample=_einsum_sample, variadic=True,
    examples=(
        ((np.ones(0),), {"subscripts": "j->"}),                     # an index summed away at size 0
        ((np.ones((2, 0)), np.ones((0, 3))), {"subscripts": "ij,jk->ik"}),   # an empty contraction
    )))


@export
def einsum(subscripts, *operands, **unknown):
    """np.einsum / torch.einsum: 'ij,jk->ik', implicit output ('ij,jk'), repeated indices
    (diagonals, traces: 'ii->i', 'ii'), and '...' with broadcasting."""
    if unknown:
        raise refuse_keywords("einsum", unknown, ())
    return _einsum(*operands, subscripts=subscripts)


# ---- linear: x @ weight.T + bias in one node (torch.nn.functional.linear's layout: weight is (out, in)) ----
def _linear_forward(x, weight, bias=None):
    if np.ndim(weight) != 2 or np.ndim(x) < 1 or np.shape(x)[-1] != np.shape(weight)[1]:
        raise ValueError(f"linear needs x (..., in) and weight (out, in); got x {np.shape(x)}, weight {np.shape(weight)}")
    out = x @ weight.T
    if bias is not None:
        if np.shape(bias) != (np.shape(weight)[0],):
            raise ValueError(f"bias must have shape ({np.shape(weight)[0]},), got {np.shape(bias)}")
        out += bias   # out is a fresh buffer: adding in place saves a temporary
    return out


def _linear_vjp_weight(g, out, x, weight, bias=None):
    # sum over every batch position of the outer product g x^T; the batch size is explicit, as -1
    # cannot be inferred when a feature count is 0
    n_out, n_in = raw(weight).shape
    batch = math.prod(raw(x).shape[:-1])
    return transpose(reshape(g, (batch, n_out))) @ reshape(x, (batch, n_in))


def _linear_sample(gen):
    # with and without the bias (linear(x, weight)); x with no batch dimension, or an empty batch
    batch = gen.shape(max_dims=2, min_side=0)
    n_in, n_out = gen.integer(1, 4), gen.integer(1, 4)
    inputs = (gen.array(tuple(batch) + (n_in,), FINITE), gen.array((n_out, n_in), FINITE))
    if gen.choice([True, False]):
        inputs += (gen.array((n_out,), FINITE),)
    return inputs, {}


# the bias gradient is g itself: the engine sums it over the batch dims (broadcasting handled once)
linear = register(OpSpec(
    "linear", _linear_forward,
    (lambda g, out, x, weight, bias=None: g @ weight, _linear_vjp_weight, lambda g, out, x, weight, bias=None: g),
    torch.nn.functional.linear, (FINITE, FINITE, FINITE), "nn", sample=_linear_sample,
    examples=(
        ((np.ones((4, 0)), np.ones((2, 0)), np.array([0.5, -1.0])), {}),    # no input features
        ((np.ones((0, 3)), np.ones((2, 3)), np.array([0.5, -1.0])), {}),    # an empty batch
    )))
