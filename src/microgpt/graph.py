"""Look at a computation graph: as an indented tree, or as Graphviz DOT.

Every `Value` remembers the op that made it (`op`), the nodes it was made
from (`children`) and d(node)/d(child) for each (`local_grads`). That is the
whole graph; `backward()` walks it from the output to the leaves.

    print(tree(loss, labels={"a": a, "b": b}))
    open("graph.dot", "w").write(to_dot(loss))   # then: dot -Tpng graph.dot -o graph.png
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from microgpt.engine import Value


def _op_name(node: Value) -> str:
    if node.op:
        return str(node.op)
    return "(unnamed op)" if node.children else "leaf"


def _describe(node: Value, names: dict[int, str]) -> str:
    what = _op_name(node)
    label = names.get(id(node))
    if label is not None:
        what = f"{what} ({label})"
    return f"{what}  data={node.data:.6g}  grad={node.grad:.6g}"


def tree(
    root: Value,
    labels: Mapping[str, Value] | None = None,
    max_depth: int | None = 12,
    max_nodes: int | None = 200,
) -> str:
    """The graph below `root` as an indented tree, root first.

    Each node gets a number #n and shows its op ("leaf" for an input or a
    weight), data and grad; below the root, also the local gradient of the
    edge from its parent, d#parent/d#node. So grad(node) is the sum, over its
    parents, of local gradient * grad(parent). A node used twice (like x in
    x*x) is printed in full once, then referred to by its number. Nodes
    deeper than `max_depth`, and any beyond the first `max_nodes`, are left
    out (None: no limit).
    """
    names = {id(v): name for name, v in (labels or {}).items()}
    numbers: dict[int, int] = {}  # id(node) -> its #n, once printed
    lines: list[str] = []
    # (node, depth, (parent's number, local gradient) or None for the root);
    # a stack rather than recursion, so that a deep graph cannot overflow it
    stack: list[tuple[Value, int, tuple[int, float] | None]] = [(root, 0, None)]
    while stack:
        node, depth, edge = stack.pop()
        indent = "  " * depth
        if id(node) in numbers:
            number = numbers[id(node)]
            lines.append(f"{indent}#{number} (shown above){_edge_text(edge, number)}")
            continue
        if max_nodes is not None and len(numbers) >= max_nodes:
            total = len(root.topological_order())
            lines.append(f"{indent}... stopped after {max_nodes} of {total} nodes (max_nodes)")
            break
        number = numbers[id(node)] = len(numbers) + 1
        line = f"{indent}#{number} {_describe(node, names)}{_edge_text(edge, number)}"
        children = node.children
        if children and max_depth is not None and depth >= max_depth:
            lines.append(f"{line}  [children not shown: max_depth {max_depth}]")
            continue
        lines.append(line)
        # pushed in reverse so that the first child is printed first
        for child, local in reversed(list(zip(children, node.local_grads))):
            stack.append((child, depth + 1, (number, local)))
    return "\n".join(lines)


def _edge_text(edge: tuple[int, float] | None, number: int) -> str:
    if edge is None:
        return ""
    parent, local = edge
    return f"  local grad d#{parent}/d#{number} = {local:.6g}"


def _quote(text: str, record: bool = True) -> str:
    """Text inside a DOT label, with the characters DOT gives a meaning escaped
    (a record label also treats braces, bars and angle brackets specially)."""
    for ch in '\\"{}|<>' if record else '\\"':
        text = text.replace(ch, "\\" + ch)
    return text


def to_dot(
    root: Value,
    labels: Mapping[str, Value] | None = None,
    max_nodes: int | None = 500,
) -> str:
    """The graph below `root` as Graphviz DOT text (render: `dot -Tpng`).

    Each value is a box "label | data | grad"; each op is a small oval that
    points at the value it made; the edges into an op carry the local
    gradients. Only the `max_nodes` nodes nearest the root are drawn; where
    more hang below, an edge comes from a "..." node.
    """
    names = {id(v): name for name, v in (labels or {}).items()}
    # breadth first from the root: the nodes nearest the output come first
    ids: dict[int, str] = {id(root): "n0"}
    order = [root]
    queue = deque([root])
    while queue:
        node = queue.popleft()
        for child in node.children:
            if id(child) not in ids and (max_nodes is None or len(ids) < max_nodes):
                ids[id(child)] = f"n{len(ids)}"
                order.append(child)
                queue.append(child)

    lines = ["digraph graph_of_values {", "  rankdir=LR;", "  node [shape=record];"]
    cut = False
    for node in order:
        nid = ids[id(node)]
        fields = [f"data {node.data:.4g}", f"grad {node.grad:.4g}"]
        if id(node) in names:
            fields.insert(0, _quote(names[id(node)]))
        lines.append(f'  {nid} [label="{{{"|".join(fields)}}}"];')
        if not node.children:
            continue
        lines.append(f'  {nid}_op [label="{_quote(_op_name(node), record=False)}", shape=oval];')
        lines.append(f"  {nid}_op -> {nid};")
        for child, grad in zip(node.children, node.local_grads):
            source = ids.get(id(child))
            if source is None:
                source, cut = "more", True
            lines.append(f'  {source} -> {nid}_op [label="{grad:.4g}"];')
    if cut:
        lines.append('  more [label="...", shape=plaintext];')
    lines.append("}")
    return "\n".join(lines) + "\n"
