"""Scalar autograd: the `Value` node and its backward pass.

Each op computes its forward value and the local derivative with respect to
each child, side by side; `backward()` applies the chain rule over the graph.
Below `Value` are the loops over many Values that dominate a training step:
`dot` and `vsum` (which build exactly the nodes `sum()` would) and
`adam_update` (the optimiser's per-parameter update).

This is one plain Python module that runs as it is (the readable engine) and
that `pip install .` also compiles with Cython's pure-Python mode (the fast
engine). The `cython.*` decorators and annotations below are only hints to
that compiler; interpreted, they do nothing.

Exactness: every float operation here happens in the same order as in the
original microgpt, so both engines give it the same float64 results bit for
bit. In particular `a - b` is `a + (-b)`, `a / b` is `a * b**-1`, and the
topological order of `backward()` is the original recursive one.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # type checkers read the typed stand-in
    from microgpt import _cython_shim as cython
else:
    try:
        import cython
    except ModuleNotFoundError:  # interpreted without Cython installed
        from microgpt import _cython_shim as cython

# True in the compiled extension, False when this file runs interpreted.
COMPILED: bool = cython.compiled
# The Cython that compiled this module (None when interpreted).
CYTHON_VERSION: str | None = cython.__version__ if cython.compiled else None

# Which op made a node, for display only (see `microgpt.graph`): nodes keep a
# small code, an index into OP_NAMES (a pointer to a name would make every node
# bigger).
OP_NAMES: list[str] = ["", "+", "*", "**", "log", "exp", "relu", "tanh", "sigmoid", "gelu"]
LEAF = cython.declare(cython.uchar, 0)
ADD = cython.declare(cython.uchar, 1)
MUL = cython.declare(cython.uchar, 2)
POW = cython.declare(cython.uchar, 3)
LOG = cython.declare(cython.uchar, 4)
EXP = cython.declare(cython.uchar, 5)
RELU = cython.declare(cython.uchar, 6)
TANH = cython.declare(cython.uchar, 7)
SIGMOID = cython.declare(cython.uchar, 8)
GELU = cython.declare(cython.uchar, 9)

# Each backward() pass marks the nodes it visits with a fresh epoch number,
# so no per-pass `visited` set is needed.
_epoch = cython.declare(cython.longlong, 0)

# Deep graphs are freed iteratively (see Value.__dealloc__): these hold the
# nodes waiting to be freed and how deeply nested the current free is.
_free_depth = cython.declare(cython.int, 0)
_pending_free = cython.declare(list, [])
_MAX_FREE_DEPTH = cython.declare(cython.int, 200)


@cython.final
@cython.auto_pickle(False)  # checkpoints are JSON; a node is never pickled
@cython.no_gc  # the graph has no cycles: reference counting frees it
@cython.cclass
class Value:
    """A scalar in a computation graph, with its gradient.

    `Value(data)` makes a leaf. `Value(data, children, local_grads)` makes a
    node by hand (at most two children): that is how a new op is written.
    """

    if cython.compiled:
        # C fields of the compiled type; interpreted, `__slots__` is used.
        data = cython.declare(cython.double, visibility="public")
        grad = cython.declare(cython.double, visibility="public")
        _a: Value | None  # first child (None for a leaf)
        _b: Value | None  # second child (None for fewer than two)
        _da: cython.double  # d(self)/d(_a)
        _db: cython.double  # d(self)/d(_b)
        _mark: cython.longlong  # the backward() pass that last visited it
        _next: cython.uchar  # which child the traversal looks at next
        _op: cython.uchar  # the op that made this node (OP_NAMES), for display
        # (in this order the struct is 80 bytes, a size class of CPython's allocator)
    else:
        __slots__ = ("data", "grad", "_a", "_b", "_da", "_db", "_op", "_mark", "_next")

    def __init__(
        self,
        data: int | float,
        children: Sequence[Value] = (),
        local_grads: Sequence[int | float] = (),
        op: str = "",
    ) -> None:
        # Checked by hand, so that both engines accept and refuse the same things.
        if not isinstance(data, (int, float)):
            raise TypeError(f"Value data must be a number, not {type(data).__name__}")
        if not isinstance(op, str):
            raise TypeError(f"op must be a str, not {type(op).__name__}")
        kids = tuple(children)
        grads = tuple(local_grads)
        if len(kids) != len(grads) or len(kids) > 2:
            raise ValueError("a Value takes at most two children, each with one local gradient")
        for kid in kids:
            if not isinstance(kid, Value):
                raise TypeError(f"children must be Values, not {type(kid).__name__}")
        for local in grads:
            if not isinstance(local, (int, float)):
                raise TypeError(f"local gradients must be numbers, not {type(local).__name__}")
        self.data = float(data)
        self.grad = 0.0
        self._a = kids[0] if len(kids) > 0 else None
        self._da = float(grads[0]) if len(grads) > 0 else 0.0
        self._b = kids[1] if len(kids) > 1 else None
        self._db = float(grads[1]) if len(grads) > 1 else 0.0
        self._op = _op_code(op)
        self._mark = 0
        self._next = 0

    # --- the ops: forward value, then local gradient(s) ---------------------

    def __add__(self, other: Value | float) -> Value:
        if isinstance(other, Value):
            o: Value = other
            return _node2(self.data + o.data, self, 1.0, o, 1.0, ADD)
        if isinstance(other, (int, float)):
            # a number is a constant: it needs no node of its own
            c: cython.double = other
            return _node1(self.data + c, self, 1.0, ADD)
        return NotImplemented

    def __mul__(self, other: Value | float) -> Value:
        if isinstance(other, Value):
            o: Value = other
            return _node2(self.data * o.data, self, o.data, o, self.data, MUL)
        if isinstance(other, (int, float)):
            k: cython.double = other
            return _node1(self.data * k, self, k, MUL)
        return NotImplemented

    def __pow__(self, other: float) -> Value:
        if not isinstance(other, (int, float)):
            return NotImplemented
        x: cython.double = self.data
        k: cython.double = other
        if x > 0.0 and -_EXACT_INT < k < _EXACT_INT:
            # The common case, straight through (libm's pow, as Python uses);
            # k - 1.0 is exact here, as other - 1 is in the original.
            out: cython.double = x**k
            d: cython.double = k * x ** (k - 1.0)
            if out < _INF and -_INF < d < _INF:
                return _node1(out, self, d, POW)
        # Everything else (0, negatives, overflow) with Python's semantics and errors.
        return _node1(_power(x, other), self, other * _power(x, other - 1), POW)

    def log(self) -> Value:
        x: cython.double = self.data
        return _node1(math.log(x), self, 1.0 / x, LOG)

    def exp(self) -> Value:
        e: cython.double = math.exp(self.data)
        return _node1(e, self, e, EXP)

    def relu(self) -> Value:
        x: cython.double = self.data
        return _node1(x if x > 0.0 else 0.0, self, 1.0 if x > 0.0 else 0.0, RELU)

    def tanh(self) -> Value:
        t: cython.double = math.tanh(self.data)
        return _node1(t, self, 1.0 - t * t, TANH)

    def sigmoid(self) -> Value:
        x: cython.double = self.data
        s: cython.double
        if x >= 0.0:
            s = 1.0 / (1.0 + math.exp(-x))
        else:  # the same value, without overflowing exp() for very negative x
            e: cython.double = math.exp(x)
            s = e / (1.0 + e)
        return _node1(s, self, s * (1.0 - s), SIGMOID)

    def gelu(self) -> Value:
        # tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        x: cython.double = self.data
        t: cython.double = math.tanh(_GELU_C * (x + 0.044715 * x * x * x))
        dt: cython.double = (1.0 - t * t) * _GELU_C * (1.0 + 3.0 * 0.044715 * x * x)
        return _node1(0.5 * x * (1.0 + t), self, 0.5 * (1.0 + t) + 0.5 * x * dt, GELU)

    # --- ops written in terms of the ones above, as the original does ------

    def __neg__(self) -> Value:
        return self * -1

    def __radd__(self, other: float) -> Value:
        return self + other

    def __sub__(self, other: Value | float) -> Value:
        return self + (-other)

    def __rsub__(self, other: float) -> Value:
        return other + (-self)

    def __rmul__(self, other: float) -> Value:
        return self * other

    def __truediv__(self, other: Value | float) -> Value:
        return self * other**-1

    def __rtruediv__(self, other: float) -> Value:
        return other * self**-1

    # --- the graph ----------------------------------------------------------

    @property
    def children(self) -> tuple[Value, ...]:
        """The nodes this one was computed from, in order."""
        if self._a is None:
            return ()
        if self._b is None:
            return (self._a,)
        return (self._a, self._b)

    @property
    def local_grads(self) -> tuple[float, ...]:
        """d(self)/d(child) for each child, in order."""
        if self._a is None:
            return ()
        if self._b is None:
            return (self._da,)
        return (self._da, self._db)

    @property
    def op(self) -> str:
        """The op that made this node ('' for a leaf)."""
        return OP_NAMES[self._op]

    def topological_order(self) -> list[Value]:
        """Every node this one depends on, children before parents.

        The order is that of the recursive depth-first search
        `visit(v): for c in v.children: visit(c); emit(v)` (each node once),
        kept on an explicit stack so that no graph is too deep for it.
        """
        global _epoch
        _epoch += 1
        epoch: cython.longlong = _epoch
        order: list[Value] = []
        ancestors: list[Value] = []  # the path from self down to `node`
        node: Value = self
        child: Value | None
        node._mark = epoch
        node._next = 0
        while True:
            # _next: which child to look at next (0: first, 1: second, 2: done)
            if node._next == 0:
                node._next = 1
                child = node._a
                if child is not None and child._mark != epoch:
                    child._mark = epoch
                    child._next = 0
                    ancestors.append(node)
                    node = child
                    continue
            if node._next == 1:
                node._next = 2
                child = node._b
                if child is not None and child._mark != epoch:
                    child._mark = epoch
                    child._next = 0
                    ancestors.append(node)
                    node = child
                    continue
            order.append(node)  # all its children are done: emit it
            if not ancestors:
                break
            node = ancestors.pop()
        return order

    def backward(self) -> None:
        """Fill in `grad` of every node this one depends on (d self / d node)."""
        order = self.topological_order()
        self.grad = 1.0
        node: Value
        i: cython.Py_ssize_t
        for i in range(len(order) - 1, -1, -1):
            node = order[i]
            if node._a is not None:
                node._a.grad += node._da * node.grad
                if node._b is not None:
                    node._b.grad += node._db * node.grad

    def __repr__(self) -> str:
        return f"Value(data={self.data!r}, grad={self.grad!r})"

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
        a: Value | None = self._a
        b: Value | None = self._b
        self._a = None
        self._b = None
        if _free_depth >= _MAX_FREE_DEPTH:
            _pending_free.append(a)
            _pending_free.append(b)
            return
        _free_depth += 1
        a = None  # frees the child here if this was its last reference
        b = None
        _free_depth -= 1
        if _free_depth == 0:
            while _pending_free:
                _free_depth += 1
                _pending_free.pop()
                _free_depth -= 1


_GELU_C = cython.declare(cython.double, math.sqrt(2.0 / math.pi))
_INF = cython.declare(cython.double, math.inf)
# Below 2**53 in size a whole-number exponent converts to a float exactly.
_EXACT_INT = cython.declare(cython.double, 2.0**53)


@cython.cfunc
@cython.inline
def _node1(data: cython.double, a: Value, da: cython.double, op: cython.uchar) -> Value:
    """A new node with one child (a number operand needs no node of its own)."""
    return _node2(data, a, da, None, 0.0, op)


@cython.cfunc
@cython.inline
def _node2(
    data: cython.double,
    a: Value,
    da: cython.double,
    b: Value | None,
    db: cython.double,
    op: cython.uchar,
) -> Value:
    """A new node with two children (the same node may be both, as in x*x)."""
    out: Value = Value.__new__(Value)
    out.data = data
    out.grad = 0.0
    out._a = a
    out._da = da
    out._b = b
    out._db = db
    out._op = op
    out._mark = 0
    out._next = 0
    return out


def dot(ws: Sequence[Value], xs: Sequence[Value]) -> Value:
    """`sum(w * x for w, x in zip(ws, xs))`, built node for node as Python
    builds it: the products, and a running sum that starts from the number 0.
    The same graph and the same float operations, without the interpreter's
    overhead per node when compiled."""
    w_list: list[Value] = ws if isinstance(ws, list) else list(ws)
    x_list: list[Value] = xs if isinstance(xs, list) else list(xs)
    n: cython.Py_ssize_t = min(len(w_list), len(x_list))
    if n == 0:
        raise ValueError("dot() of empty vectors")
    i: cython.Py_ssize_t
    w: Value
    x: Value
    prod: Value
    acc: Value = Value.__new__(Value)  # replaced on the first iteration
    for i in range(n):
        w = w_list[i]
        x = x_list[i]
        prod = _node2(w.data * x.data, w, x.data, x, w.data, MUL)
        if i == 0:
            acc = _node1(prod.data + 0.0, prod, 1.0, ADD)  # sum() starts with 0 + first
        else:
            acc = _node2(acc.data + prod.data, acc, 1.0, prod, 1.0, ADD)
    return acc


def vsum(values: Sequence[Value]) -> Value:
    """`sum(values)` for a non-empty list of Values, built node for node as
    Python's sum() builds it (starting from the number 0)."""
    vs: list[Value] = values if isinstance(values, list) else list(values)
    n: cython.Py_ssize_t = len(vs)
    if n == 0:
        raise ValueError("vsum() of an empty list")
    v: Value = vs[0]
    acc: Value = _node1(v.data + 0.0, v, 1.0, ADD)
    i: cython.Py_ssize_t
    for i in range(1, n):
        v = vs[i]
        acc = _node2(acc.data + v.data, acc, 1.0, v, 1.0, ADD)
    return acc


def adam_update(
    params: list[Value],
    m: list[float],
    v: list[float],
    lr_t: float,
    beta1: float,
    beta2: float,
    eps: float,
    bias1: float,
    bias2: float,
) -> None:
    """One Adam step over every parameter, then its gradient reset to zero.
    Raises FloatingPointError, changing nothing, if a gradient is NaN or inf.

    `m` and `v` are the running first and second moments; `bias1` and `bias2`
    are `1 - beta1**t` and `1 - beta2**t`. This is the loop that
    `microgpt.optim.Adam` runs (in the original's float operations, in its
    order); it lives beside `Value` so that the compiled engine runs it over
    the C fields directly instead of through Python attributes.
    """
    n: cython.Py_ssize_t = len(params)
    if len(m) != n or len(v) != n:
        raise ValueError("adam_update: params, m and v must have the same length")
    i: cython.Py_ssize_t
    p: Value
    for i in range(n):  # a NaN or infinite gradient would spoil the moments for good
        p = params[i]
        if not -_INF < p.grad < _INF:
            raise FloatingPointError(f"the gradient of parameter {i} is {p.grad!r}")
    g: cython.double
    m_i: cython.double
    v_i: cython.double
    m_hat: cython.double
    v_hat: cython.double
    for i in range(n):
        p = params[i]
        g = p.grad
        m_i = beta1 * m[i] + (1 - beta1) * g
        v_i = beta2 * v[i] + (1 - beta2) * g**2
        m[i] = m_i
        v[i] = v_i
        m_hat = m_i / bias1
        v_hat = v_i / bias2
        p.data -= lr_t * m_hat / (v_hat**0.5 + eps)
        p.grad = 0.0


def _op_code(name: str) -> int:
    """The code of an op name, registering a new (hand-written) op's name."""
    if name not in OP_NAMES:
        if len(OP_NAMES) >= 256:
            raise ValueError("too many distinct op names (at most 256)")
        OP_NAMES.append(name)
    return OP_NAMES.index(name)


def _power(base: float, exponent: float) -> float:
    """`base ** exponent` as Python computes it for floats, errors included."""
    result = operator.pow(base, exponent)
    if isinstance(result, complex):
        raise ValueError(
            f"cannot raise the negative number {base!r} to the fractional power {exponent!r}"
        )
    return float(result)
