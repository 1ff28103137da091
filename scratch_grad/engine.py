"""The reverse-mode engine: Variable, the graph nodes ops record, and backprop over the reversed graph.

Design (HIPS autograd's): every op is one registry entry whose forward and VJPs are written with
NumPy operators and scratch_grad functions. Called on raw ndarrays those functions run NumPy at full
speed; called on Variables they record the op on their result. Backprop hands VJPs raw arrays, or
Variables when `create_graph=True`, so the gradient is itself differentiable (grad-of-grad) with no
extra code.
"""
from __future__ import annotations

import heapq
import itertools
import operator
import types
import weakref

import numpy as np

from .errors import AxisError, DTypeError, GraphError, ScratchGradError, ShapeError, describe

__all__ = ["Variable", "grad", "no_grad", "enable_grad", "is_grad_enabled", "apply", "sum_to",
           # the op table the ops fill (ops/registry.py), and Variable's operators read:
           "OPS", "define_op", "undefine_op", "VARIABLE_OPERATORS",
           # the recording API the layers above build on (ops' registry, sg.compile):
           "mode", "raw", "record", "new_variable", "constant_input", "saved_copy", "next_seq", "fit_array",
           "fit_variable", "sum_to_array", "forward_error"]


class _Mode:
    """The engine's global switches. One instance, not class attributes: every backward writes them,
    and writing a class attribute invalidates CPython's cached lookups of that class's attributes at
    every place that reads them (each op reads them), which measurably slowed every step."""
    __slots__ = ("enabled", "checking", "tracing")

    def __init__(self):
        self.enabled = True       # record graphs (False inside no_grad)
        self.checking = True      # domain checks on user calls (off while VJPs run)
        self.tracing = None       # the active sg.compile tracer (compiler/tracing.py), or None


mode = _Mode()


class no_grad:
    """Context manager (and decorator) that records no graph: results do not require grad."""

    def __enter__(self):
        self._previous = mode.enabled
        mode.enabled = False

    def __exit__(self, *exc):
        mode.enabled = self._previous

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)
        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper


class enable_grad(no_grad):
    """Re-enables graph recording inside a no_grad block."""

    def __enter__(self):
        self._previous = mode.enabled
        mode.enabled = True


def is_grad_enabled():
    return mode.enabled


next_seq = itertools.count(1).__next__
# the seq drawn by the latest in-place change of any Variable's data: a node with a larger seq was
# recorded after it, so its inputs still hold the versions it saved and backward skips its check
_last_change = [0]


def _writable(var):
    """The writable array behind `var.data` (made once: a copy for an op's output, which may share
    memory with its inputs). In-place methods write into it and then call `_changed`."""
    if var._base is None:
        var._base = var._data.copy()
        var._data = _read_only_view(var._base)
    return var._base


def _changed(var):
    """Bump var's version so graphs that saved the old data fail at backward (also the versions of the
    Variables that share its counter: see `detach`)."""
    var._version += 1
    family = getattr(var, "_family", None)    # unset on most Variables: not written on the hot path
    if family is not None:
        _bump_family(var, family)
    _last_change[0] = next_seq()
    return var


def _in_place(ufunc, name):
    """An in-place method (`x.add_(y)`): ufunc writes into x's own array, then x's version is bumped."""
    def method(self, other):
        if mode.tracing is not None:
            _traced_write(self, name)
        base = self._base
        if base is None:
            base = _writable(self)
        value = other._data if isinstance(other, Variable) else other
        try:
            ufunc(base, value, base)              # out positionally: 75 ns less
        except (TypeError, ValueError) as exc:   # numpy's message, with the Variable's shape and dtype
            error = DTypeError if isinstance(exc, TypeError) else ShapeError
            raise error(f"{name}: cannot update {describe(self)} in place with {describe(value)}: {exc}") from None
        self._version += 1                        # _changed(), inlined: the update step's hot path
        family = getattr(self, "_family", None)
        if family is not None:
            _bump_family(self, family)
        _last_change[0] = next_seq()
        return self
    method.__name__ = method.__qualname__ = name
    return method


def _comparison(compare, symbol):
    """A comparison operator. It gives a plain boolean array: no gradient (and, while sg.compile traces,
    a mask computed from values would be frozen into the trace: refused like any value read)."""
    def method(self, other):
        if mode.tracing is not None:
            _traced_read(self, f"a comparison ({symbol})")
        return compare(self._data, getattr(other, "_data", other))
    method.__name__ = method.__qualname__ = f"__{compare.__name__}__"
    return method


class Variable:
    """An ndarray with a gradient and the op that made it.

    `data` is read-only: arrays saved for backward can never change silently. Replace it with
    `x.data = new` or change it with the in-place methods (`sub_`, `add_`, `mul_`, `zero_`,
    `x[i] = v`); both bump a version counter that backward checks, like torch. A Variable that
    allocated its own array (a leaf: parameters) keeps it writable as `_base` and shows a
    read-only view as `data`, so in-place updates write straight into it.

    The result of an op is also its graph node (one object per op, not two: less to allocate,
    and half the objects for the cyclic GC to track on long graphs). It records `_spec` (None
    for a leaf), `_vjps`, `_inputs` as given, their raw `_datas`, `_params`, `_edges` (indices
    of the inputs a gradient flows to) and `_versions` (each input's data version, None for
    constants, checked at backward); edges and versions hold only ints, which the GC does not
    track. `_seq` is the creation number: an op's result is always made after its inputs, so
    creation order is topological and backprop runs nodes in reverse `_seq`. During a backward
    pass `_g` is the in-flowing gradient summed so far, `_g_owned` says whether that buffer may
    be accumulated into in place (it is neither a view of nor identical to another gradient),
    and `_visit` marks the pass that last reached the node (`_g` is stale otherwise).

    The arithmetic operators, indexing and the op methods (`x + y`, `x[i]`, `x.sum()`, `x.T`) are
    the registered ops' functions, bound as the ops register: see `VARIABLE_OPERATORS` below.
    """

    __slots__ = ("_data", "_base", "grad", "requires_grad", "_version", "_spec", "_vjps", "_inputs", "_datas",
                 "_params", "_edges", "_versions", "_seq", "_g", "_g_owned", "_visit", "_family", "__weakref__")
    __array_ufunc__ = None  # make `ndarray * Variable` call Variable.__rmul__, not a ufunc loop

    def __init__(self, data, requires_grad=False, dtype=None):
        if isinstance(data, Variable):
            if mode.tracing is not None:
                _traced_read(data, "Variable(x)")
            data = data._data
        try:
            array = np.array(data, dtype=dtype, copy=True)
        except (TypeError, ValueError) as exc:
            raise DTypeError(f"Variable: cannot make an array from {type(data).__name__}: {exc}") from None
        if array.dtype.kind not in "biuf":
            raise DTypeError(f"Variable: unsupported dtype {array.dtype} (shape {array.shape}); "
                             "use a boolean, integer or floating-point array")
        if requires_grad and array.dtype.kind != "f":
            raise DTypeError(f"Variable: only floating-point data can require grad, got {array.dtype} "
                             f"array of shape {array.shape}; pass floats or dtype=np.float64")
        self._base = array
        self._data = _read_only_view(array)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._spec = None
        self._version = 0
        self._visit = 0

    # ---- data access ------------------------------------------------------------------------
    @property
    def data(self):
        if mode.tracing is not None:
            _traced_read(self, ".data")
        return _hand_out(self)

    @data.setter
    def data(self, value):
        if mode.tracing is not None:
            _traced_write(self, "x.data = ...")
        array = np.array(value._data if isinstance(value, Variable) else value, copy=True)
        if self.requires_grad and array.dtype.kind != "f":
            raise DTypeError(f"Variable.data: a Variable that requires grad needs float data, got {array.dtype}")
        self._base = array
        self._data = _read_only_view(array)
        _changed(self)

    def zero_(self):
        if mode.tracing is not None:
            _traced_write(self, "zero_")
        _writable(self).fill(0)
        return _changed(self)

    def __setitem__(self, index, value):
        if mode.tracing is not None:
            _traced_write(self, "x[...] = value")
        value = value._data if isinstance(value, Variable) else value
        index = index._data if isinstance(index, Variable) else index
        _writable(self)[index] = value
        return _changed(self)

    @property
    def shape(self):
        return self._data.shape

    @property
    def ndim(self):
        return self._data.ndim

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def size(self):
        return self._data.size

    @property
    def is_leaf(self):
        return self._spec is None

    def numpy(self):
        if mode.tracing is not None:
            _traced_read(self, "numpy()")
        return _hand_out(self)

    def item(self):
        if mode.tracing is not None:
            _traced_read(self, "item()")
        return self._data.item()

    def tolist(self):
        if mode.tracing is not None:
            _traced_read(self, "tolist()")
        return self._data.tolist()

    def __array__(self, dtype=None, copy=None):
        if mode.tracing is not None:
            _traced_read(self, "a NumPy conversion (np.asarray, a NumPy function)")
        return _hand_out(self) if dtype is None else self._data.astype(dtype)

    def __len__(self):
        return len(self._data)

    def __iter__(self):
        for i in range(len(self._data)):
            yield self[i]

    def __float__(self):
        if mode.tracing is not None:
            _traced_read(self, "float()")
        return float(self._data)

    def __bool__(self):
        if mode.tracing is not None:
            _traced_read(self, "bool() (an if, and, or, not)")
        return bool(self._data)

    __hash__ = object.__hash__
    __eq__, __ne__ = _comparison(operator.eq, "=="), _comparison(operator.ne, "!=")
    __lt__, __le__ = _comparison(operator.lt, "<"), _comparison(operator.le, "<=")
    __gt__, __ge__ = _comparison(operator.gt, ">"), _comparison(operator.ge, ">=")

    def __pos__(self):
        return self

    def __repr__(self):
        body = np.array2string(self._data, prefix="Variable(")
        flag = ", requires_grad=True" if self.requires_grad else ""
        op = f", op={self._spec.name}" if self._spec is not None else ""
        return f"Variable({body}{flag}{op})"

    # ---- graph --------------------------------------------------------------------------------
    def detach(self):
        """The same data with no history and no grad, and, as in torch, the same version counter: an
        in-place change of either after the other was used in a graph makes that graph's backward raise
        (the data is shared: in-place updates of the detached Variable write into a leaf's array)."""
        if mode.tracing is not None:
            return mode.tracing.detach(self)
        return _sharing_counter(self)

    def requires_grad_(self, flag=True):
        if flag and self._data.dtype.kind != "f":
            raise DTypeError(f"requires_grad_: only floating-point data can require grad, got {self._data.dtype}")
        if not flag and self._spec is not None:
            raise GraphError("requires_grad_(False) on a non-leaf Variable; use detach()")
        self.requires_grad = bool(flag)
        return self

    def zero_grad(self):
        self.grad = None

    def backward(self, gradient=None, retain_graph=None, create_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's `.grad` (like torch.Tensor.backward)."""
        seed = _seed_gradient(self, gradient, create_graph, "backward")
        if retain_graph is None:
            retain_graph = create_graph
        for leaf in _backprop((self,), (seed,), retain_graph, create_graph, None)[0]:
            g = leaf._g
            leaf._g = None                   # a leaf outlives the pass: do not keep its gradient alive
            if not (create_graph or leaf._g_owned):
                g = g.copy()                 # never hand out a buffer that aliases another gradient
            leaf.grad = g if leaf.grad is None else leaf.grad + g

    add_ = _in_place(np.add, "add_")
    sub_ = _in_place(np.subtract, "sub_")
    mul_ = _in_place(np.multiply, "mul_")


# ---- the op table: how the engine and Variable's operators reach the ops without importing them --------

OPS = types.SimpleNamespace()
"""The public function of every op, by name (`OPS.add`, `OPS.sum_to`): what `sg.<name>` is. ops/registry.py
fills it (`define_op`) as each op registers; the engine looks ops up here when it runs, never imports them."""


def _reflected(fn):
    def method(self, other):
        return fn(other, self)
    return method


def _power_operator(power):
    def __pow__(self, y, *rest):
        """x ** y. A Python exponent of 2 records `square`, as NumPy's own ** computes x ** 2 with np.square
        (same values and dtypes; 2.0 only for float data, as a float exponent promotes integers): the same
        gradients, without pow's NaN domain check (only a fractional power of a negative base is NaN, never
        a square) or its exponent bookkeeping."""
        if (type(y) is int or type(y) is float and self._data.dtype.kind == "f") and y == 2 and not rest:
            return OPS.square(self)
        return power(self, y, *rest)
    return __pow__


def _reshape_method(reshape):
    def method(self, *shape):
        return reshape(self, shape=shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)
    return method


def _transpose_method(transpose):
    def method(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = axes[0]
        return transpose(self, axes=tuple(axes) if axes else None)
    return method


def _transpose_property(transpose):
    def T(self):
        return transpose(self)
    return property(T)


def _reduction_method(fn):
    def method(self, axis=None, keepdims=False, **params):
        if axis is None and not keepdims and not params:
            return fn(self)                   # the defaults: no params to record or unpack
        return fn(self, axis=axis, keepdims=keepdims, **params)
    method.__name__ = fn.__name__
    return method


# Variable's operators and the methods whose call differs from their op's: (attribute, op, how the method
# is made from the op's public function; None: it is the function itself). Bound when the op is defined,
# so `x * y` is one call of mul, as fast as the function. Methods that are the op's function, called the
# same way (x.exp()), are asked for by the op's own entry (`OpSpec.method`).
VARIABLE_OPERATORS = (
    ("__add__", "add", None), ("__radd__", "add", _reflected),
    ("__sub__", "sub", None), ("__rsub__", "sub", _reflected),
    ("__mul__", "mul", None), ("__rmul__", "mul", _reflected),
    ("__truediv__", "div", None), ("__rtruediv__", "div", _reflected),
    ("__pow__", "pow", _power_operator), ("__rpow__", "pow", _reflected),
    ("__matmul__", "matmul", None), ("__rmatmul__", "matmul", _reflected),
    ("__neg__", "neg", None), ("__abs__", "abs", None),
    ("__getitem__", "take", None),
    ("reshape", "reshape", _reshape_method),
    ("transpose", "transpose", _transpose_method), ("permute", "transpose", _transpose_method),
    ("T", "transpose", _transpose_property),
    *[(name, name, _reduction_method) for name in ("sum", "mean", "var", "std", "max", "min", "prod",
                                                   "logsumexp", "norm")],
)
_OPERATORS_OF = {}
for _attribute, _op, _make in VARIABLE_OPERATORS:
    _OPERATORS_OF.setdefault(_op, []).append((_attribute, _make))
_BOUND = {}     # op name: the Variable attributes defined from it (to refuse a clash, and to undo)


def define_op(name, fn, method=None):
    """Make fn the public function `name` (OPS.<name>, what sg.<name> is) and bind the Variable attributes
    made from it: its operators and methods in VARIABLE_OPERATORS, and `method`, an attribute name under
    which fn itself becomes a method, when the op's entry asks for one."""
    attributes = [(attribute, fn if make is None else make(fn)) for attribute, make in _OPERATORS_OF.get(name, ())]
    if method:
        owner = next((op for op, bound in _BOUND.items() if method in bound), None)
        if owner is None and hasattr(Variable, method) or owner not in (None, name):
            raise ValueError(f"op '{name}': Variable already has an attribute '{method}'"
                             + (f" (the method of op '{owner}')" if owner else "") + "; choose another method name")
        attributes.append((method, fn))
    undefine_op(name)
    setattr(OPS, name, fn)
    for attribute, value in attributes:
        setattr(Variable, attribute, value)
    _BOUND[name] = [attribute for attribute, _ in attributes]


def undefine_op(name):
    """Remove what define_op(name, ...) made: the public function and the Variable attributes."""
    if hasattr(OPS, name):
        delattr(OPS, name)
    for attribute in _BOUND.pop(name, ()):
        delattr(Variable, attribute)


# ---- shared version counters: detach() and arrays handed out by .data / .numpy() / np.asarray ----------

def _sharing_counter(var):
    """A Variable with var's data, no history and no grad, in one family with var: an in-place change of
    any member bumps every member's version (torch's detach shares the version counter the same way)."""
    out = new_variable(var._data)
    out._base = var._base                 # a leaf's writable array: in-place writes through out reach var
    family = getattr(var, "_family", None)
    if family is None:
        family = var._family = [weakref.ref(var)]
    elif len(family) > 16:                # members that were freed (detach() in a loop)
        family[:] = [ref for ref in family if ref() is not None]
    family.append(weakref.ref(out))
    out._family = family
    return out


def _bump_family(var, family):
    for ref in family:
        member = ref()
        if member is not None and member is not var:
            member._version += 1


# the read-only arrays handed out as x.data (and x.numpy(), np.asarray(x)), by id: an op that gets one as
# a constant records x's counter for it, so an in-place change of x before backward raises (as for
# x.detach()) instead of the saved array changing under the graph. Looked up only for raw read-only arrays
_handed_out = weakref.WeakValueDictionary()


def _hand_out(var):
    """var's data as a read-only array, remembered as var's (an op's result is writable: a view of it)."""
    data = var._data
    if data.flags.writeable:
        data = _read_only_view(data)
    _handed_out[id(data)] = var
    return data


def constant_input(array):
    """(what the node records as the input, the array it saves, the version it saves) for a raw ndarray
    given to an op beside Variables. A writable array could be changed by its owner before backward: a
    copy is saved. An array handed out by a Variable (x.data) stands for a Variable sharing x's counter.
    Any other read-only view of writable memory is copied too; a truly read-only array is saved as is."""
    if array.flags.writeable:
        return array, saved_copy(array), None
    owner = _handed_out.get(id(array))
    if owner is not None and (array is owner._data or array.base is owner._data):
        member = _sharing_counter(owner)
        return member, array, member._version
    base = array.base
    if isinstance(base, np.ndarray) and base.flags.writeable:
        return array, saved_copy(array), None
    return array, array, None


def _seed_gradient(output, gradient, create_graph, where):
    if mode.tracing is not None:
        raise GraphError(f"sg.compile: {where}() called inside a compiled function while it was traced; compile the "
                         "function that computes the loss and call backward() on its result, outside it")
    if not isinstance(output, Variable):
        raise GraphError(f"{where}: outputs must be Variables, got {type(output).__name__}")
    if not output.requires_grad:
        raise GraphError(f"{where}: the output ({describe(output)}) does not require grad: no input "
                         "that requires grad was used to compute it (or it was computed under no_grad)")
    data = output._data
    if gradient is None:
        if data.size != 1:
            raise GraphError(f"{where}: the output has {describe(output)}; a gradient can be implied only "
                             "for a single-element output. Pass gradient=<array of the output's shape>")
        seed = _ONES.get((data.shape, data.dtype))
        if seed is None:
            seed = _ONES[data.shape, data.dtype] = _read_only_view(np.ones(data.shape, data.dtype))
    else:
        seed = gradient._data if isinstance(gradient, Variable) else np.asarray(gradient)
        if seed.shape != data.shape:
            raise ShapeError(f"{where}: gradient has shape {seed.shape} but the output has shape {data.shape}")
        if seed.dtype.kind != "f":
            raise DTypeError(f"{where}: gradient must be floating point, got {seed.dtype}")
        if seed.dtype != data.dtype:
            seed = seed.astype(data.dtype)
    if create_graph:
        return gradient if isinstance(gradient, Variable) else new_variable(seed)
    return seed


_pass_counter = itertools.count(1).__next__
_ONES = {}   # the implied seed of a single-element output, per (shape, dtype); read-only, never owned


def _backprop(roots, seeds, retain_graph, create_graph, targets):
    """Run every VJP once, each with its gradient summed over all consumers, in one pass.

    Nodes are run in reverse creation order (`Variable._seq`; torch's engine orders its ready queue the
    same way). A node is created after its inputs, so every consumer of a node has a larger seq:
    when a max-heap of the nodes that have received some gradient yields a node, every consumer that
    can reach it from the roots has already run and sent its share. That is a topological order
    of the reversed graph with no recursion (a chain of 1e6 ops is fine) and no separate pass to
    count consumers. A node releases its saved arrays as soon as it has run (unless retain_graph):
    memory stays bounded.

    Leaves gather their gradient the same way, in `_g` and `_g_owned`. Returns (the leaves reached,
    holding their complete gradient in `_g` and `_g_owned`: the caller takes it and clears `_g`, as a
    leaf outlives the pass; and, when `targets` is a set of ids, {id: [node, grad, owned]} with the
    complete gradients of the non-leaf targets).
    """
    this_pass = _pass_counter()
    last_change = _last_change[0]
    results = {}
    leaves = []
    heap = []
    # the pending node with the largest seq is kept out of the heap, in `top`: on a chain (each node
    # hands its gradient to one node input, as in an MLP) every node goes straight from its consumer
    # to the front with no heap push or pop
    top = None
    for root, seed in zip(roots, seeds):
        if root._visit != this_pass:
            root._visit, root._g, root._g_owned = this_pass, seed, False
            if root._spec is None:
                leaves.append(root)
            elif top is None:
                top = root
            else:
                heap.append((-root._seq, root))
        elif root._spec is None:
            _send(root, seed, False, create_graph)
        else:
            root._g, root._g_owned = _accumulate(root._g, root._g_owned, seed, create_graph)
    if heap:
        heap.append((-top._seq, top))
        heapq.heapify(heap)
        top = heapq.heappop(heap)[1]

    previous_checking, previous_enabled = mode.checking, mode.enabled
    mode.checking = False
    mode.enabled = create_graph     # VJPs record a graph only for create_graph
    try:
        ndarray = np.ndarray
        pop, push = heapq.heappop, heapq.heappush
        while top is not None:
            node = top
            top = pop(heap)[1] if heap else None
            inputs = node._inputs
            if inputs is None:
                raise GraphError(f"backward through op '{node._spec.name}' whose graph was already freed by "
                                 "an earlier backward; pass retain_graph=True to the first backward to go twice")
            g = node._g
            node._g = None
            if targets is not None and id(node) in targets:
                results[id(node)] = [node, g, node._g_owned]
            if node._seq < last_change:              # recorded before an in-place change
                for inp, version in zip(inputs, node._versions):
                    if version is not None and inp._version != version:
                        _raise_stale(node, inp, version)
            if create_graph:
                args, out = inputs, node
            else:
                args, out = node._datas, node._data
            params = node._params
            vjps = node._vjps
            for i in node._edges:
                inp = inputs[i]
                gi = vjps[i](g, out, *args, **params) if params else vjps[i](g, out, *args)
                data = inp._data
                if (create_graph or type(gi) is not ndarray or gi.shape != data.shape
                        or (gi.dtype is not data.dtype and gi.dtype != data.dtype)):
                    gi = _fit_gradient(gi, inp, node, i, create_graph)
                # a fresh buffer (not g itself, not a view) may later be accumulated into in place
                owned = not create_graph and gi is not g and gi.base is None
                if inp._visit != this_pass:
                    inp._visit, inp._g, inp._g_owned = this_pass, gi, owned
                    if inp._spec is None:
                        leaves.append(inp)
                    elif top is None:
                        top = inp
                    elif inp._seq > top._seq:
                        push(heap, (-top._seq, top))
                        top = inp
                    else:
                        push(heap, (-inp._seq, inp))
                elif inp._spec is None:
                    _send(inp, gi, owned, create_graph)
                else:
                    inp._g, inp._g_owned = _accumulate(inp._g, inp._g_owned, gi, create_graph)
            if not retain_graph:
                node._inputs = node._datas = node._edges = node._versions = None
    except BaseException:
        for leaf in leaves:
            leaf._g = None                       # a leaf outlives the pass: do not keep its gradient alive
        raise
    finally:
        mode.checking, mode.enabled = previous_checking, previous_enabled
    return leaves, results


def _send(leaf, g, owned, create_graph):
    """Add gradient g into a leaf's gradient gathered so far this pass (its second and later consumers)."""
    leaf._g, leaf._g_owned = _accumulate(leaf._g, leaf._g_owned, g, create_graph)


def _accumulate(total, total_owned, g, create_graph):
    """total + g for a fan-out (a value used by several consumers): in place into a buffer this
    pass owns, else into a new one. Returns (sum, owned)."""
    if total_owned and not create_graph:
        total += g
        return total, True
    return total + g, not create_graph


def _raise_stale(node, inp, version):
    index = next(i for i, a in enumerate(node._inputs) if a is inp)
    raise GraphError(
        f"op '{node._spec.name}': input {index} ({describe(inp)}) was modified in place after it was "
        f"used (version {version} -> {inp._version}); its saved value is stale and the gradient "
        "would be wrong. Modify it after backward, or use a copy")


def _fit_gradient(gi, inp, node, i, create_graph):
    """Reduce a broadcast gradient to the input's shape and cast it to the input's dtype, once,
    for every op (the one place broadcasting is undone)."""
    target = inp._data
    fit = fit_variable if create_graph else fit_array
    return fit(gi, target.shape, target.dtype, node._spec.name, i)


def fit_variable(gi, shape, dtype, op_name, i):
    """`_fit_gradient` under create_graph: with ops, so the reduction and the cast are differentiable."""
    if not isinstance(gi, Variable):
        gi = new_variable(np.asarray(gi))
    if gi._data.shape != shape:
        try:
            gi = sum_to(gi, shape)
        except ShapeError:
            raise _unfit_error(op_name, i, gi._data.shape, shape) from None
    if gi._data.dtype != dtype:
        gi = _cast(gi, dtype)
    return gi


def fit_array(gi, shape, dtype, op_name, i):
    """`_fit_gradient` on raw arrays: what a plain backward, and a compiled one, apply to a VJP's result."""
    if type(gi) is not np.ndarray:
        gi = np.asarray(gi)
    if gi.shape != shape:
        try:
            gi = sum_to_array(gi, shape)
        except ShapeError:
            raise _unfit_error(op_name, i, gi.shape, shape) from None
    if gi.dtype != dtype:
        gi = gi.astype(dtype)
    return gi


def _unfit_error(op_name, i, shape, target_shape):
    return ShapeError(f"VJP of op '{op_name}' for input {i} returned a gradient of shape {shape}, "
                      f"which does not reduce to the input's shape {target_shape}")


def sum_to(x, shape):
    """Sum x over the axes that broadcasting added or stretched, so the result has `shape`.

    Works on raw arrays and, through the registered `sum_to` op, on Variables (create_graph)."""
    if isinstance(x, Variable):
        return OPS.sum_to(x, shape=tuple(shape))
    return sum_to_array(x, tuple(shape))


def sum_to_array(x, shape):
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    if lead == 1 and x.shape[1:] == shape:
        return np.add.reduce(x, 0)                # the bias of a batch: the common case (no ndarray.sum frame)
    if lead < 0 or any(s != 1 and s != xs for s, xs in zip(shape, x.shape[lead:])):
        raise ShapeError(f"sum_to: cannot reduce shape {x.shape} to {shape}")
    axes = tuple(range(lead)) + tuple(lead + k for k, s in enumerate(shape) if s == 1 and x.shape[lead + k] != 1)
    return x.sum(axis=axes).reshape(shape) if axes else x.reshape(shape)


def _cast(x, dtype):
    if isinstance(x, Variable):
        return OPS.astype(x, dtype=np.dtype(dtype))
    return x.astype(dtype)


# ---- applying an op ------------------------------------------------------------------------------

def apply(spec, args, params):
    """Run spec's forward on args (Variables, arrays, scalars) and record the op if a grad is needed."""
    datas = []
    versions = []
    edges = []
    vjps = spec.vjps
    has_variable = has_raw_array = False
    for i, a in enumerate(args):
        if isinstance(a, Variable):
            has_variable = True
            datas.append(a._data)
            versions.append(a._version)
            if a.requires_grad and (spec.variadic or vjps[i] is not None):
                edges.append(i)
        else:
            datas.append(a)
            versions.append(None)
            has_raw_array = has_raw_array or type(a) is np.ndarray
    try:
        out = spec.forward(*datas, **params) if params else spec.forward(*datas)
    except ScratchGradError:
        raise
    except Exception as exc:  # numpy's message, wrapped with the op, shapes and dtypes
        raise forward_error(spec, args, params, exc) from None
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    if spec.may_produce_nan and mode.checking:
        spec.check_domain(datas, out)
    if not has_variable:
        return out
    if edges and mode.enabled:
        if has_raw_array:
            args = list(args)
            for k, d in enumerate(datas):
                # a raw ndarray the caller could change before backward: see constant_input
                if type(args[k]) is np.ndarray:
                    args[k], datas[k], versions[k] = constant_input(d)
            args = tuple(args)
        if spec.variadic:
            vjps = spec.vjps_for(len(args))
        return record(out, spec, vjps, args, tuple(datas), params, tuple(edges), tuple(versions))
    if mode.tracing is not None:
        return mode.tracing.constant_node(out, spec, args, datas, params)
    return new_variable(out)


def new_variable(array):
    """A Variable with no history (a result that needs no gradient)."""
    out = _object_new(Variable)
    out._data = array
    out._base = None
    out.grad = None
    out.requires_grad = False
    out._spec = None
    out._version = 0
    out._visit = 0
    return out


def record(array, spec, vjps, inputs, datas, params, edges, versions):
    """The result of an op that needs a gradient: a Variable that is also the op's graph node."""
    out = _object_new(Variable)
    out._data = array
    out._base = None
    out.grad = None
    out.requires_grad = True
    out._version = 0
    out._spec = spec
    out._vjps = vjps
    out._inputs = inputs
    out._datas = datas
    out._params = params
    out._edges = edges
    out._versions = versions
    out._seq = next_seq()
    out._visit = 0
    return out


_object_new = object.__new__


def raw(x):
    """The ndarray behind a Variable, or x itself (masks and signs computed from it are constants in a
    create_graph graph: right for piecewise-constant functions, whose derivative is 0 a.e.)."""
    return x._data if isinstance(x, Variable) else x


def _read_only_view(array):
    view = array.view()
    view.flags.writeable = False
    return view


def saved_copy(array):
    """A copy of a raw array an op saves for backward (its owner may change it later), in the same
    memory layout: the same axis order and stride signs, so BLAS and NumPy's loops sum in the same
    order over it as over the original (on a C-order copy of a reversed view a dot product can
    differ in the last bit, and a compiled replay, which runs on the copy, would not be bitwise)."""
    if array.ndim == 0:
        return array.copy()
    flips = tuple(slice(None, None, -1) if stride < 0 else slice(None) for stride in array.strides)
    return array[flips].copy(order="K")[flips]


def _traced_read(var, what):
    raise GraphError(
        f"sg.compile: the function read the values of a Variable ({describe(var)}) through {what} while it was "
        "traced. A compiled function is replayed without running its Python code, so a value read there (a "
        "Python number, a branch, a mask, a NumPy computation) would stay frozen at its traced value. Compute it "
        "with ops on Variables (sg.where, sg.maximum, ...), pass it in as an argument, or call the function "
        "without sg.compile")


def _traced_write(var, what):
    raise GraphError(
        f"sg.compile: the function changed a Variable ({describe(var)}) in place ({what}) while it was traced; "
        "a replay does not repeat in-place changes. Update parameters outside the compiled function")


def forward_error(spec, args, params, exc):
    described = "; ".join(f"input {i}: {describe(a)}" for i, a in enumerate(args))
    extra = f"; params {params}" if params else ""
    message = f"op '{spec.name}' failed on ({described}{extra}): {exc}"
    if isinstance(exc, np.exceptions.AxisError):
        return AxisError(message)
    if isinstance(exc, TypeError):
        return DTypeError(message)
    return ShapeError(message)


# ---- functional gradient ----------------------------------------------------------------------------

def grad(outputs, inputs, grad_outputs=None, create_graph=False, retain_graph=None, allow_unused=False):
    """Gradients of `outputs` with respect to `inputs`, returned as a tuple (like torch.autograd.grad);
    no `.grad` attribute is touched. With create_graph=True the gradients are Variables that can be
    differentiated again (Hessian-vector products, double backward)."""
    single_output = isinstance(outputs, Variable)
    outputs = [outputs] if single_output else list(outputs)
    inputs = [inputs] if isinstance(inputs, Variable) else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, (Variable, np.ndarray, np.generic)):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise ShapeError(f"grad: {len(outputs)} outputs but {len(grad_outputs)} grad_outputs")
    for k, x in enumerate(inputs):
        if not isinstance(x, Variable) or not x.requires_grad:
            raise GraphError(f"grad: input {k} ({describe(x)}) does not require grad")
    seeds = [_seed_gradient(o, g, create_graph, "grad") for o, g in zip(outputs, grad_outputs)]
    if retain_graph is None:
        retain_graph = create_graph
    leaves, found = _backprop(outputs, seeds, retain_graph, create_graph, targets={id(x) for x in inputs})
    for leaf in leaves:
        found[id(leaf)] = [leaf, leaf._g, leaf._g_owned]
        leaf._g = None
    grads = []
    for k, x in enumerate(inputs):
        entry = found.get(id(x))
        if entry is None:
            if not allow_unused:
                raise GraphError(f"grad: input {k} ({describe(x)}) was not used to compute the outputs; "
                                 "pass allow_unused=True to get None for it")
            grads.append(None)
        else:
            g = entry[1]
            grads.append(g if create_graph or entry[2] else g.copy())
    return tuple(grads)
