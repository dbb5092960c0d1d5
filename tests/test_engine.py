"""The scalar autograd engine: every op's value and gradient, the graph
accessors, errors, deep graphs and the backward order.

Tests run against the engine `microgpt` selected (compiled, or pure Python
with MICROGPT_PURE=1). Where both engines must behave the same, the test
loads both explicitly: `microgpt.engine` is always the interpreted module,
`microgpt._engine` the compiled one.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest
from conftest import both_engines
from original_design import Node  # the original's node, for bit-exact checks

import microgpt
from microgpt.backend import engine

Value = microgpt.Value
EPS = 1e-6  # central finite differences


def central_difference(f: Callable[[float], float], x: float, eps: float = EPS) -> float:
    return (f(x + eps) - f(x - eps)) / (2 * eps)


def close(a: float, b: float, rel: float = 1e-12, abs_: float = 1e-300) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def fd_close(numeric: float, analytic: float) -> bool:
    # eps 1e-6: truncation ~eps^2 |f'''|, rounding ~1e-16 |f| / eps = 1e-10 |f|
    return math.isclose(numeric, analytic, rel_tol=1e-6, abs_tol=1e-8)


def engines_to_compare() -> list[ModuleType]:
    """The interpreted engine, and the compiled one unless it is missing in a
    MICROGPT_PURE=1 run (in the compiled run a missing extension fails)."""
    pure, compiled = both_engines()
    return [pure] if compiled is None else [pure, compiled]


@contextmanager
def recursion_limit(limit: int) -> Iterator[None]:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


# --- every op with one Value operand: value, hand-derived and numeric gradient ---

C = 2.5  # the Python number on the other side
GELU_C = math.sqrt(2 / math.pi)


def _gelu(x: float) -> float:
    return 0.5 * x * (1 + math.tanh(GELU_C * (x + 0.044715 * x**3)))


def _dgelu(x: float) -> float:
    t = math.tanh(GELU_C * (x + 0.044715 * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * x * x)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


ANY = (-2.3, -0.7, -0.05, 0.3, 1.9)
POSITIVE = (0.05, 0.4, 1.0, 3.7)
NONZERO = (-2.3, -0.7, 0.3, 1.9)

Op1 = Callable[[Any], Any]
Op2 = Callable[[Any, Any], Any]
F1 = Callable[[float], float]
F2 = Callable[[float, float], float]

# name, op on a Value, the same op on a float, its derivative, points
UNARY: list[tuple[str, Op1, F1, F1, tuple[float, ...]]] = [
    ("x + c", lambda x: x + C, lambda v: v + C, lambda v: 1.0, ANY),
    ("c + x", lambda x: C + x, lambda v: C + v, lambda v: 1.0, ANY),
    ("x + int", lambda x: x + 3, lambda v: v + 3, lambda v: 1.0, ANY),
    ("x - c", lambda x: x - C, lambda v: v - C, lambda v: 1.0, ANY),
    ("c - x", lambda x: C - x, lambda v: C - v, lambda v: -1.0, ANY),
    ("x * c", lambda x: x * C, lambda v: v * C, lambda v: C, ANY),
    ("c * x", lambda x: C * x, lambda v: C * v, lambda v: C, ANY),
    ("x * int", lambda x: x * -3, lambda v: v * -3, lambda v: -3.0, ANY),
    ("x / c", lambda x: x / C, lambda v: v / C, lambda v: 1 / C, ANY),
    ("c / x", lambda x: C / x, lambda v: C / v, lambda v: -C / v**2, NONZERO),
    ("-x", lambda x: -x, lambda v: -v, lambda v: -1.0, ANY),
    ("x ** 2", lambda x: x**2, lambda v: v**2, lambda v: 2 * v, ANY),
    ("x ** 3", lambda x: x**3, lambda v: v**3, lambda v: 3 * v**2, ANY),
    ("x ** -1", lambda x: x**-1, lambda v: 1 / v, lambda v: -1 / v**2, NONZERO),
    ("x ** 0.5", lambda x: x**0.5, math.sqrt, lambda v: 0.5 / math.sqrt(v), POSITIVE),
    ("x ** -0.5", lambda x: x**-0.5, lambda v: v**-0.5, lambda v: -0.5 * v**-1.5, POSITIVE),
    ("x ** 2.5", lambda x: x**2.5, lambda v: v**2.5, lambda v: 2.5 * v**1.5, POSITIVE),
    ("log", lambda x: x.log(), math.log, lambda v: 1 / v, POSITIVE),
    ("exp", lambda x: x.exp(), math.exp, math.exp, ANY),
    ("relu", lambda x: x.relu(), lambda v: max(v, 0.0), lambda v: float(v > 0), ANY),
    ("tanh", lambda x: x.tanh(), math.tanh, lambda v: 1 - math.tanh(v) ** 2, ANY),
    ("sigmoid", lambda x: x.sigmoid(), _sigmoid, lambda v: _sigmoid(v) * (1 - _sigmoid(v)), ANY),
    ("gelu", lambda x: x.gelu(), _gelu, _dgelu, ANY),
]
UNARY_CASES = [
    pytest.param(op, f, df, x, id=f"{name}@{x}")
    for name, op, f, df, points in UNARY
    for x in points
]


@pytest.mark.parametrize(("op", "f", "df", "x"), UNARY_CASES)
def test_unary_op_value_and_gradient(op: Op1, f: F1, df: F1, x: float) -> None:
    leaf = Value(x)
    out = op(leaf)
    assert type(out) is type(leaf)
    assert close(out.data, f(x)), (out.data, f(x))
    out.backward()
    assert out.grad == 1.0
    assert close(leaf.grad, df(x), rel=1e-12, abs_=1e-15), (leaf.grad, df(x))
    numeric = central_difference(lambda v: op(Value(v)).data, x)
    assert fd_close(numeric, leaf.grad), (numeric, leaf.grad)


# name, op on two Values, d/da, d/db
BINARY: list[tuple[str, Op2, F2, F2, F2]] = [
    ("a + b", lambda a, b: a + b, lambda a, b: a + b, lambda a, b: 1.0, lambda a, b: 1.0),
    ("a - b", lambda a, b: a - b, lambda a, b: a - b, lambda a, b: 1.0, lambda a, b: -1.0),
    ("a * b", lambda a, b: a * b, lambda a, b: a * b, lambda a, b: b, lambda a, b: a),
    ("a / b", lambda a, b: a / b, lambda a, b: a / b, lambda a, b: 1 / b, lambda a, b: -a / b**2),
]


@pytest.mark.parametrize(("op", "f", "dfa", "dfb"), [pytest.param(*c[1:], id=c[0]) for c in BINARY])
@pytest.mark.parametrize(("a", "b"), [(1.5, -0.4), (-2.0, 3.0), (0.7, 0.7)])
def test_binary_op_value_and_gradients(
    op: Op2, f: F2, dfa: F2, dfb: F2, a: float, b: float
) -> None:
    va, vb = Value(a), Value(b)
    out = op(va, vb)
    assert close(out.data, f(a, b))
    out.backward()
    assert close(va.grad, dfa(a, b)) and close(vb.grad, dfb(a, b)), (va.grad, vb.grad)
    assert fd_close(central_difference(lambda v: op(Value(v), Value(b)).data, a), va.grad)
    assert fd_close(central_difference(lambda v: op(Value(a), Value(v)).data, b), vb.grad)


def test_composed_ops_are_the_originals_float_operations() -> None:
    # a - b is a + (-b), a / b is a * b**-1: bit for bit
    for a, b in [(0.1, 0.3), (1.0, 3.0), (-7.25, 0.1), (1e-3, 7.0)]:
        assert (Value(a) - Value(b)).data == a + (b * -1)
        assert (Value(a) / Value(b)).data == a * b**-1
        assert (a / Value(b)).data == a * b**-1
        assert (Value(a) / b).data == a * b**-1
        assert (a - Value(b)).data == a + (b * -1)


NODE_OPS: list[tuple[str, Op1]] = [
    ("x + c", lambda x: x + C),
    ("c + x", lambda x: C + x),
    ("x - c", lambda x: x - C),
    ("c - x", lambda x: C - x),
    ("x * c", lambda x: x * C),
    ("c * x", lambda x: C * x),
    ("x / c", lambda x: x / 3.0),
    ("c / x", lambda x: 3.0 / x),
    ("-x", lambda x: -x),
    ("x ** -0.5", lambda x: x**-0.5),
    ("x ** 3", lambda x: x**3),
    ("log", lambda x: x.log()),
    ("exp", lambda x: x.exp()),
    ("relu", lambda x: x.relu()),
    ("chain", lambda x: ((x * x + 1.0).log() * x - 0.3 / x).exp() * (x**2).relu()),
]


@pytest.mark.parametrize("op", [pytest.param(op, id=name) for name, op in NODE_OPS])
@pytest.mark.parametrize("x", [0.1, 0.37, 1.0, 2.9])
def test_op_matches_the_original_node_bit_for_bit(op: Op1, x: float) -> None:
    ours, original = Value(x), Node(x)
    out, ref = op(ours), op(original)
    assert out.data == ref.data, (out.data.hex(), float(ref.data).hex())
    out.backward()
    ref.backward()
    assert ours.grad == original.grad, (ours.grad.hex(), float(original.grad).hex())


def test_sigmoid_and_tanh_saturate_without_overflow() -> None:
    for x, want in [(-1000.0, 0.0), (1000.0, 1.0), (-745.5, 0.0)]:
        leaf = Value(x)
        out = leaf.sigmoid()
        out.backward()
        assert out.data == want and leaf.grad == 0.0
    leaf = Value(800.0)
    out = leaf.tanh()
    out.backward()
    assert out.data == 1.0 and leaf.grad == 0.0


def test_relu_at_zero_has_zero_gradient() -> None:
    leaf = Value(0.0)
    out = leaf.relu()
    out.backward()
    assert out.data == 0.0 and leaf.grad == 0.0


def test_gelu_is_the_tanh_approximation() -> None:
    for x in (-3.0, -1.0, -0.1, 0.0, 0.5, 2.0, 6.0):
        assert close(Value(x).gelu().data, _gelu(x), rel=1e-15, abs_=1e-300)
    assert Value(0.0).gelu().data == 0.0
    leaf = Value(0.0)
    leaf.gelu().backward()
    assert leaf.grad == 0.5


# --- dot and vsum ---------------------------------------------------------------


def test_dot_and_vsum_values_and_gradients() -> None:
    ws = [Value(w) for w in (0.5, -1.25, 2.0)]
    xs = [Value(x) for x in (3.0, 0.75, -0.5)]
    d = engine.dot(ws, xs)
    assert d.data == ((0 + 0.5 * 3.0) + -1.25 * 0.75) + 2.0 * -0.5
    d.backward()
    assert [w.grad for w in ws] == [3.0, 0.75, -0.5]
    assert [x.grad for x in xs] == [0.5, -1.25, 2.0]
    vs = [Value(v) for v in (1.0, -2.0, 0.25)]
    s = engine.vsum(vs)
    assert s.data == -0.75
    s.backward()
    assert [v.grad for v in vs] == [1.0, 1.0, 1.0]


def test_dot_and_vsum_of_empty_lists_are_errors() -> None:
    with pytest.raises(ValueError):
        engine.dot([], [])
    with pytest.raises(ValueError):
        engine.vsum([])


def test_dot_with_a_repeated_node_accumulates() -> None:
    x = Value(1.5)
    d = engine.dot([x, x], [x, Value(2.0)])  # x*x + x*2
    d.backward()
    assert d.data == 1.5 * 1.5 + 1.5 * 2.0
    assert x.grad == 2 * 1.5 + 2.0


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_dot_and_vsum_are_one_node_with_the_value_and_gradients_of_python_sum(n: int) -> None:
    rng = random.Random(n)
    wdata = [rng.uniform(-2, 2) for _ in range(n)]
    xdata = [rng.uniform(-2, 2) for _ in range(n)]

    ws1, xs1 = [Value(w) for w in wdata], [Value(x) for x in xdata]
    ws2, xs2 = [Value(w) for w in wdata], [Value(x) for x in xdata]
    fast = engine.dot(ws1, xs1)
    slow = sum(w * x for w, x in zip(ws2, xs2))
    assert fast.data == slow.data
    assert fast.op == "dot"
    assert fast.children == tuple(v for pair in zip(ws1, xs1) for v in pair)
    assert fast.local_grads == tuple(g for pair in zip(xdata, wdata) for g in pair)
    assert len(fast.topological_order()) == 2 * n + 1  # the operands, then the one node
    fast.backward()
    slow.backward()
    assert [v.grad for v in ws1 + xs1] == [v.grad for v in ws2 + xs2]

    vs1, vs2 = [Value(w) for w in wdata], [Value(w) for w in wdata]
    fast, slow = engine.vsum(vs1), sum(vs2)
    assert fast.data == slow.data
    assert fast.op == "sum" and fast.children == tuple(vs1) and fast.local_grads == (1.0,) * n
    fast.backward()
    slow.backward()
    assert [v.grad for v in vs1] == [v.grad for v in vs2]


# --- the graph and backward() ------------------------------------------------------


def test_worked_example() -> None:
    a, b = Value(2.0), Value(3.0)
    loss = (a + b) ** 2
    loss.backward()
    assert loss.data == 25.0
    assert a.grad == 10.0 and b.grad == 10.0


def test_a_node_used_twice_by_one_op_gets_both_contributions() -> None:
    x = Value(3.0)
    y = x * x
    assert y.children == (x, x) and y.children[0] is x and y.children[1] is x
    assert y.local_grads == (3.0, 3.0)
    y.backward()
    assert x.grad == 6.0
    x = Value(-1.25)
    (x + x).backward()
    assert x.grad == 2.0


def test_gradients_accumulate_over_shared_subexpressions() -> None:
    a, b = Value(1.5), Value(-2.0)
    c = a * b  # used twice below
    d = c + c * a  # ab + a^2 b
    d.backward()
    assert d.data == -3.0 + -3.0 * 1.5
    assert a.grad == -2.0 + 2 * 1.5 * -2.0  # b + 2ab
    assert b.grad == 1.5 + 1.5**2  # a + a^2
    assert c.grad == 1.0 + 1.5  # 1 + a


def test_backward_twice_accumulates_as_the_original_does() -> None:
    # backward() does not reset grads: a second call adds to every node's grad
    # (intermediate ones included), exactly as the original's backward does.
    a, b = Value(2.0), Value(3.0)
    ra, rb = Node(2.0), Node(3.0)
    loss, ref = (a + b) ** 2 * a, (ra + rb) ** 2 * ra
    loss.backward()
    ref.backward()
    first = (a.grad, b.grad)
    loss.backward()
    ref.backward()
    assert (a.grad, b.grad) == (ra.grad, rb.grad)
    assert (a.grad, b.grad) != first
    # zeroing every grad first makes the second call give the first result again
    for node in loss.topological_order():
        node.grad = 0.0
    loss.backward()
    assert (a.grad, b.grad) == first


def test_backward_of_a_leaf() -> None:
    x = Value(4.0)
    x.backward()
    assert x.grad == 1.0
    assert x.topological_order() == [x]


def test_a_hand_written_op() -> None:
    def cube(x: Any) -> Any:
        return Value(x.data**3, (x,), (3 * x.data**2,), "cube")

    def hypot(x: Any, y: Any) -> Any:
        h = math.hypot(x.data, y.data)
        return Value(h, (x, y), (x.data / h, y.data / h))

    x, y = Value(3.0), Value(4.0)
    out = cube(hypot(x, y)) + x
    assert out.data == 128.0  # 5**3 + 3
    out.backward()
    assert close(x.grad, 3 * 25.0 * 0.6 + 1.0) and close(y.grad, 3 * 25.0 * 0.8)
    c = cube(x)
    assert c.op == "cube" and c.children == (x,) and c.local_grads == (27.0,)
    assert hypot(x, y).op == ""  # op is optional, display only
    # numbers are stored as floats
    v = Value(2, (x,), (3,))
    assert type(v.data) is float and type(v.local_grads[0]) is float and v.data == 2.0


def test_a_node_takes_at_most_two_children_each_with_a_local_gradient() -> None:
    x = Value(1.0)
    with pytest.raises(ValueError):
        Value(1.0, (x, x, x), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError):
        Value(1.0, (x,), ())
    with pytest.raises(ValueError):
        Value(1.0, (x, x), (1.0,))


def test_children_local_grads_and_op_properties() -> None:
    x, y = Value(2.0), Value(-3.0)
    assert (x.children, x.local_grads, x.op) == ((), (), "")
    s = x + y
    assert (s.children, s.local_grads, s.op) == ((x, y), (1.0, 1.0), "+")
    assert s.children[0] is x and s.children[1] is y
    p = x * y
    assert (p.children, p.local_grads, p.op) == ((x, y), (-3.0, 2.0), "*")
    k = x + 1.5  # a number operand needs no node of its own
    assert (k.children, k.local_grads, k.op) == ((x,), (1.0,), "+")
    assert (x * 4).local_grads == (4.0,)
    assert (x**3).op == "**" and (x**3).local_grads == (12.0,)
    for name in ("log", "exp", "relu", "tanh", "sigmoid", "gelu"):
        node = getattr(x, name)()
        assert node.op == name and node.children == (x,)
    assert (-x).op == "*" and (-x).local_grads == (-1.0,)
    assert (x - y).op == "+" and (x / 4).op == "*"
    # a / b is a * b**-1 as one node of children a and b
    q = x / y
    assert (q.op, q.children, q.data) == ("/", (x, y), 2.0 * (-3.0) ** -1)
    assert q.local_grads == ((-3.0) ** -1, 2.0 * (-1 * (-3.0) ** -2))
    assert type(x.children) is tuple and type(x.local_grads) is tuple


def test_data_and_grad_are_writable_floats() -> None:
    x = Value(1)
    assert type(x.data) is float and type(x.grad) is float
    x.data = 2.5
    x.grad = -1.0
    assert (x.data, x.grad) == (2.5, -1.0)
    assert ((x * 2).data, Value(True).data) == (5.0, 1.0)


def test_repr() -> None:
    assert repr(Value(1.5)) == "Value(data=1.5, grad=0.0)"
    x = Value(-0.1)
    y = x * 3
    y.backward()
    assert repr(x) == f"Value(data=-0.1, grad={3.0!r})"
    assert repr(y) == f"Value(data={-0.1 * 3!r}, grad=1.0)"


# --- errors: the same Python exception in both engines ----------------------------

ERRORS: list[tuple[str, Op1, type[BaseException]]] = [
    ("log(0)", lambda V: V(0.0).log(), ValueError),
    ("log(-1)", lambda V: V(-1.0).log(), ValueError),
    ("exp(1000)", lambda V: V(1000.0).exp(), OverflowError),
    ("0.0 ** -1", lambda V: V(0.0) ** -1, ZeroDivisionError),
    ("1 / Value(0)", lambda V: 1 / V(0.0), ZeroDivisionError),
    ("Value / 0", lambda V: V(1.0) / 0, ZeroDivisionError),
    ("-8 ** 0.5", lambda V: V(-8.0) ** 0.5, ValueError),
    ("Value + str", lambda V: V(1) + "a", TypeError),
    ("str + Value", lambda V: "a" + V(1), TypeError),
    ("Value * str", lambda V: V(1) * "a", TypeError),
    ("Value - str", lambda V: V(1) - "a", TypeError),
    ("Value / str", lambda V: V(1) / "a", TypeError),
    ("Value ** Value", lambda V: V(2) ** V(2), TypeError),
    ("Value + None", lambda V: V(1) + None, TypeError),
    ("Value(None)", lambda V: V(None), TypeError),
    ("Value + huge int", lambda V: V(1) + 10**400, OverflowError),
]


@pytest.mark.parametrize(("case", "expected"), [pytest.param(c, e, id=n) for n, c, e in ERRORS])
def test_errors_raise_the_same_exception_in_both_engines(
    case: Op1, expected: type[BaseException]
) -> None:
    raised = []
    for module in engines_to_compare():
        with pytest.raises(expected) as info:
            case(module.Value)
        raised.append(type(info.value))
    assert len(set(raised)) == 1, raised


def _outcome(case: Op1, module: ModuleType) -> str:
    try:
        case(module.Value)
    except Exception as exc:  # noqa: BLE001 - the exception type is the result
        return type(exc).__name__
    return "accepted"


def test_constructor_arguments_are_checked_alike_in_both_engines() -> None:
    engines = engines_to_compare()  # just the pure one in a pure-only install
    cases: dict[str, tuple[Op1, str]] = {
        'Value("x")': (lambda V: V("x"), "TypeError"),
        'Value("1.5")': (lambda V: V("1.5"), "TypeError"),
        "children as a list": (lambda V: V(1.0, [V(2.0)], [1.0]), "accepted"),
        "a number as a child": (lambda V: V(1.0, (2.0,), (1.0,)), "TypeError"),
        "op not a str": (lambda V: V(1.0, (), (), 5), "TypeError"),
        "a str as a local gradient": (lambda V: V(1.0, (V(2.0),), ("1",)), "TypeError"),
        "three children": (lambda V: V(1.0, (V(1.0),) * 3, (1.0,) * 3), "ValueError"),
        "pickling a node": (lambda V: pickle.dumps(V(1.0)), "TypeError"),
        "copying a node": (lambda V: copy.copy(V(1.0)), "TypeError"),
    }
    outcomes = {name: [_outcome(case, m) for m in engines] for name, (case, _) in cases.items()}
    expected = {name: [want] * len(engines) for name, (_, want) in cases.items()}
    assert outcomes == expected  # [pure, compiled]


def _message(case: Callable[[], object]) -> str:
    try:
        case()
    except Exception as exc:  # noqa: BLE001 - the exception is the result
        return f"{type(exc).__name__}: {exc}"
    return "accepted"


def test_the_edges_give_the_same_error_message_in_both_engines() -> None:
    # Assigning data and grad, dot and vsum of bad vectors: the same clear
    # error, word for word, whichever engine runs (or: accepted by both alike).
    engines = engines_to_compare()

    def assign(V: Any, field: str, value: object) -> object:
        v = V(1.0)
        setattr(v, field, value)
        return (type(getattr(v, field)), getattr(v, field))

    cases: dict[str, tuple[Callable[[Any, ModuleType], object], str]] = {
        "data = 'x'": (
            lambda V, m: assign(V, "data", "x"),
            "TypeError: Value data must be a number, not str",
        ),
        "grad = None": (
            lambda V, m: assign(V, "grad", None),
            "TypeError: Value grad must be a number, not NoneType",
        ),
        "data = 10**400": (
            lambda V, m: assign(V, "data", 10**400),
            "OverflowError: int too large to convert to float",
        ),
        "dot of unequal lengths": (
            lambda V, m: m.dot([V(1.0)] * 3, [V(1.0)] * 2),
            "ValueError: dot() of vectors of different lengths (3 and 2)",
        ),
        "dot of a number": (
            lambda V, m: m.dot([V(1.0), 2.0], [V(1.0), V(1.0)]),
            "TypeError: dot() arguments must be Values, not float",
        ),
        "dot of None": (
            lambda V, m: m.dot([V(1.0)], [None]),
            "TypeError: dot() arguments must be Values, not NoneType",
        ),
        "Value + str": (
            lambda V, m: V(1.0) + "a",
            "TypeError: unsupported operand type(s) for +: 'Value' and 'str'",
        ),
        "str * Value": (
            lambda V, m: [1] * V(2.0),
            "TypeError: can't multiply sequence by non-int of type 'Value'",
        ),
        "Value ** str": (
            lambda V, m: V(2.0) ** "a",
            "TypeError: unsupported operand type(s) for ** or pow(): 'Value' and 'str'",
        ),
        "vsum of a str": (
            lambda V, m: m.vsum([V(1.0), "a"]),
            "TypeError: vsum() arguments must be Values, not str",
        ),
    }
    for name, (case, want) in cases.items():
        got = [_message(lambda m=m, case=case: case(m.Value, m)) for m in engines]
        # Python's own operator errors name a compiled type with its module
        got = [message.replace("'microgpt._engine.Value'", "'Value'") for message in got]
        assert got == [want] * len(engines), name
    # and what is accepted is stored alike: a float
    for m in engines:
        assert assign(m.Value, "data", 3) == (float, 3.0)
        assert assign(m.Value, "grad", True) == (float, 1.0)


def test_values_of_the_two_engines_cannot_be_combined() -> None:
    pure, compiled = both_engines()
    if compiled is None:
        pytest.skip("the compiled engine is not installed (pure-only run)")
    a, b = pure.Value(1.0), compiled.Value(2.0)
    cases = {
        "a + b": lambda: a + b,
        "b * a": lambda: b * a,
        "b - a": lambda: b - a,
        "pure dot of compiled": lambda: pure.dot([a], [b]),
        "compiled vsum of pure": lambda: compiled.vsum([b, a]),
        "compiled node of a pure child": lambda: compiled.Value(1.0, (a,), (1.0,)),
    }
    for name, case in cases.items():
        message = _message(case)
        assert message.startswith("TypeError: cannot combine Values of two engines ("), name
        assert "use one engine per process (MICROGPT_PURE selects it)" in message, name


# --- deep graphs ----------------------------------------------------------------


def test_backward_through_a_chain_a_million_deep() -> None:
    # the original's recursive topological sort raises RecursionError near 1,000
    leaf = Value(0.0)
    x = leaf
    for _ in range(1_000_000):
        x = x + 1.0
    x.backward()
    assert x.data == 1_000_000.0
    assert leaf.grad == 1.0
    order = x.topological_order()
    assert len(order) == 1_000_001 and order[0] is leaf and order[-1] is x
    del order, x


DEEP_CHILD = textwrap.dedent(
    """
    import json, sys
    import microgpt

    def chain(first):
        leaf = microgpt.Value(0.5)
        other = microgpt.Value(1.0)
        refs = sys.getrefcount(leaf), sys.getrefcount(other)
        x = leaf
        for _ in range(3_000_000):
            x = x + 1.0 if first else other * x  # the chain through child 1 or 2
        x.backward()
        result = (leaf.grad, x.data)
        del x  # frees 3,000,000 nested nodes
        # every node was freed: nothing refers to the leaves any more
        assert (sys.getrefcount(leaf), sys.getrefcount(other)) == refs
        return result

    first = chain(first=True)
    print("first child chain freed", file=sys.stderr, flush=True)
    second = chain(first=False)
    print("second child chain freed", file=sys.stderr, flush=True)
    print(json.dumps({"compiled": microgpt.COMPILED, "first": first, "second": second}))
    """
)


def test_a_chain_three_million_deep_is_built_differentiated_and_freed() -> None:
    # in a subprocess, so that a C stack overflow shows as a return code
    proc = subprocess.run(
        [sys.executable, "-c", DEEP_CHILD],
        env=dict(os.environ),  # the same engine as this run
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"the child exited with {proc.returncode} (-11 is a segfault); stderr:\n{proc.stderr}"
    )
    result = json.loads(proc.stdout)
    assert result["compiled"] is microgpt.COMPILED
    assert result["first"] == [1.0, 3_000_000.5]
    assert result["second"] == [1.0, 0.5]


# --- topological order: the original recursive DFS -------------------------------


def recursive_order(root: Any) -> list[Any]:
    """The original's order: visit(v): if unseen: mark; visit children; append."""
    order: list[Any] = []
    seen: set[int] = set()

    def visit(v: Any) -> None:
        if id(v) not in seen:
            seen.add(id(v))
            for child in v.children:
                visit(child)
            order.append(v)

    visit(root)
    return order


def random_dag(rng: random.Random, n_leaves: int, n_ops: int) -> tuple[list[Any], Any]:
    """Nodes drawn from the ops over earlier nodes (so shared, often reused),
    with one root that depends on a few of them."""
    nodes = [Value(rng.uniform(0.5, 1.5)) for _ in range(n_leaves)]
    for _ in range(n_ops):
        # favour recent nodes so that the graph is deep as well as wide
        a = nodes[max(0, len(nodes) - 1 - int(rng.expovariate(0.1)))]
        b = rng.choice(nodes)
        kind = rng.randrange(7)
        if kind == 0:
            node = a + b
        elif kind == 1:
            node = a * b
        elif kind == 2:
            node = a * a
        elif kind == 3:
            node = a + rng.uniform(-1, 1)
        elif kind == 4:
            node = (a * 0.5).tanh()
        elif kind == 5:
            node = engine.vsum(rng.sample(nodes, min(len(nodes), 3)))
        else:
            node = a - b
        nodes.append(node)
    picks = rng.sample(nodes, min(len(nodes), 5)) + [nodes[-1]]
    return nodes, engine.vsum(picks)


@pytest.mark.parametrize("seed", range(12))
def test_topological_order_is_the_recursive_dfs_order(seed: int) -> None:
    rng = random.Random(seed)
    n_ops = [10, 100, 1000, 3000][seed % 4]
    nodes, root = random_dag(rng, rng.randint(1, 8), n_ops)
    with recursion_limit(4 * n_ops + 1000):
        want = recursive_order(root)
    got = root.topological_order()
    assert len(got) == len(want)
    assert all(g is w for g, w in zip(got, want))
    # each node once, children before parents
    position = {id(n): i for i, n in enumerate(got)}
    assert len(position) == len(got)
    assert all(position[id(c)] < position[id(n)] for n in got for c in n.children)
    # and the same from an inner node (a fresh pass, not the marks of the last one)
    inner = nodes[len(nodes) // 2]
    with recursion_limit(4 * n_ops + 1000):
        want_inner = recursive_order(inner)
    got_inner = inner.topological_order()
    assert len(got_inner) == len(want_inner) and all(g is w for g, w in zip(got_inner, want_inner))


def test_backward_matches_the_original_on_a_random_dag() -> None:
    # the same random DAG over Node (the original design) and over Value
    def build(make: Callable[[float], Any]) -> tuple[list[Any], Any]:
        rng = random.Random(7)
        leaves = [make(rng.uniform(0.5, 1.5)) for _ in range(4)]
        nodes = list(leaves)
        for _ in range(400):  # every op keeps |value| <= 2
            a, b = rng.choice(nodes[-20:]), rng.choice(nodes)
            kind = rng.randrange(6)
            if kind == 0:
                node = (a + b) * 0.5
            elif kind == 1:
                node = a * b * 0.5
            elif kind == 2:
                node = a * a * 0.25
            elif kind == 3:
                node = (a - b) / 2
            elif kind == 4:
                node = (a * a + 1).log()
            else:
                node = a / (b * b + 1) - (-a).exp() * 0.1
            nodes.append(node)
        return leaves, sum(nodes[-10:])

    ours, loss = build(Value)
    ref_leaves, ref = build(Node)
    assert loss.data == ref.data
    loss.backward()
    with recursion_limit(10_000):
        ref.backward()
    assert [v.grad for v in ours] == [float(v.grad) for v in ref_leaves]


@pytest.mark.parametrize("engine_module", engines_to_compare(), ids=lambda m: m.__name__)
def test_calling_init_again_remakes_the_value(engine_module: ModuleType) -> None:
    # the same in both engines: the node becomes what the second call says
    V = engine_module.Value
    a, b = V(2.0), V(3.0)
    node = V(5.0, (a, b), (3.0, 2.0), "*")
    node.__init__(7.0)
    assert (node.data, node.children, node.local_grads, node.op) == (7.0, (), (), "")
    fused = engine_module.dot([a], [b])
    fused.__init__(1.0, (a,), (1.0,))
    assert (fused.data, fused.children, fused.local_grads) == (1.0, (a,), (1.0,))
    fused.backward()
    assert a.grad == 1.0 and b.grad == 0.0
