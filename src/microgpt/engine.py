"""Scalar autograd: `Value`, a number that remembers how it was computed.

Each op below returns a new `Value` holding its result (the forward value)
and, for each input, the derivative of the result with respect to that input
(the local gradient), written side by side. `backward()` then applies the
chain rule from the output back to every input.

Exactness: every float operation happens in the same order as in the
original microgpt, so results are the same float64 numbers bit for bit. So
`a - b` is `a + (-b)`, `a / b` is `a * b**-1`, and gradients are added up in
the order of the original's recursive topological sort.

This one file is both engines. Run as it is, it is the readable pure-Python
engine; `pip install .` also compiles it with Cython's pure-Python mode into
`microgpt._engine`, the fast one. Read `Value` first; the machinery that makes
it fast (and the `cython.*` hints, which do nothing when interpreted) comes
after the divider further down.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # type checkers read the typed stand-in
    from array import array

    from microgpt import _cython_shim as cython
else:
    try:
        import cython
    except ModuleNotFoundError:  # interpreted without Cython installed
        from microgpt import _cython_shim as cython


@cython.final
@cython.auto_pickle(False)  # checkpoints are JSON; a node is never pickled
@cython.no_gc  # the graph has no cycles: reference counting frees it
@cython.cclass
class Value:
    """A number in a computation graph (`data`), and its gradient (`grad`).

    `Value(data)` makes a leaf: an input or a weight. `Value(data, children,
    local_grads)` makes a node by hand from at most two children, each with
    d(node)/d(child): that is how a new op is written.
    """

    def __init__(
        self,
        data: float,
        children: Sequence[Value] = (),
        local_grads: Sequence[float] = (),
        op: str = "",
    ) -> None:
        child1, local1, child2, local2 = _checked_children(children, local_grads)
        code = _op_code(op, child1 is not None)
        _clear_children(self)  # (if __init__ is called again)
        _set_fields(self, _number(data, "data"), code, child1, local1, child2, local2)

    if cython.compiled:
        # Compiled, __init__ is a C slot whose parameters help() and
        # inspect.signature() cannot see; this names them. (Interpreted, they
        # read __init__ itself; tests/test_docs.py checks that the two agree.)
        __signature__ = inspect.Signature(
            [
                inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, **default)
                for name, default in (
                    ("data", {"annotation": "float"}),
                    ("children", {"default": (), "annotation": "Sequence[Value]"}),
                    ("local_grads", {"default": (), "annotation": "Sequence[float]"}),
                    ("op", {"default": "", "annotation": "str"}),
                )
            ],
            return_annotation="None",
        )

    # --- the ops: forward value, and d(out)/d(input) for each input ---------

    def __add__(self, other: Value | float) -> Value:
        if isinstance(other, Value):
            o: Value = other
            return _binary(ADD, self._data + o._data, self, 1.0, o, 1.0)
        if isinstance(other, (int, float)):  # a number is a constant: no node of its own
            c: cython.double = other
            return _unary(ADD, self._data + c, self, 1.0)
        _refuse_other_engine(other)
        return NotImplemented

    def __mul__(self, other: Value | float) -> Value:
        if isinstance(other, Value):
            o: Value = other
            return _binary(MUL, self._data * o._data, self, o._data, o, self._data)
        if isinstance(other, (int, float)):
            k: cython.double = other
            return _unary(MUL, self._data * k, self, k)
        _refuse_other_engine(other)
        return NotImplemented

    def __pow__(self, other: object) -> Value:  # d(x**k)/dx = k * x**(k-1)
        if isinstance(other, (int, float)):
            return _power_node(self, other)
        _refuse_other_engine(other)
        return NotImplemented

    def log(self) -> Value:
        x: cython.double = self._data
        return _unary(LOG, math.log(x), self, 1.0 / x)

    def exp(self) -> Value:
        e: cython.double = math.exp(self._data)
        return _unary(EXP, e, self, e)

    def relu(self) -> Value:
        x: cython.double = self._data
        return _unary(RELU, x if x > 0.0 else 0.0, self, 1.0 if x > 0.0 else 0.0)

    def tanh(self) -> Value:
        t: cython.double = math.tanh(self._data)
        return _unary(TANH, t, self, 1.0 - t * t)

    def sigmoid(self) -> Value:
        s: cython.double = _sigmoid(self._data)
        return _unary(SIGMOID, s, self, s * (1.0 - s))

    def gelu(self) -> Value:  # tanh approximation: 0.5 x (1 + tanh(c (x + 0.044715 x^3)))
        x: cython.double = self._data
        t: cython.double = math.tanh(_GELU_C * (x + 0.044715 * x * x * x))
        dt: cython.double = (1.0 - t * t) * _GELU_C * (1.0 + 3.0 * 0.044715 * x * x)
        return _unary(GELU, 0.5 * x * (1.0 + t), self, 0.5 * (1.0 + t) + 0.5 * x * dt)

    # --- ops written with the ones above, as the original does --------------

    def __neg__(self) -> Value:
        return self * -1

    def __radd__(self, other: Value | float) -> Value:
        return self + other

    def __sub__(self, other: Value | float) -> Value:
        return self + (-other)

    def __rsub__(self, other: Value | float) -> Value:
        return other + (-self)

    def __rmul__(self, other: Value | float) -> Value:
        return self * other

    def __truediv__(self, other: Value | float) -> Value:
        if isinstance(other, Value):  # self * other**-1 as one node (see _quotient)
            return _quotient(self, other)
        return self * other**-1

    def __rtruediv__(self, other: Value | float) -> Value:
        return other * self**-1

    # --- backpropagation -----------------------------------------------------

    def backward(self) -> None:
        """Add d(self)/d(node) to `grad` of every node this one depends on.

        The chain rule, from this node back to the leaves:

            self.grad = 1
            for node in reversed(self.topological_order()):
                for child, local in zip(node.children, node.local_grads):
                    child.grad += local * node.grad

        Parents come before children in that loop, so a node has all of its
        gradient before it passes it on. What runs is that loop, with a `dot`
        or `vsum` node taken term by term where the chain of + and * nodes it
        stands for would have been (see `_backward_schedule`), so every
        gradient is added up in the original's order.
        """
        order, run_starts = _backward_schedule(self)
        self._grad = 1.0
        _propagate(order, run_starts)

    def topological_order(self) -> list[Value]:
        """Every node this one depends on, each once, children before parents:
        the order of the recursive depth-first search
        `visit(v): for c in v.children: visit(c); emit(v)`."""
        order: list[Value] = []
        _depth_first(self, order, None)
        return order

    # --- what a node is made of ----------------------------------------------

    @property
    def data(self) -> float:
        return self._data

    @data.setter
    def data(self, value: object) -> None:
        self._data = _number(value, "data")

    @property
    def grad(self) -> float:
        return self._grad

    @grad.setter
    def grad(self, value: object) -> None:
        self._grad = _number(value, "grad")

    @property
    def children(self) -> tuple[Value, ...]:
        """The nodes this one was computed from, in order (a dot node's are
        w0, x0, w1, x1, ...)."""
        if self._left is not None:
            return tuple(_operand(self, k) for k in range(_operand_count(self)))
        if self._right is not None:
            return _head_children(self)
        if self._child1 is None:
            return ()
        if self._child2 is None:
            return (self._child1,)
        return (self._child1, self._child2)

    @property
    def local_grads(self) -> tuple[float, ...]:
        """d(self)/d(child) for each child, in order, as of the forward pass."""
        if self._left is not None:
            return tuple(_operand_grad(self, k) for k in range(_operand_count(self)))
        if self._right is not None:
            return _head_local_grads(self)
        if self._child1 is None:
            return ()
        if self._child2 is None:
            return (self._local1,)
        if self._op == DIV:  # d(a * b**-1)/db = a * (-1 * b**-2)
            return (self._local1, self._local2 * self._local3)
        return (self._local1, self._local2)

    @property
    def op(self) -> str:
        """The op that made this node ('' for a leaf)."""
        return OP_NAMES[self._op]

    def __repr__(self) -> str:
        return f"Value(data={self._data!r}, grad={self._grad!r})"

    # =========================================================================
    # The machinery: below here is what makes the engine fast when compiled,
    # and exact. First, the fields of a node.
    # =========================================================================

    if cython.compiled:  # C fields; interpreted, the same names are __slots__
        # (in this order, what a traversal reads of a node is in its first
        # 64 bytes, and a node takes 112 bytes, not 128)
        _grad: cython.double
        _visited: cython.longlong  # the traversal that last reached this node
        _child1: Value | None  # an ordinary node's first child (None for a leaf)
        _child2: Value | None  # its second child (None for fewer than two)
        _left: tuple[Value, ...] | None  # a dot node's w_i, a sum node's v_i (None otherwise)
        _cursor: cython.int  # the next child that traversal looks at
        _op: cython.uchar  # the op that made this node: an index into OP_NAMES
        _left_leaves: cython.uchar  # every w_i is known to be a leaf
        _local1: cython.double  # d(self)/d(_child1)
        _local2: cython.double  # d(self)/d(_child2)
        _data: cython.double
        _right: _Inputs | None  # a dot node's x_i (None for a sum)
        _left_values: cython.p_double  # a dot's w_i at forward time: d(self)/d(x_i)
        _local3: cython.double  # a quotient's d(other**-1)/d(other) (see _quotient)
    else:
        __slots__ = (
            "_grad",
            "_visited",
            "_child1",
            "_child2",
            "_left",
            "_cursor",
            "_op",
            "_left_leaves",
            "_local1",
            "_local2",
            "_data",
            "_right",
            "_left_values",
            "_local3",
        )

    def __reduce__(self) -> str:
        # A node drags its whole graph along; save weights as data instead
        # (microgpt.checkpoint writes JSON).
        raise TypeError("Value objects cannot be pickled or copied; save .data instead")

    def __dealloc__(self) -> None:
        # Compiled only. Freeing a node frees its children recursively in C,
        # so a very deep graph would overflow the C stack. Past a modest depth,
        # children are parked in a list and freed by the outermost call, one
        # level at a time. (Interpreted, CPython's own "trashcan" does this.)
        global _free_depth
        # The children are moved out of the fields as C pointers, so that no
        # Python variable holding None is made, and fields already None are
        # left alone: each write of None updates the reference count of the
        # one None object that every node shares, a chain of dependent writes.
        child1: cython.pointer[PyObject] = cython.NULL
        child2: cython.pointer[PyObject] = cython.NULL
        left: cython.pointer[PyObject] = cython.NULL
        right: cython.pointer[PyObject] = cython.NULL
        if self._child1 is not None:
            child1 = _owned(self._child1)
            self._child1 = None
        if self._child2 is not None:
            child2 = _owned(self._child2)
            self._child2 = None
        if self._left is not None:
            left = _owned(self._left)
            self._left = None
        if self._right is not None:
            right = _owned(self._right)
            self._right = None
        if _free_depth >= _MAX_FREE_DEPTH:
            _park(child1)
            _park(child2)
            _park(left)
            _park(right)
            return
        _free_depth += 1
        Py_XDECREF(child1)  # frees the child here if this was its last reference
        Py_XDECREF(child2)
        Py_XDECREF(left)
        Py_XDECREF(right)
        _free_depth -= 1
        if _free_depth == 0:
            while _pending_free:
                _free_depth += 1
                _pending_free.pop()
                _free_depth -= 1


if cython.compiled:  # C-level memory and list access for dot and sum nodes
    from cython.cimports.cpython.list import PyList_GET_ITEM, PyList_New, PyList_SET_ITEM
    from cython.cimports.cpython.mem import (
        PyMem_Free,
        PyMem_Malloc,
    )
    from cython.cimports.cpython.object import (
        Py_TYPE,
        PyObject,
        PyTypeObject,
    )
    from cython.cimports.cpython.ref import Py_XDECREF, Py_XINCREF
    from cython.cimports.cpython.tuple import PyTuple_GET_ITEM
    from cython.cimports.libc.math import exp as _libm_exp

    _VALUE_TYPE = cython.declare(
        cython.pointer[PyTypeObject], cython.cast(cython.pointer[PyTypeObject], Value)
    )

# Which op made a node, for display (see `microgpt.graph`): a node keeps a
# one-byte code, an index into OP_NAMES. The declarations below are the one
# table: each op's code is the place of its name in OP_NAMES, which they
# fill in this order; hand-written ops add their names after them. Code 0 is
# a leaf's and only a leaf's (a node made by hand without an op name gets
# UNNAMED), so that whether a node is a leaf is one comparison.
OP_NAMES: list[str] = []


def _new_op(name: str) -> int:
    OP_NAMES.append(name)
    return len(OP_NAMES) - 1


LEAF = cython.declare(cython.uchar, _new_op(""))
ADD = cython.declare(cython.uchar, _new_op("+"))
MUL = cython.declare(cython.uchar, _new_op("*"))
POW = cython.declare(cython.uchar, _new_op("**"))
LOG = cython.declare(cython.uchar, _new_op("log"))
EXP = cython.declare(cython.uchar, _new_op("exp"))
RELU = cython.declare(cython.uchar, _new_op("relu"))
TANH = cython.declare(cython.uchar, _new_op("tanh"))
SIGMOID = cython.declare(cython.uchar, _new_op("sigmoid"))
GELU = cython.declare(cython.uchar, _new_op("gelu"))
DOT = cython.declare(cython.uchar, _new_op("dot"))
SUM = cython.declare(cython.uchar, _new_op("sum"))
DIV = cython.declare(cython.uchar, _new_op("/"))
SCALED_DOT = cython.declare(cython.uchar, _new_op("dot/"))
SHIFTED_EXP = cython.declare(cython.uchar, _new_op("exp(x-c)"))
ATTEND = cython.declare(cython.uchar, _new_op("attend"))
UNNAMED = cython.declare(cython.uchar, _new_op(""))

# True in the compiled extension, False when this file runs interpreted.
COMPILED: bool = cython.compiled
# The Cython that compiled this module (None when interpreted).
CYTHON_VERSION: str | None = cython.__version__ if cython.compiled else None

_GELU_C = cython.declare(cython.double, math.sqrt(2.0 / math.pi))
_INF = cython.declare(cython.double, math.inf)
# Below 2**53 in size a whole-number exponent converts to a float exactly.
_EXACT_INT = cython.declare(cython.double, 2.0**53)

# Interpreted, vsum() reads the values of many nodes through this, and the
# traversal the op codes of a row of weights.
_data_of = operator.attrgetter("_data")
_op_of = operator.attrgetter("_op")
# False inside `with no_grad():`, where ops record no graph.
_recording = cython.declare(cython.bint, True)
# Each traversal marks the nodes it reaches with a new number, so that no
# per-traversal `visited` set is needed.
_traversals = cython.declare(cython.longlong, 0)
# Deep graphs are freed iteratively (see Value.__dealloc__): the nodes waiting
# to be freed, and how deeply nested the current free is.
_free_depth = cython.declare(cython.int, 0)
_pending_free = cython.declare(list, [])
_MAX_FREE_DEPTH = cython.declare(cython.int, 200)


# --- making nodes ----------------------------------------------------------------


@cython.cfunc
@cython.inline
def _set_fields(
    node: Value,
    data: cython.double,
    op: cython.uchar,
    child1: Value | None,
    local1: cython.double,
    child2: Value | None,
    local2: cython.double,
) -> Value:
    """The one place that sets a node's fields (a dot or sum node then gets
    its terms from `_fused`)."""
    node._data = data
    node._grad = 0.0
    node._local1 = local1
    node._local2 = local2
    if cython.compiled:
        # A new node's object fields hold None already; writing None again
        # would update the reference count of the one None object that
        # every node shares, a chain of dependent writes that costs time.
        if child1 is not None:
            node._child1 = child1
        if child2 is not None:
            node._child2 = child2
    else:
        node._child1 = child1
        node._child2 = child2
        node._left = None
        node._right = None
    node._op = op
    node._visited = 0
    node._cursor = 0
    return node


@cython.cfunc
@cython.inline
def _binary(
    op: cython.uchar,
    data: cython.double,
    child1: Value,
    local1: cython.double,
    child2: Value | None,
    local2: cython.double,
) -> Value:
    """A new node from two children (the same node may be both, as in x*x);
    inside `no_grad()`, a leaf holding just the value."""
    if not _recording:
        return _constant(data)
    return _set_fields(Value.__new__(Value), data, op, child1, local1, child2, local2)


@cython.cfunc
@cython.inline
def _unary(op: cython.uchar, data: cython.double, child: Value, local: cython.double) -> Value:
    """A new node from one child (a number operand needs no node of its own)."""
    return _binary(op, data, child, local, None, 0.0)


@cython.cfunc
@cython.inline
def _constant(data: cython.double) -> Value:
    """A new node with no children: a value that records no graph."""
    return _set_fields(Value.__new__(Value), data, LEAF, None, 0.0, None, 0.0)


@cython.cfunc
def _power_node(x: Value, k_obj: float) -> Value:
    node: Value = _unary(POW, 0.0, x, 0.0)
    _power_and_slope(node, x._data, k_obj)  # (into _data and _local1)
    return node


@cython.cfunc
def _power_and_slope(node: Value, base: cython.double, k_obj: float) -> cython.void:
    """Sets node._data to base**k and node._local1 to k * base**(k-1)."""
    k: cython.double = k_obj
    if base > 0.0 and -_EXACT_INT < k < _EXACT_INT:
        # The common case, straight through (libm's pow, as Python uses);
        # k - 1.0 is exact here, as other - 1 is in the original.
        out: cython.double = base**k
        d: cython.double = k * base ** (k - 1.0)
        if out < _INF and -_INF < d < _INF:
            node._data = out
            node._local1 = d
            return
    # Everything else (0, negatives, overflow) with Python's semantics and errors.
    node._data = _power(base, k_obj)
    node._local1 = k_obj * _power(base, k_obj - 1)


@cython.cfunc
def _quotient(a: Value, b: Value) -> Value:
    """`a / b`, which is `a * b**-1`, as one node of children a and b: it
    passes g to them as that product and its `b**-1` node would, one right
    after the other (a.grad += b**-1 * g; then b.grad += (-1 * b**-2) * (a * g)),
    and the `b**-1` node, made here, has no other parent and is always just
    before the product in the topological order."""
    node: Value = _binary(DIV, 0.0, a, 0.0, b, a._data)
    _power_and_slope(node, b._data, -1)  # b**-1 and its slope, for now
    node._local3 = node._local1
    node._local1 = node._data  # d(a * r)/da = r
    node._data = a._data * node._data
    return node


def _power(base: float, exponent: float) -> float:
    """`base ** exponent` as Python computes it for floats, errors included."""
    result = operator.pow(base, exponent)
    if isinstance(result, complex):
        raise ValueError(
            f"cannot raise the negative number {base!r} to the fractional power {exponent!r}"
        )
    return float(result)


@cython.cfunc
@cython.inline
def _sigmoid(x: cython.double) -> cython.double:
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e: cython.double = math.exp(x)  # the same value, without overflowing exp(-x)
    return e / (1.0 + e)


# --- dot, sum and linear: one node for a whole sum of terms --------------------------


def dot(ws: Sequence[Value], xs: Sequence[Value]) -> Value:
    """`sum(w * x for w, x in zip(ws, xs))` as one node.

    Its value is the same running sum from 0, and its children are
    w0, x0, w1, x1, ... with local gradients x0, w0, x1, w1, ... (their values
    now). The chain of 2n nodes that Python's sum() would build passes exactly
    the same float operations to the same nodes in the same order, and
    `_depth_first` puts this node where that chain's nodes were: hence the
    same gradients bit for bit, from one node instead of 2n.
    """
    inputs: _Inputs = _inputs(xs, 1, "dot")
    try:
        return _dot_row(_row(ws, inputs, "dot"), inputs, 0)
    except (AttributeError, TypeError):  # raised by an item that is not a Value
        _check_values(tuple(ws) + inputs.items, "dot")
        raise


def linear(x: Sequence[Value], w: Sequence[Sequence[Value]]) -> list[Value]:
    """w @ x: `[dot(row, x) for row in w]`, node for node. The rows share
    one copy of x, so the traversal can pass over it once it is reached."""
    rows: list[Sequence[Value]] = list(w)
    inputs: _Inputs = _inputs(x, len(rows), "linear")
    try:
        return [_dot_row(_row(row, inputs, "linear"), inputs, r) for r, row in enumerate(rows)]
    except (AttributeError, TypeError):
        _check_values([wi for row in rows for wi in row] + list(inputs.items), "linear")
        raise


def vsum(values: Sequence[Value]) -> Value:
    """`sum(values)` as one node: the same running sum from 0, and the same
    gradients as the chain of + nodes Python's sum() would build (see `dot`)."""
    vs: tuple[Value, ...] = tuple(values)  # a copy (unless a tuple): the node keeps it
    if not vs:
        raise ValueError("vsum() of an empty list")
    try:
        return _vsum(vs)
    except (AttributeError, TypeError):
        _check_values(vs, "vsum")
        raise


# --- the model's vector ops: each node stands for a chain that has one parent ----------


def scaled_dots(q: Sequence[Value], ks: Sequence[Sequence[Value]], divisor: float) -> list[Value]:
    """`[dot(q, k) / divisor for k in ks]`, one node per k.

    `dot(q, k) / divisor` is the dot node times the number c = divisor**-1,
    a node whose only child is the dot and which comes right after the dot's
    last term in the topological order. So this is the dot node with c kept:
    its value is the running sum times c, and before its terms pass on the
    gradient g it becomes c * g, the gradient the dot node would have got.
    """
    c: cython.double = operator.pow(divisor, -1)  # as Python computes divisor**-1
    ws: tuple[Value, ...] = tuple(q)
    out: list[Value] = []
    node: Value
    for k in ks:
        inputs: _Inputs = _inputs(k, 1, "scaled_dots")
        try:
            node = _dot_row(_row(ws, inputs, "scaled_dots"), inputs, 0)
        except (AttributeError, TypeError):
            _check_values(ws, "scaled_dots")
            raise
        if node._op == DOT:  # (under no_grad() it is a leaf)
            node._op = SCALED_DOT
            node._local1 = c
        node._data = node._data * c
        out.append(node)
    return out


def exps_shifted(values: Sequence[Value], shift: float) -> list[Value]:
    """`[(v - shift).exp() for v in values]`, one node per value.

    `v - shift` is `v + (-shift)`, a node whose only parent is the exp and
    which comes right before it in the topological order; its gradient is
    0.0 + e * g, which it passes on times 1.0: the same float as e * g
    (when that is -0.0, the same once added to a gradient, which starts at
    0.0). So this is an exp node whose child is v.
    """
    c: cython.double = -shift
    out: list[Value] = []
    e: cython.double
    for item in values:
        if not isinstance(item, Value):
            _check_value(item, "exps_shifted() arguments")
        v: Value = item
        e = math.exp(v._data + c)
        out.append(_unary(SHIFTED_EXP, e, v, e))
    return out


def weighted_sum(weights: Sequence[Value], vectors: Sequence[Sequence[Value]]) -> list[Value]:
    """`[dot(weights, [v[j] for v in vectors]) for j in range(len(vectors[0]))]`:
    the sum of the vectors, each times its weight, node for node (the dot
    nodes share one tuple of the weights)."""
    ws: tuple[Value, ...] = tuple(weights)
    rows: list[tuple[Value, ...]] = [tuple(v) for v in vectors]
    if len(rows) != len(ws):
        raise ValueError(
            f"weighted_sum() of {len(ws)} weights and {len(rows)} vectors: one weight per vector"
        )
    width: cython.Py_ssize_t = len(rows[0]) if rows else 0
    if any(len(row) != width for row in rows):
        raise ValueError("weighted_sum() of vectors of different lengths")
    out: list[Value] = []
    j: cython.Py_ssize_t
    for j in range(width):
        inputs: _Inputs = _inputs([row[j] for row in rows], 1, "weighted_sum")
        try:
            out.append(_dot_row(_row(ws, inputs, "weighted_sum"), inputs, 0))
        except (AttributeError, TypeError):
            _check_values(ws, "weighted_sum")
            raise
    return out


def attend(
    q: Sequence[Value], keys: Sequence[Sequence[Value]], values: Sequence[Sequence[Value]]
) -> list[Value]:
    """One attention head for one query, one node per output:

        scores = scaled_dots(q, keys, len(q) ** 0.5)  # [dot(q, k) / len(q)**0.5 ...]
        max_val = max(s.data for s in scores)
        exps = exps_shifted(scores, max_val)          # [(s - max_val).exp() ...]
        total = vsum(exps)
        weights = [e / total for e in exps]
        return weighted_sum(weights, values)

    with the same floats forward and backward. The scores, exps, total and
    weights are C doubles here, not nodes. Each output o_j is a node; the
    first one the traversal reaches walks its inputs in the order that the
    chain above would (q and each key through the scores, then each value
    through o_j's terms) and is scheduled once per step of that chain's
    backward pass, where the chain's node would have been: the steps that
    come between two inputs' subtrees run together, last first (see
    `_head_step`). The other outputs are scheduled term by term, as dots.
    So every gradient, inside and out, is added up in the chain's order.
    """
    core: _Head = _head(q, keys, values)
    n_out: cython.Py_ssize_t = core.width_v
    t_len: cython.Py_ssize_t = core.t_len
    out: list[Value] = []
    j: cython.Py_ssize_t
    t: cython.Py_ssize_t
    o: cython.double
    for j in range(n_out):
        o = 0.0
        for t in range(t_len):  # the running sum of dot(weights, column j) from 0
            o += core.p[t] * core.v_val[t * n_out + j]
        if not _recording:
            out.append(_constant(o))
            continue
        node: Value = _set_fields(Value.__new__(Value), o, ATTEND, None, 0.0, None, 0.0)
        node._right = core
        node._local1 = j  # which output (a whole number, exact as a double)
        out.append(node)
    return out


@cython.no_gc
@cython.cclass
class _Inputs:
    """The x of a dot node; the rows of a `linear` share one. `values` are
    the x_i at forward time, d(row)/d(w_i) for every row. `visited` is the
    last traversal that found all of x reached, so that the next row can pass
    over it at once. Compiled, it also holds the rows' `_left_values`, all
    in one block."""

    if cython.compiled:
        items: tuple[Value, ...]
        values: cython.p_double
        row_values: cython.p_double  # row r's w_i at [r * n + i]
        visited: cython.longlong
    else:
        __slots__ = ("items", "values", "row_values", "visited")

    def __dealloc__(self) -> None:  # compiled only
        _free_doubles(self.values)  # (row_values are in the same block)


@cython.final
@cython.no_gc
@cython.cclass
class _Head(_Inputs):
    """What the outputs of one `attend` share: its inputs (q in `items`),
    their values and the chain's values at forward time, and the gradients
    of the chain's nodes during a backward pass. Compiled, the doubles are
    one block (`values`, freed with it); interpreted, lists."""

    if cython.compiled:
        q_items: list[Value]  # (lists, not tuples: CPython 3.11 never reuses a
        k_items: list[Value]  # freed tuple of 20 items, so a step that freed many
        v_items: list[Value]  # would keep up to 2,000 of them for good)
        t_len: cython.Py_ssize_t  # positions
        width: cython.Py_ssize_t  # of q and each key
        width_v: cython.Py_ssize_t  # of each value
        c: cython.double  # the scores' factor, len(q)**0.5 ** -1
        r: cython.double  # total**-1
        d: cython.double  # its slope, -1 * total**-2
        g_total: cython.double  # the gradient of the total
        entry: cython.Py_ssize_t  # the output the traversal reached first
        k_val: cython.p_double  # key t's [i] at t * width + i
        v_val: cython.p_double  # value t's [j] at t * width_v + j
        e: cython.p_double  # the exps
        p: cython.p_double  # the weights
        g_s: cython.p_double  # the gradients of the scores' dot nodes
        g_e: cython.p_double  # of the exps
        g_p: cython.p_double  # of the weights
    else:
        __slots__ = (
            "q_items", "k_items", "v_items", "t_len", "width", "width_v",
            "c", "r", "d", "g_total", "entry", "k_val", "v_val", "e", "p", "g_s", "g_e", "g_p",
        )  # fmt: skip


@cython.cfunc
def _head(
    q: Sequence[Value], keys: Sequence[Sequence[Value]], vals: Sequence[Sequence[Value]]
) -> _Head:
    """The shared part of `attend`'s outputs, its forward pass done."""
    core: _Head = _Head.__new__(_Head)
    core.items = ()
    core.q_items = list(q)
    key_rows: list[tuple[Value, ...]] = [tuple(k) for k in keys]
    value_rows: list[tuple[Value, ...]] = [tuple(v) for v in vals]
    t_len: cython.Py_ssize_t = len(key_rows)
    width: cython.Py_ssize_t = len(core.q_items)
    if t_len == 0 or t_len != len(value_rows) or width == 0:
        raise ValueError(
            f"attend() of {width} query values, {t_len} keys and {len(value_rows)} values: "
            "one value per key, and at least one of each"
        )
    width_v: cython.Py_ssize_t = len(value_rows[0])
    if any(len(k) != width for k in key_rows) or any(len(v) != width_v for v in value_rows):
        raise ValueError("attend() of keys or values of different lengths")
    core.k_items = _flattened(key_rows, t_len * width)
    core.v_items = _flattened(value_rows, t_len * width_v)
    core.t_len, core.width, core.width_v = t_len, width, width_v
    core.visited = 0
    core.entry = -1
    core.g_total = 0.0
    _head_blocks(core)
    if not (
        _read_values(core.q_items, core.values)
        and _read_values(core.k_items, core.k_val)
        and _read_values(core.v_items, core.v_val)
    ):
        _check_values(core.q_items + core.k_items + core.v_items, "attend")
    _head_forward(core)
    return core


@cython.cfunc
def _flattened(rows: list[tuple[Value, ...]], n: cython.Py_ssize_t) -> list[Value]:
    """The rows' items in one list of n (the rows' lengths add up to n)."""
    if not cython.compiled:
        return [item for row in rows for item in row]
    out: list[Value] = PyList_New(n)
    k: cython.Py_ssize_t = 0
    i: cython.Py_ssize_t
    p: cython.pointer[PyObject]
    for row in rows:
        for i in range(len(row)):
            p = PyTuple_GET_ITEM(row, i)
            Py_XINCREF(p)
            PyList_SET_ITEM(out, k, cython.cast(object, p))
            k += 1
    return out


@cython.cfunc
def _read_values(items: list[Value], out: cython.p_double) -> cython.bint:
    """Copies the items' values to out; False if an item is not a Value."""
    n: cython.Py_ssize_t = len(items)
    i: cython.Py_ssize_t
    if not cython.compiled:
        if not all(isinstance(item, Value) for item in items):
            return False
        out[:] = [item._data for item in items]
        return True
    p: cython.pointer[PyObject]
    for i in range(n):
        p = PyList_GET_ITEM(items, i)
        if Py_TYPE(cython.cast(object, p)) != _VALUE_TYPE:
            return False
        out[i] = cython.cast(Value, p)._data
    return True


@cython.cfunc
def _head_blocks(core: _Head) -> cython.void:
    """Room for q's, the keys' and values' values and the chain's doubles."""
    t_len: cython.Py_ssize_t = core.t_len
    nk: cython.Py_ssize_t = t_len * core.width
    nv: cython.Py_ssize_t = t_len * core.width_v
    if not cython.compiled:
        core.values = [0.0] * core.width
        core.k_val, core.v_val = [0.0] * nk, [0.0] * nv
        core.e, core.p = [0.0] * t_len, [0.0] * t_len
        core.g_s, core.g_e, core.g_p = [0.0] * t_len, [0.0] * t_len, [0.0] * t_len
        return
    block: cython.p_double = _new_doubles(core.width + nk + nv + 5 * t_len)
    core.values = block
    core.k_val = block + core.width  # type: ignore[operator] # (C pointers)
    core.v_val = core.k_val + nk  # type: ignore[operator]
    core.e = core.v_val + nv  # type: ignore[operator]
    core.p = core.e + t_len  # type: ignore[operator]
    core.g_s = core.p + t_len  # type: ignore[operator]
    core.g_e = core.g_s + t_len  # type: ignore[operator]
    core.g_p = core.g_e + t_len  # type: ignore[operator]


@cython.cfunc
def _head_forward(core: _Head) -> cython.void:
    """The scores, exps and weights of `attend`, as its docstring's chain
    computes them (the scores go in `e` first)."""
    t_len: cython.Py_ssize_t = core.t_len
    width: cython.Py_ssize_t = core.width
    divisor: float = width**0.5
    core.c = operator.pow(divisor, -1)
    t: cython.Py_ssize_t
    i: cython.Py_ssize_t
    s: cython.double
    for t in range(t_len):
        s = 0.0
        for i in range(width):
            s += core.values[i] * core.k_val[t * width + i]
        core.e[t] = s * core.c
    max_val: cython.double = core.e[0]  # max() keeps the first of equals, and skips NaNs after it
    for t in range(1, t_len):
        if core.e[t] > max_val:
            max_val = core.e[t]
    shift: cython.double = -max_val
    total: cython.double = 0.0
    for t in range(t_len):  # libm's exp, as math.exp (which can raise only above 0)
        core.e[t] = _libm_exp(core.e[t] + shift) if cython.compiled else math.exp(core.e[t] + shift)
        total += core.e[t]
    scratch: Value = _constant(0.0)  # total**-1 and its slope, as a ** node computes them
    _power_and_slope(scratch, total, -1)
    core.r, core.d = scratch._data, scratch._local1
    for t in range(t_len):
        core.p[t] = core.e[t] * core.r


@cython.cfunc
def _inputs(x: Sequence[Value], rows: cython.Py_ssize_t, name: str) -> _Inputs:
    """The shared x of `rows` dot nodes: its items (a copy, unless a tuple:
    the nodes keep it) and their values now."""
    items: tuple[Value, ...] = tuple(x)
    n: cython.Py_ssize_t = len(items)
    inputs: _Inputs = _Inputs.__new__(_Inputs)
    inputs.items = items
    inputs.visited = 0
    if not cython.compiled:
        try:
            inputs.values = [item._data for item in items]
        except AttributeError:  # an item that is not a Value
            _check_values(items, name)
            raise
        return inputs
    if not _all_values(items, n):
        _check_values(items, name)
        raise TypeError()
    block: cython.p_double = _new_doubles(n + (rows * n if _recording else 0))
    i: cython.Py_ssize_t
    for i in range(n):
        block[i] = _data_at(items, i)
    inputs.values = block
    inputs.row_values = block + n  # type: ignore[operator] # (a C pointer)
    return inputs


@cython.cfunc
def _row(w: Sequence[Value], inputs: _Inputs, name: str) -> tuple[Value, ...]:
    row: tuple[Value, ...] = tuple(w)  # a copy (unless a tuple): the node keeps it
    if len(row) != len(inputs.items):
        raise ValueError(
            f"{name}() of vectors of different lengths ({len(row)} and {len(inputs.items)})"
        )
    if not row:
        raise ValueError(f"{name}() of empty vectors")
    return row


@cython.cfunc
def _dot_row(ws: tuple[Value, ...], inputs: _Inputs, r: cython.Py_ssize_t) -> Value:
    """Row r's dot node, sum(w_i * x_i), given its w and the shared x."""
    x_data: cython.p_double = inputs.values
    w_data: cython.p_double
    if not cython.compiled:
        w_data = [w._data for w in ws]
        total = 0.0
        for w_i, x_i in zip(w_data, x_data):
            total += w_i * x_i
        if not _recording:
            return _constant(total)
        # (whether the w_i are all leaves is left to the traversal to find out:
        # it needs to know for only some rows)
        return _fused(total, ws, inputs, w_data, False)
    # compiled: the same float operations, in one loop over C doubles, which
    # reads the tuple through borrowed references
    n: cython.Py_ssize_t = len(ws)
    if not _all_values(ws, n):
        raise TypeError()
    i: cython.Py_ssize_t
    w: cython.pointer[PyObject]
    sum_: cython.double = 0.0
    if not _recording:
        for i in range(n):
            sum_ += _data_at(ws, i) * x_data[i]
        return _constant(sum_)
    w_data = inputs.row_values + r * n  # type: ignore[operator] # (a C pointer)
    leaves: cython.bint = True
    for i in range(n):
        w = PyTuple_GET_ITEM(ws, i)
        # -ffp-contract=off: never one fused multiply-add
        sum_ += cython.cast(Value, w)._data * x_data[i]
        w_data[i] = cython.cast(Value, w)._data  # d(w*x)/dx
        if cython.cast(Value, w)._op != LEAF:
            leaves = False
    return _fused(sum_, ws, inputs, w_data, leaves)


@cython.cfunc
@cython.inline
def _data_at(items: tuple[Value, ...], i: cython.Py_ssize_t) -> cython.double:
    """Compiled: items[i]._data, through a borrowed reference."""
    data: cython.double = cython.cast(Value, PyTuple_GET_ITEM(items, i))._data
    return data


@cython.cfunc
@cython.inline
def _all_values(items: tuple[Value, ...], n: cython.Py_ssize_t) -> cython.bint:
    """Compiled: whether the first n items are all Values (None is not)."""
    i: cython.Py_ssize_t
    for i in range(n):
        if Py_TYPE(cython.cast(object, PyTuple_GET_ITEM(items, i))) != _VALUE_TYPE:
            return False
    return True


@cython.cfunc
def _vsum(vs: tuple[Value, ...]) -> Value:
    if not cython.compiled:
        total = functools.reduce(operator.add, map(_data_of, vs), 0.0)
        return _fused(total, vs, None, cython.NULL, False) if _recording else _constant(total)
    n: cython.Py_ssize_t = len(vs)
    if not _all_values(vs, n):
        raise TypeError()
    i: cython.Py_ssize_t
    sum_: cython.double = 0.0
    for i in range(n):
        sum_ += _data_at(vs, i)
    if not _recording:
        return _constant(sum_)
    return _fused(sum_, vs, None, cython.NULL, False)


@cython.cfunc
def _fused(
    data: cython.double,
    left: tuple[Value, ...],
    right: _Inputs | None,
    left_values: cython.p_double,
    left_leaves: cython.bint,
) -> Value:
    """A dot node (with `right`) or a sum node (without; each local gradient is 1)."""
    node: Value = Value.__new__(Value)
    _set_fields(node, data, SUM if right is None else DOT, None, 0.0, None, 0.0)
    node._left = left
    node._right = right
    node._left_values = left_values
    node._left_leaves = left_leaves
    return node


@cython.cfunc
@cython.inline
def _operand_count(node: Value) -> cython.Py_ssize_t:
    """A dot or sum node's number of children: two per term of a dot."""
    n: cython.Py_ssize_t = len(node._left)  # type: ignore[arg-type]
    return n if node._right is None else 2 * n


@cython.cfunc
@cython.inline
def _operand(node: Value, k: cython.Py_ssize_t) -> Value:
    """A dot or sum node's child k: w_(k/2) or x_(k/2) of a dot, v_k of a sum."""
    if node._right is None:
        return node._left[k]  # type: ignore[index]
    if k & 1:
        return node._right.items[k >> 1]
    return node._left[k >> 1]  # type: ignore[index]


def _operand_grad(node: Value, k: cython.Py_ssize_t) -> float:
    """d(node)/d(child k) of a dot or sum node (times c for a scaled dot)."""
    c: cython.double = node._local1 if node._op == SCALED_DOT else 1.0
    if node._right is None:
        return 1.0
    if k & 1:
        return node._left_values[k >> 1] * c  # d(w*x)/dx = w
    return node._right.values[k >> 1] * c  # d(w*x)/dw = x


@cython.cfunc
def _new_doubles(n: cython.Py_ssize_t) -> cython.p_double:
    """Compiled: room for n C doubles (interpreted, lists hold the floats)."""
    p: cython.p_double = cython.cast(
        cython.p_double, PyMem_Malloc(n * cython.sizeof(cython.double))
    )
    if p == cython.NULL:
        raise MemoryError()
    return p


@cython.cfunc
@cython.inline
def _free_doubles(p: cython.p_double) -> cython.void:
    """Compiled: frees what `_new_doubles` gave."""
    PyMem_Free(p)


@cython.cfunc
@cython.inline
def _owned(obj: object) -> cython.pointer[PyObject]:
    """Compiled: a new reference to obj, as a C pointer (see Value.__dealloc__)."""
    p: cython.pointer[PyObject] = cython.cast(cython.pointer[PyObject], obj)
    Py_XINCREF(p)
    return p


@cython.cfunc
@cython.inline
def _park(p: cython.pointer[PyObject]) -> cython.void:
    """Compiled: hands a reference from `_owned` to the list of objects that
    the outermost free releases (see Value.__dealloc__)."""
    if p != cython.NULL:
        _pending_free.append(cython.cast(object, p))
        Py_XDECREF(p)


# --- the order of backpropagation ------------------------------------------------


@cython.cfunc
def _depth_first(root: Value, order: list[Value], run_starts: list[int] | None) -> cython.void:
    """The original's recursive depth-first search, on an explicit stack so
    that no graph is too deep for it, appending nodes to `order` as the
    recursion would have finished them (children before parents).

    With `run_starts` None: every node once. Otherwise the backward
    schedule: only nodes with children (a leaf passes nothing on), and a dot
    or sum node once per term, right after that term's operands, which is
    where the chain of + and * nodes it replaces would have finished each of
    its nodes. Consecutive terms merge into one run (its first term goes to
    `run_starts`), since only leaves, which do nothing, can lie between them.
    """
    global _traversals
    _traversals += 1
    mark: cython.longlong = _traversals
    parents: list[Value] = []  # the path from root down to node
    node: Value = root
    child: Value | None
    node._visited = mark
    node._cursor = 0
    while True:
        if node._left is not None:
            child = _next_operand(node, mark, order, run_starts)
        elif node._right is not None:  # an output of attend()
            child = _next_head_operand(node, mark, order, run_starts)
        else:
            child = _next_child(node, mark)
        if child is not None:
            child._visited = mark
            child._cursor = 0
            parents.append(node)
            node = child
            continue
        # every child of node is done: the recursion would return from it here
        if run_starts is None:
            order.append(node)
        elif node._child1 is not None:
            order.append(node)
        if not parents:
            return
        node = parents.pop()


@cython.cfunc
@cython.inline
def _next_child(node: Value, mark: cython.longlong) -> Value | None:
    """The next child of an ordinary node not reached yet (None when there is
    none), moving its cursor on."""
    child: Value | None
    if node._cursor == 0:
        node._cursor = 1
        child = node._child1
        if child is not None and child._visited != mark:
            return child
    if node._cursor == 1:
        node._cursor = 2
        child = node._child2
        if child is not None and child._visited != mark:
            return child
    return None


@cython.cfunc
def _next_operand(
    node: Value, mark: cython.longlong, order: list[Value], run_starts: list[int] | None
) -> Value | None:
    """`_next_child` of a dot or sum node; the terms whose operands are all
    done by then are scheduled, as one run."""
    inputs: _Inputs | None = node._right
    term_size: cython.Py_ssize_t = 1 if inputs is None else 2  # v_i, or w_i and x_i
    n: cython.Py_ssize_t = term_size * len(node._left)  # type: ignore[arg-type]
    start: cython.Py_ssize_t = node._cursor
    j: cython.Py_ssize_t
    if start == 0 and inputs is not None and inputs.visited == mark and run_starts is not None:
        j = _skip_reached_weights(node, mark)  # x was all reached through a sibling row
    else:
        j = _skip_reached_operands(node, start, n, mark, order, run_starts is None)
    if run_starts is not None:
        # the first term that ends after `start` (at it, for a term's last
        # operand just finished), if it ends by j; a new run unless only
        # leaves came since the node's previous term (then that run goes on)
        term: cython.Py_ssize_t = (start - 1) // term_size if start > 0 else 0
        if (term + 1) * term_size <= j and not (order and order[len(order) - 1] is node):
            order.append(node)
            run_starts.append(term)
    if j == n:
        node._cursor = n
        if inputs is not None:
            inputs.visited = mark
        return None
    node._cursor = j + 1
    return _operand(node, j)


@cython.cfunc
@cython.inline
def _skip_reached_operands(
    node: Value,
    start: cython.Py_ssize_t,
    n: cython.Py_ssize_t,
    mark: cython.longlong,
    order: list[Value],
    keep_leaves: cython.bint,
) -> cython.Py_ssize_t:
    """The first child from `start` on that the search must go down into (n if
    none): children reached before are passed over, and leaves are reached on
    the way, since nothing lies below them (listed in `order` if keep_leaves)."""
    left: tuple[Value, ...] = node._left  # type: ignore[assignment]
    right: tuple[Value, ...] = left if node._right is None else node._right.items
    shift: cython.Py_ssize_t = 0 if node._right is None else 1  # child k is term k >> shift
    k: cython.Py_ssize_t
    if not cython.compiled:
        for k in range(start, n):
            child = right[k >> 1] if k & shift else left[k >> shift]
            if child._visited != mark:
                if child._op != LEAF:
                    return k
                child._visited = mark
                if keep_leaves:
                    order.append(child)
        return n
    # compiled: the same loop over borrowed references, which it reads and
    # marks without touching their reference counts
    item: cython.pointer[PyObject]
    k = start
    while k < n:
        item = PyTuple_GET_ITEM(right, k >> 1) if k & shift else PyTuple_GET_ITEM(left, k >> shift)
        if cython.cast(Value, item)._visited != mark:
            if cython.cast(Value, item)._op != LEAF:
                break
            cython.cast(Value, item)._visited = mark
            if keep_leaves:
                order.append(cython.cast(Value, item))
        k += 1
    return k


@cython.cfunc
@cython.inline
def _skip_reached_weights(node: Value, mark: cython.longlong) -> cython.Py_ssize_t:
    """`_skip_reached_operands` from 0 of a dot node whose x is all reached:
    only its w_i can need going into (and leaves need no mark to be skipped)."""
    ws: tuple[Value, ...] = node._left  # type: ignore[assignment]
    n: cython.Py_ssize_t = len(ws)
    if node._left_leaves:
        return 2 * n
    if not cython.compiled:
        if not any(map(_op_of, ws)):  # all leaves (op code 0), checked in C
            return 2 * n
        for i in range(n):
            w = ws[i]
            if w._visited != mark and w._op != LEAF:
                return 2 * i
        return 2 * n
    w_: cython.pointer[PyObject]
    i_: cython.Py_ssize_t
    for i_ in range(n):  # compiled: over borrowed references
        w_ = PyTuple_GET_ITEM(ws, i_)
        if cython.cast(Value, w_)._visited != mark and cython.cast(Value, w_)._op != LEAF:
            return 2 * i_
    return 2 * n


# An output of attend() goes through its steps: the nodes of the chain that
# attend() stands for, in the order the chain's backward pass has them
# (children before parents), each step with the inputs the traversal must
# have been through before it (at most two; see _head_operand). The output
# the traversal reaches first (the core's `entry`) takes the whole chain:
# per position t, the score's dot terms (q_i, k_ti) then its exp and the
# total's term t; then per position t the weight and the output's term t
# (v_tj). Every other output takes only its own terms t (v_tj). A node's
# cursor is 2 * step + the input of the step it looks at next.


@cython.cfunc
def _next_head_operand(
    node: Value, mark: cython.longlong, order: list[Value], run_starts: list[int] | None
) -> Value | None:
    """`_next_operand` of an output of attend(): the next input to go into,
    the steps done by then scheduled as one run."""
    core: _Head = node._right  # type: ignore[assignment]
    j: cython.Py_ssize_t = cython.cast(cython.Py_ssize_t, node._local1)
    start: cython.Py_ssize_t = node._cursor
    if start == 0 and core.visited != mark:  # the first output reached: the whole chain
        core.visited = mark
        core.entry = j
        _zero_head_gradients(core)
    keep_leaves: cython.bint = run_starts is None
    width: cython.Py_ssize_t = core.width
    block: cython.Py_ssize_t = width + 2  # a score's steps: its dot terms, exp, total term
    t: cython.Py_ssize_t
    i: cython.Py_ssize_t
    k: cython.Py_ssize_t
    step: cython.Py_ssize_t = start >> 1
    n: cython.Py_ssize_t  # the output's steps
    pos: cython.Py_ssize_t = -1  # the input slot to go into (-1: none)
    if core.entry != j:  # its terms: v_tj
        n = core.t_len
        for t in range(step, n):
            if _must_enter(core.v_items, t * core.width_v + j, mark, order, keep_leaves):
                pos = 2 * t
                break
    else:
        n = core.t_len * (block + 2)
        scores_end: cython.Py_ssize_t = core.t_len * block
        if step < scores_end:  # the scores' terms: q_i, k_ti
            t = step // block
            i = step - t * block
            k = start & 1
            while t < core.t_len and pos < 0:
                if i < width:
                    if k == 0 and _must_enter(core.q_items, i, mark, order, keep_leaves):
                        pos = 2 * (t * block + i)
                    elif _must_enter(core.k_items, t * width + i, mark, order, keep_leaves):
                        pos = 2 * (t * block + i) + 1
                k = 0
                i += 1
                if i == block:
                    i = 0
                    t += 1
            step = scores_end
        if pos < 0:  # then, per position, weight t and the output's term t (v_tj)
            for t in range((step - scores_end) >> 1, core.t_len):
                if _must_enter(core.v_items, t * core.width_v + j, mark, order, keep_leaves):
                    pos = 2 * (scores_end + 2 * t + 1)
                    break
    done: cython.Py_ssize_t = 2 * n if pos < 0 else pos  # the slots passed
    if run_starts is not None:
        first: cython.Py_ssize_t = (start - 1) >> 1 if start > 0 else 0
        if 2 * (first + 1) <= done and not (order and order[len(order) - 1] is node):
            order.append(node)
            run_starts.append(first)
    if pos < 0:
        node._cursor = 2 * n
        return None
    node._cursor = pos + 1
    return _slot_item(node, pos)


@cython.cfunc
@cython.inline
def _must_enter(
    items: list[Value],
    i: cython.Py_ssize_t,
    mark: cython.longlong,
    order: list[Value],
    keep_leaves: cython.bint,
) -> cython.bint:
    """Whether the search must go into items[i]: reached before, it must
    not; a leaf it reaches on the way (listed in `order` if keep_leaves)."""
    if not cython.compiled:
        item = items[i]
        if item._visited == mark:
            return False
        if item._op != LEAF:
            return True
        item._visited = mark
        if keep_leaves:
            order.append(item)
        return False
    p: cython.pointer[PyObject] = PyList_GET_ITEM(items, i)
    if cython.cast(Value, p)._visited == mark:
        return False
    if cython.cast(Value, p)._op != LEAF:
        return True
    cython.cast(Value, p)._visited = mark
    if keep_leaves:
        order.append(cython.cast(Value, p))
    return False


@cython.cfunc
def _slot_item(node: Value, pos: cython.Py_ssize_t) -> Value:
    """The input in slot pos (2 * step + k) of an attend() output."""
    core: _Head = node._right  # type: ignore[assignment]
    j: cython.Py_ssize_t = cython.cast(cython.Py_ssize_t, node._local1)
    step: cython.Py_ssize_t = pos >> 1
    if core.entry != j:
        return _item(core.v_items, step * core.width_v + j)
    block: cython.Py_ssize_t = core.width + 2
    scores_end: cython.Py_ssize_t = core.t_len * block
    if step >= scores_end:
        return _item(core.v_items, ((step - scores_end) >> 1) * core.width_v + j)
    t: cython.Py_ssize_t = step // block
    i: cython.Py_ssize_t = step - t * block
    return _item(core.q_items, i) if pos & 1 == 0 else _item(core.k_items, t * core.width + i)


@cython.cfunc
@cython.inline
def _item(items: list[Value], i: cython.Py_ssize_t) -> Value:
    """items[i] (compiled, without checking i)."""
    if not cython.compiled:
        return items[i]
    item: Value = cython.cast(Value, PyList_GET_ITEM(items, i))
    return item


@cython.cfunc
def _zero_head_gradients(core: _Head) -> cython.void:
    core.g_total = 0.0
    t: cython.Py_ssize_t
    for t in range(core.t_len):
        core.g_s[t] = 0.0
        core.g_e[t] = 0.0
        core.g_p[t] = 0.0


@cython.cfunc
def _head_steps(
    node: Value, first: cython.Py_ssize_t, end: cython.Py_ssize_t, g: cython.double
) -> cython.void:
    """The backward pass of an attend() output's steps first .. end-1, last
    one first, each as the chain's node would do it (g is the output's
    gradient; the chain's nodes' own are in the core)."""
    core: _Head = node._right  # type: ignore[assignment]
    j: cython.Py_ssize_t = cython.cast(cython.Py_ssize_t, node._local1)
    step: cython.Py_ssize_t
    if core.entry != j:
        for step in range(end - 1, first - 1, -1):
            _head_term(core, step, j, g)
        return
    block: cython.Py_ssize_t = core.width + 2
    scores_end: cython.Py_ssize_t = core.t_len * block
    t: cython.Py_ssize_t
    i: cython.Py_ssize_t
    for step in range(end - 1, first - 1, -1):
        if step >= scores_end:
            t = (step - scores_end) >> 1
            if (step - scores_end) & 1:
                _head_term(core, t, j, g)
            else:  # weight t = e_t / total: e_t * total**-1, one node as in _quotient
                core.g_e[t] += core.r * core.g_p[t]
                core.g_total += core.d * (core.e[t] * core.g_p[t])
            continue
        t = step // block
        i = step % block
        if i == core.width:  # exp t, whose child is score t's dot
            core.g_s[t] += core.e[t] * core.g_e[t]
        elif i == core.width + 1:  # the total's term t
            core.g_e[t] += core.g_total
        else:  # score t's dot term i, its gradient times c (see scaled_dots)
            _head_score_term(core, t, i, core.c * core.g_s[t])


@cython.cfunc
@cython.inline
def _head_term(
    core: _Head, t: cython.Py_ssize_t, j: cython.Py_ssize_t, g: cython.double
) -> cython.void:
    """Output j's dot term t, weight t times v_tj (see _pass_to_dot_terms)."""
    v: Value = _item(core.v_items, t * core.width_v + j)
    v._grad += core.p[t] * g
    core.g_p[t] += core.v_val[t * core.width_v + j] * g


@cython.cfunc
@cython.inline
def _head_score_term(
    core: _Head, t: cython.Py_ssize_t, i: cython.Py_ssize_t, g: cython.double
) -> cython.void:
    """Score t's dot term i, q_i times k_ti (see _pass_to_dot_terms)."""
    k: Value = _item(core.k_items, t * core.width + i)
    k._grad += core.values[i] * g
    q: Value = _item(core.q_items, i)
    q._grad += core.k_val[t * core.width + i] * g


def _head_children(node: Value) -> tuple[Value, ...]:
    """An attend() output's children: q, every key, and its column of the values."""
    core: _Head = node._right  # type: ignore[assignment]
    j, width_v = int(node._local1), core.width_v
    return tuple(core.q_items + core.k_items + core.v_items[j::width_v])


def _head_local_grads(node: Value) -> tuple[float, ...]:
    """d(o_j)/d(child) for `_head_children` (for display: these are not the
    floats backward() adds up). With z_t = c * q.k_t, d(o_j)/d(z_t) is
    p_t * (v_tj - o_j)."""
    core: _Head = node._right  # type: ignore[assignment]
    j, t_len, width, width_v = int(node._local1), core.t_len, core.width, core.width_v
    dz = [core.p[t] * (core.v_val[t * width_v + j] - node._data) * core.c for t in range(t_len)]
    dq = [sum(dz[t] * core.k_val[t * width + i] for t in range(t_len)) for i in range(width)]
    dk = [dz[t] * core.values[i] for t in range(t_len) for i in range(width)]
    return tuple(dq + dk + [core.p[t] for t in range(t_len)])


def _backward_schedule(root: Value) -> tuple[list[Value], list[int]]:
    """The nodes `backward()` passes gradients from, in topological order,
    and for each run of dot/sum terms in it, its first term."""
    order: list[Value] = []
    run_starts: list[int] = []
    _depth_first(root, order, run_starts)
    return order, run_starts


@cython.cfunc
def _propagate(order: list[Value], run_starts: list[int]) -> cython.void:
    """The chain rule over the schedule, parents first (see backward())."""
    first: cython.Py_ssize_t
    node: Value
    g: cython.double
    for node in reversed(order):
        g = node._grad
        if node._left is None and node._right is not None:  # an output of attend()
            first = run_starts.pop()
            _head_steps(node, first, node._cursor // 2, g)
            node._cursor = 2 * first
            continue
        if node._left is None:
            node._child1._grad += node._local1 * g  # type: ignore[union-attr]
            if node._child2 is not None:
                if node._op == DIV:  # through b**-1, whose gradient is a * g
                    node._child2._grad += node._local3 * (node._local2 * g)
                else:
                    node._child2._grad += node._local2 * g
            continue
        if node._op == SCALED_DOT:  # the dot's gradient, from its "/ divisor" node
            g = node._local1 * g
        # A run of terms, last term first, as the chain's nodes came in reverse;
        # the node's cursor is where the run after this one started.
        first = run_starts.pop()
        if node._right is None:
            _pass_to_sum_terms(node._left, first, node._cursor, g)
            node._cursor = first
        else:
            _pass_to_dot_terms(node, first, node._cursor // 2, g)
            node._cursor = 2 * first


@cython.cfunc
@cython.inline
def _pass_to_sum_terms(
    vs: tuple[Value, ...], first: cython.Py_ssize_t, end: cython.Py_ssize_t, g: cython.double
) -> cython.void:
    """v.grad += 1.0 * g for v_first .. v_(end-1), last one first (1.0 * g is g)."""
    if not cython.compiled:
        for v in reversed(vs[first:end]):
            v._grad += g
        return
    k: cython.Py_ssize_t
    item: cython.pointer[PyObject]
    for k in range(end - 1, first - 1, -1):  # compiled: over borrowed references
        item = PyTuple_GET_ITEM(vs, k)
        cython.cast(Value, item)._grad = cython.cast(Value, item)._grad + g


@cython.cfunc
@cython.inline
def _pass_to_dot_terms(
    node: Value, first: cython.Py_ssize_t, end: cython.Py_ssize_t, g: cython.double
) -> cython.void:
    """w.grad += x * g and x.grad += w * g (values at forward time) for the
    terms first .. end-1, last one first. Within a term, w and x are two
    different nodes, or one node given the same amount twice: their order
    does not matter."""
    ws: tuple[Value, ...] = node._left  # type: ignore[assignment]
    xs: tuple[Value, ...] = node._right.items  # type: ignore[union-attr]
    w_data: cython.p_double = node._left_values
    x_data: cython.p_double = node._right.values  # type: ignore[union-attr]
    k: cython.Py_ssize_t
    if not cython.compiled:
        for k in range(end - 1, first - 1, -1):
            xs[k]._grad += w_data[k] * g
            ws[k]._grad += x_data[k] * g
        return
    x: cython.pointer[PyObject]
    w: cython.pointer[PyObject]
    for k in range(end - 1, first - 1, -1):  # compiled: over borrowed references
        x = PyTuple_GET_ITEM(xs, k)
        cython.cast(Value, x)._grad = cython.cast(Value, x)._grad + w_data[k] * g
        w = PyTuple_GET_ITEM(ws, k)
        cython.cast(Value, w)._grad = cython.cast(Value, w)._grad + x_data[k] * g


# --- no_grad ----------------------------------------------------------------------


class no_grad:  # noqa: N801 - named like the context manager users know from PyTorch
    """`with no_grad():` ops compute their values but record no graph (as for
    sampling, where nothing is backpropagated): faster, and nothing to free."""

    def __enter__(self) -> None:
        global _recording
        self._was_recording: bool = _recording
        _recording = False

    def __exit__(self, *exc: object) -> None:
        global _recording
        _recording = self._was_recording


# --- checks at the edges ------------------------------------------------------------


def _number(value: object, what: str) -> float:
    """`value` as a float, if it is a number (both engines accept the same)."""
    if not isinstance(value, (int, float)):
        raise TypeError(f"Value {what} must be a number, not {type(value).__name__}")
    return float(value)


def _checked_children(
    children: Sequence[Value], local_grads: Sequence[float]
) -> tuple[Value | None, float, Value | None, float]:
    kids = tuple(children)
    grads = tuple(local_grads)
    if len(kids) != len(grads) or len(kids) > 2:
        raise ValueError("a Value takes at most two children, each with one local gradient")
    for kid in kids:
        _check_value(kid, "children")
    locals_ = [_number(g, "local gradient") for g in grads] + [0.0, 0.0]
    first: Value | None = kids[0] if len(kids) > 0 else None
    second: Value | None = kids[1] if len(kids) > 1 else None
    return first, locals_[0], second, locals_[1]


def _check_values(items: Sequence[object], where: str) -> None:
    for item in items:
        _check_value(item, f"{where}() arguments")


def _check_value(item: object, what: str) -> None:
    if isinstance(item, Value):
        return
    _refuse_other_engine(item)
    raise TypeError(f"{what} must be Values, not {type(item).__name__}")


def _refuse_other_engine(other: object) -> None:
    """An op's operand that is not a Value of this engine nor a number gets
    NotImplemented (so Python tries the other operand's method), unless it is
    a Value of the other engine: then this says why they cannot be combined."""
    kind = type(other)
    if kind.__name__ == "Value" and kind.__module__ in ("microgpt.engine", "microgpt._engine"):
        raise TypeError(
            f"cannot combine Values of two engines ({kind.__module__} and {__name__}): "
            "use one engine per process (MICROGPT_PURE selects it)"
        )


def _op_code(name: str, has_children: bool) -> int:
    """The code of an op name, registering a new (hand-written) op's name;
    a node with children made without a name is UNNAMED, not a LEAF."""
    if not isinstance(name, str):
        raise TypeError(f"op must be a str, not {type(name).__name__}")
    if name not in OP_NAMES:
        if len(OP_NAMES) >= 256:
            raise ValueError("too many distinct op names (at most 256)")
        _new_op(name)
    code = OP_NAMES.index(name)
    return UNNAMED if code == LEAF and has_children else code


@cython.cfunc
def _clear_children(node: Value) -> cython.void:
    """Compiled: empties the child fields of a node initialised before
    (`_set_fields` expects a new node's: None). Interpreted, it sets them all."""
    if cython.compiled and (node._child1 is not None or node._left is not None):
        node._child1, node._child2, node._left, node._right = None, None, None, None


# --- Adam ----------------------------------------------------------------------------


def adam_update(
    params: list[Value],
    m: array[float],
    v: array[float],
    lr_t: float,
    beta1: float,
    beta2: float,
    eps: float,
    bias1: float,
    bias2: float,
) -> None:
    """One Adam step over every parameter, then its gradient reset to zero.
    Raises FloatingPointError, changing nothing, if a gradient is NaN or inf.

    `m` and `v` are the running first and second moments (arrays of C
    doubles, so that updating one makes no Python float); `bias1` and `bias2`
    are `1 - beta1**t` and `1 - beta2**t`. This is the loop that
    `microgpt.optim.Adam` runs (in the original's float operations, in its
    order); it lives beside `Value` so that the compiled engine runs it over
    the C fields directly instead of through Python attributes.
    """
    n: cython.Py_ssize_t = len(params)
    if len(m) != n or len(v) != n:
        raise ValueError("adam_update: params, m and v must have the same length")
    p: Value
    for p in params:  # a NaN or infinite gradient would spoil the moments for good
        if not -_INF < p._grad < _INF:
            where = params.index(p)
            raise FloatingPointError(f"the gradient of parameter {where} is {p._grad!r}")
    if not TYPE_CHECKING:  # compiled, views of the arrays' C doubles
        m_of: cython.double[::1] = m
        v_of: cython.double[::1] = v
    else:  # (the type checker reads no C types)
        m_of, v_of = m, v
    one_minus_beta1: cython.double = 1 - beta1  # the same float each time: computed once
    one_minus_beta2: cython.double = 1 - beta2
    i: cython.Py_ssize_t
    g: cython.double
    m_i: cython.double
    v_i: cython.double
    m_hat: cython.double
    v_hat: cython.double
    for i, p in enumerate(params):
        g = p._grad
        m_i = beta1 * m_of[i] + one_minus_beta1 * g
        v_i = beta2 * v_of[i] + one_minus_beta2 * g**2
        m_of[i] = m_i
        v_of[i] = v_i
        m_hat = m_i / bias1
        v_hat = v_i / bias2
        p._data -= lr_t * m_hat / (v_hat**0.5 + eps)
        p._grad = 0.0
