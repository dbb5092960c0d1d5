"""Lesson: write a new op by hand.

An op is two numbers worked out together: its value, and the derivative of
that value with respect to each input (its local gradient). For the sigmoid

    s(x) = 1 / (1 + exp(-x)),   ds/dx = s (1 - s)

so one node does it: `Value(s, (x,), (s * (1 - s),), "my_sigmoid")`.
backward() never needs to know what the op was; it only multiplies by the
stored local gradient. The same function can also be built from existing
ops (exp, +, /): the same value and gradient, from four nodes instead of one.

If the local gradient is wrong, backward() happily returns wrong gradients.
gradcheck catches that: the last part of this lesson gets it wrong on
purpose.

Run: microgpt lesson new_op      (or: python -m microgpt.lessons.new_op)
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

from microgpt import Value, parsing
from microgpt.gradcheck import gradcheck

POINTS = [-3.0, -0.5, 0.0, 1.0, 4.0]


def my_sigmoid(x: Value) -> Value:
    """One node: the value and its local gradient, written by hand."""
    s = 1.0 / (1.0 + math.exp(-x.data))
    return Value(s, (x,), (s * (1.0 - s),), "my_sigmoid")


def sigmoid_from_pieces(x: Value) -> Value:
    """The same function from existing ops: autograd derives the gradient."""
    return 1 / (1 + (-x).exp())


def broken_sigmoid(x: Value) -> Value:
    """The right value with a wrong local gradient: the (1 - s) is missing."""
    s = 1.0 / (1.0 + math.exp(-x.data))
    return Value(s, (x,), (s,), "broken_sigmoid")


def value_and_grad(op: Callable[[Value], Value], x: float) -> tuple[float, float]:
    leaf = Value(x)
    out = op(leaf)
    out.backward()
    return out.data, leaf.grad


def main(argv: list[str] | None = None) -> int:
    parsing.Parser(
        prog="microgpt lesson new_op", description="write an op by hand and check it"
    ).parse_args(argv)

    print("my_sigmoid is one hand-written node; compare it with the built-in sigmoid,")
    print("with the same function built from exp, + and /, and with (1 + tanh(x/2)) / 2:")
    print(
        f"{'x':>5}  {'my_sigmoid':>10}  {'d/dx':>8}  {'built-in':>10}  {'d/dx':>8}  {'pieces':>10}"
    )
    worst = 0.0
    for x in POINTS:
        mine, d_mine = value_and_grad(my_sigmoid, x)
        builtin, d_builtin = value_and_grad(lambda v: v.sigmoid(), x)
        pieces, d_pieces = value_and_grad(sigmoid_from_pieces, x)
        via_tanh, d_via_tanh = value_and_grad(lambda v: (1 + (v * 0.5).tanh()) * 0.5, x)
        print(
            f"{x:>5g}  {mine:>10.6f}  {d_mine:>8.6f}  {builtin:>10.6f}  {d_builtin:>8.6f}  "
            f"{pieces:>10.6f}"
        )
        for other, d_other in ((builtin, d_builtin), (pieces, d_pieces), (via_tanh, d_via_tanh)):
            worst = max(worst, abs(mine - other), abs(d_mine - d_other))
    print(f"largest difference from the other three, values and gradients: {worst:.1e}")
    print()

    sizes = [len(op(Value(1.0)).topological_order()) for op in (my_sigmoid, sigmoid_from_pieces)]
    print(f"nodes in the graph: my_sigmoid {sizes[0]}, built from pieces {sizes[1]}")
    print("(both counts include the input x)")
    print()

    inputs = [Value(x) for x in POINTS]
    names = [f"x={x:g}" for x in POINTS]

    def total(op: Callable[[Value], Value]) -> Callable[[list[Value]], Value]:
        # one scalar output that depends on every input, for gradcheck
        return lambda xs: sum((op(x) for x in xs), Value(0.0))

    print("gradcheck of my_sigmoid:")
    good = gradcheck(total(my_sigmoid), inputs, names=names)
    print(good.table())
    print()
    print("gradcheck of broken_sigmoid (local gradient s instead of s * (1 - s)):")
    bad = gradcheck(total(broken_sigmoid), inputs, names=names)
    print(bad.table())
    print()
    print(
        "gradcheck passes the right op and catches the wrong one."
        if good.passed and not bad.passed
        else "unexpected: see the tables above"
    )
    return 0 if good.passed and not bad.passed else 1


if __name__ == "__main__":
    sys.exit(main())
