"""Lesson: autograd is the chain rule, applied node by node.

Take L = (a + b)**2 with a = 2 and b = 3, and call s = a + b = 5. By hand:

    dL/ds = 2 s = 10          (the derivative of s**2)
    ds/da = ds/db = 1         (the derivative of a sum)
    dL/da = dL/ds * ds/da = 10, and likewise dL/db = 10

Each `Value` stores these local derivatives when it is made (`local_grads`).
`L.backward()` sets dL/dL = 1, then visits the nodes from L down to the
leaves and adds to each child's grad: local gradient * the parent's grad.

Run: microgpt lesson autograd      (or: python -m microgpt.lessons.autograd)
     microgpt lesson autograd --dot | dot -Tpng -o graph.png   (draws the graph)
"""

from __future__ import annotations

import sys

from microgpt import Value, parsing
from microgpt.gradcheck import gradcheck
from microgpt.graph import to_dot, tree


def main(argv: list[str] | None = None) -> int:
    parser = parsing.Parser(
        prog="microgpt lesson autograd", description="backward() by hand and by machine"
    )
    parser.add_argument("--dot", action="store_true", help="print the graph as Graphviz DOT")
    args = parser.parse_args(argv)

    a = Value(2.0)
    b = Value(3.0)
    s = a + b
    L = s**2
    L.backward()
    labels = {"a": a, "b": b, "s": s, "L": L}
    if args.dot:
        print(to_dot(L, labels), end="")
        return 0

    print("L = (a + b)**2 with a = 2 and b = 3. The graph, from L down, after L.backward():")
    print(tree(L, labels))
    print()
    print("backward() filled in the gradients of the inputs:")
    print(f"dL/da = {a.grad:g}")
    print(f"dL/db = {b.grad:g}")
    print("By hand: s = a + b = 5, dL/ds = 2s = 10, ds/da = ds/db = 1,")
    print("so by the chain rule dL/da = dL/ds * ds/da = 10 and dL/db = 10.")
    print()

    # A check that needs no calculus: nudge each input by a tiny eps and see
    # how much L moves. (L(a + eps) - L(a - eps)) / (2 eps) is the slope.
    print("Finite differences agree (gradcheck nudges a and b by +-1e-6):")
    result = gradcheck(lambda v: (v[0] + v[1]) ** 2, [a, b], names=["a", "b"])
    print(result.table())
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
