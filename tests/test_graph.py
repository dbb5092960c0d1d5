"""Graph inspection: the indented tree, the Graphviz DOT export and the drawn picture."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from microgpt import Value, graph
from microgpt.errors import UsageError
from microgpt.graph import DRAW_LIMIT, draw, to_dot, tree
from microgpt.nn import linear, vsum

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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


def test_dot_names_a_fused_node_and_its_terms() -> None:
    x, w = [Value(1.0), Value(2.0), Value(3.0)], [[Value(0.5)] * 3]
    total = vsum([*linear(x, w), x[0]])
    dot = to_dot(total)
    assert 'label="dot of 3 terms"' in dot and 'label="sum of 2 terms"' in dot


# --- draw(): pictures without the Graphviz program ------------------------------------

try:
    import matplotlib  # noqa: F401

    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False
# CI installs the plot extra: there its absence fails the picture tests
needs_matplotlib = pytest.mark.skipif(
    not HAVE_MATPLOTLIB and not os.environ.get("CI"), reason="matplotlib is not installed"
)


@pytest.fixture
def no_graphviz(monkeypatch: pytest.MonkeyPatch) -> None:
    """No `dot` program anywhere: PATH is empty."""
    monkeypatch.setenv("PATH", "")
    assert shutil.which("dot") is None


def svg_texts(svg: str) -> list[str]:
    """The text of an SVG's <text> elements; parsing it checks it is XML."""
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]


@needs_matplotlib
def test_draw_without_graphviz_writes_a_png_and_an_svg_that_show_the_ops(
    no_graphviz: None, tmp_path: Path
) -> None:
    a, b, loss = square_of_sum()
    picture = draw(loss, {"a": a, "b": b, "L": loss})
    assert picture.note == "4 values, 2 ops"
    png, svg = tmp_path / "graph.png", tmp_path / "graph.svg"
    picture.save(png)
    picture.save(svg)
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    height, width = pixels.shape[:2]
    assert width > 2 * height > 200  # output on the right, leaves on the left
    assert pixels.min() < 0.2 and pixels.max() > 0.9  # something is drawn on the white
    texts = svg_texts(svg.read_text(encoding="utf-8"))
    for shown in ("**", "+", "a | data 2 | grad 10", "L | data 25 | grad 1", "10"):
        assert shown in texts, (shown, texts)
    assert "data 5 | grad 10" in texts  # s = a + b, unlabelled
    # the PNG is drawn from the same figure
    assert {"**", "+"} <= {t.get_text() for t in picture.figure().axes[0].texts}


@needs_matplotlib
def test_jupyter_shows_the_picture_inline(no_graphviz: None) -> None:
    _, _, loss = square_of_sum()
    picture = draw(loss)
    assert picture._repr_png_().startswith(PNG_SIGNATURE)
    assert "**" in svg_texts(picture._repr_svg_())
    assert repr(picture) == "<graph picture: 4 values, 2 ops>"


@needs_matplotlib
def test_fused_nodes_are_drawn_as_such(no_graphviz: None) -> None:
    x = [Value(0.5), Value(-1.0), Value(2.0)]
    w = [[Value(0.1), Value(0.2), Value(0.3)], [Value(-0.3), Value(0.2), Value(-0.1)]]
    out = vsum([h.tanh() for h in linear(x, w)]).relu()
    out.backward()
    texts = svg_texts(draw(out)._repr_svg_())
    assert texts.count("dot of 3 terms") == 2
    assert texts.count("sum of 2 terms") == 1
    assert texts.count("tanh") == 2 and "relu" in texts
    # a fused op's inputs carry no numbers (the key gives the rule); tanh's input does
    assert f"{1 - math.tanh(0.5 * 0.1 - 1.0 * 0.2 + 2.0 * 0.3) ** 2:.4g}" in texts


@needs_matplotlib
def test_a_large_graph_is_summarised_quickly(no_graphviz: None) -> None:
    leaves = [Value(float(i)) for i in range(200_000)]
    big = vsum([v * 2.0 for v in leaves]).tanh()  # 400,002 nodes
    started = time.perf_counter()
    picture = draw(big)
    assert time.perf_counter() - started < 5.0
    assert picture.note == (
        "40 values, 40 ops: the 40 values nearest the output of a larger graph "
        "(max_nodes=40); '... N more' marks the inputs not drawn"
    )
    texts = svg_texts(picture._repr_svg_())
    assert "sum of 200000 terms" in texts
    assert "... 199962 more" in texts  # tanh, the sum and 38 of its terms are drawn
    assert texts.count("... 1 more") == 38  # and each term's leaf is not
    assert time.perf_counter() - started < 60.0


def test_a_picture_too_big_to_read_is_refused() -> None:
    _, _, loss = square_of_sum()
    for bad in (0, DRAW_LIMIT + 1):
        with pytest.raises(ValueError, match=rf"^max_nodes={bad}: a picture shows 1 to "):
            draw(loss, max_nodes=bad)
    with pytest.raises(ValueError, match="renderer must be one of"):
        draw(loss, renderer="dot")


def test_missing_matplotlib_is_one_line_naming_the_extra(no_graphviz: None) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # makes `import matplotlib` fail
        "from microgpt import Value\n"
        "from microgpt.graph import draw\n"
        "from microgpt.errors import UsageError\n"
        "try:\n"
        "    draw(Value(1.0) * 2.0)\n"
        "except UsageError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1
    assert 'pip install "microgpt-exact[plot]"' in done.stdout
    assert done.stderr == ""


def test_graphviz_asked_for_but_not_installed(no_graphviz: None) -> None:
    with pytest.raises(UsageError, match="needs Graphviz's dot program on PATH"):
        draw(Value(1.0) * 2.0, renderer="graphviz")


def fake_dot(folder: Path, body: str) -> None:
    """A `dot` program in `folder` that runs the shell `body` (builtins only:
    PATH holds nothing else) after reading the DOT text."""
    program = folder / "dot"
    program.write_text(f"#!/bin/sh\nwhile read -r line; do :; done\n{body}\n")
    program.chmod(0o755)


FAKE_SVG = """printf '<svg xmlns="http://www.w3.org/2000/svg"><text>by dot</text></svg>'"""


@pytest.mark.posix_only("a shell script as the fake dot")
def test_graphviz_draws_when_asked_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dot(tmp_path, FAKE_SVG)
    monkeypatch.setenv("PATH", str(tmp_path))
    _, _, loss = square_of_sum()
    assert svg_texts(draw(loss, renderer="graphviz")._repr_svg_()) == ["by dot"]
    if HAVE_MATPLOTLIB:  # auto: matplotlib first, the same picture on every machine
        assert "**" in svg_texts(draw(loss)._repr_svg_())


@pytest.mark.posix_only("a shell script as the fake dot")
def test_without_matplotlib_graphviz_draws(tmp_path: Path) -> None:
    fake_dot(tmp_path, FAKE_SVG)
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from microgpt import Value\n"
        "from microgpt.graph import draw\n"
        "print(draw(Value(1.0) * 2.0)._repr_svg_())\n"
    )
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert svg_texts(done.stdout) == ["by dot"]


@pytest.mark.posix_only("a shell script as the fake dot")
def test_a_failing_or_hanging_graphviz_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    _, _, loss = square_of_sum()
    fake_dot(tmp_path, "echo 'Error: syntax error in line 1' >&2\nexit 1")
    with pytest.raises(
        UsageError,
        match=r"^Graphviz's .*dot failed \(Error: syntax error in line 1\); "
        r"draw\(\.\.\., renderer='matplotlib'\) avoids it$",
    ):
        draw(loss, renderer="graphviz").render("svg")
    fake_dot(tmp_path, "while :; do :; done")
    monkeypatch.setattr(graph, "GRAPHVIZ_SECONDS", 1)
    started = time.perf_counter()
    with pytest.raises(UsageError, match=r"dot failed \(took more than 1 s\)"):
        draw(loss, renderer="graphviz").render("png")
    assert time.perf_counter() - started < 10


@needs_matplotlib
def test_save_never_overwrites_what_is_not_a_picture(no_graphviz: None, tmp_path: Path) -> None:
    _, _, loss = square_of_sum()
    picture = draw(loss)
    notes = tmp_path / "notes.png"
    notes.write_text("my notes")
    with pytest.raises(UsageError, match="exists and is not a microgpt PNG picture; refusing"):
        picture.save(notes)
    assert notes.read_text() == "my notes"
    with pytest.raises(UsageError, match=r"a graph picture is a \.png or \.svg file"):
        picture.save(tmp_path / "graph.jpg")
    with pytest.raises(UsageError, match="does not exist"):
        picture.save(tmp_path / "missing" / "graph.svg")
    again = tmp_path / "graph.svg"
    picture.save(again)
    picture.save(again)  # a picture is replaced
    assert svg_texts(again.read_text(encoding="utf-8"))


@needs_matplotlib
def test_labels_and_op_names_are_shown_as_one_short_line(no_graphviz: None) -> None:
    x = Value(2.0)
    odd = Value(4.0, (x,), (4.0,), "square $of$ x")  # "$...$" is not matplotlib's maths here
    odd.backward()
    label = "price in $\nafter " + "tax " * 30
    texts = svg_texts(draw(odd, {label: x})._repr_svg_())
    (box,) = [t for t in texts if t.endswith("| data 2 | grad 4")]
    assert box.startswith("price in $\\nafter[...] tax tax")
    assert len(box) <= graph.LABEL_CHARS + len(" | data 2 | grad 4")
    assert "square $of$ x" in texts


@pytest.mark.parametrize("show", [graph.tree, graph.to_dot, graph.draw])
def test_a_number_instead_of_a_value_is_named(show: Any) -> None:
    loss = Value(2.0) * 3
    with pytest.raises(
        TypeError, match=r"got float 6\.0 \(pass the Value itself, not its \.data\)"
    ):
        show(loss.data)
