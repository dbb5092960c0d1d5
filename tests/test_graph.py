"""Graph inspection: the indented tree and the Graphviz DOT export."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest

from microgpt import Value
from microgpt.graph import to_dot, tree


def square_of_sum() -> tuple[Any, Any, Any]:
    a, b = Value(2.0), Value(3.0)
    loss = (a + b) ** 2
    loss.backward()
    return a, b, loss


def test_tree_shows_ops_data_grads_and_local_grads() -> None:
    a, b, loss = square_of_sum()
    lines = tree(loss, {"a": a, "b": b, "L": loss}).splitlines()
    assert lines[0] == "#1 ** (L)  data=25  grad=1"
    # by hand: s = a + b = 5, dL/ds = 2s = 10, and ds/da = ds/db = 1
    assert lines[1] == "  #2 +  data=5  grad=10  local grad d#1/d#2 = 10"
    assert lines[2] == "    #3 leaf (a)  data=2  grad=10  local grad d#2/d#3 = 1"
    assert lines[3] == "    #4 leaf (b)  data=3  grad=10  local grad d#2/d#4 = 1"
    assert len(lines) == 4


def chain(length: int) -> Any:
    x = Value(1.0)
    for _ in range(length):
        x = x * 1.0001
    return x


def test_shared_node_is_printed_once_then_referred_to() -> None:
    x = Value(3.0)
    y = x * x + x  # x is used three times
    y.backward()  # dy/dx = 2x + 1 = 7
    text = tree(y, {"x": x})
    full = [line for line in text.splitlines() if "leaf (x)" in line]
    assert len(full) == 1 and "grad=7" in full[0]
    number = re.search(r"#(\d+) leaf", full[0]).group(1)  # type: ignore[union-attr]
    assert text.count(f"#{number} (shown above)") == 2


def test_every_node_is_printed_in_full_exactly_once() -> None:
    a, b = Value(0.5), Value(-1.25)
    out = ((a * b).tanh() + a.exp() * b - a / b).relu() + (b**2).log()
    text = tree(out, max_depth=None, max_nodes=None)
    full = [line for line in text.splitlines() if "data=" in line]
    assert len(full) == len(out.topological_order())
    numbers = [re.match(r"\s*#(\d+) ", line).group(1) for line in full]  # type: ignore[union-attr]
    assert len(set(numbers)) == len(numbers)


def test_depth_and_size_limits() -> None:
    x = chain(50)
    deep = tree(x, max_depth=3).splitlines()
    assert len(deep) == 4
    assert "children not shown" in deep[-1]
    capped = tree(x, max_nodes=10, max_depth=None).splitlines()
    assert len(capped) == 11
    assert "stopped after 10 of 51 nodes" in capped[-1]


def test_very_deep_graph_without_limits() -> None:
    # no recursion: a chain deeper than Python's recursion limit prints fine
    x = chain(5000)
    assert len(tree(x, max_depth=None, max_nodes=None).splitlines()) == 5001


DOT_LINE = re.compile(
    r'^  (n\d+(_op)?|more) \[label="[^"]*"(, shape=\w+)?\];$'  # a node
    r'|^  (n\d+|more) -> n\d+_op \[label="[^"]*"\];$'  # child -> op, local grad
    r"|^  n\d+_op -> n\d+;$"  # op -> the value it made
    r"|^  rankdir=LR;$|^  node \[shape=record\];$"
)


def test_dot_has_a_box_per_value_an_oval_per_op_and_an_edge_per_child() -> None:
    a, b, loss = square_of_sum()
    dot = to_dot(loss, {"a": a, "b": b})
    lines = dot.splitlines()
    assert lines[0].startswith("digraph ") and lines[0].endswith("{") and lines[-1] == "}"
    assert all(DOT_LINE.match(line) for line in lines[1:-1]), dot
    assert len(re.findall(r'label="\{', dot)) == 4
    assert len(re.findall(r"shape=oval", dot)) == 2  # + and **
    assert '"{a|data 2|grad 10}"' in dot
    assert '[label="10"]' in dot  # the edge a+b -> ** carries d L/d(a+b) = 10


def test_dot_escapes_labels_and_cuts_big_graphs() -> None:
    x = chain(30)
    dot = to_dot(x, {"a|b{c}": x}, max_nodes=5)
    assert "a\\|b\\{c\\}" in dot
    assert len(re.findall(r'label="\{', dot)) == 5
    assert 'more [label="..."' in dot
    assert all(DOT_LINE.match(line) for line in dot.splitlines()[1:-1]), dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_graphviz_renders_the_dot_text() -> None:
    _, _, loss = square_of_sum()
    done = subprocess.run(["dot", "-Tsvg"], input=to_dot(loss), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "<svg" in done.stdout
