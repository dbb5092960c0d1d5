"""Look at a computation graph: as an indented tree, as a picture, or as
Graphviz DOT.

Every `Value` remembers the op that made it (`op`), the nodes it was made
from (`children`) and d(node)/d(child) for each (`local_grads`). That is the
whole graph; `backward()` walks it from the output to the leaves.

    print(tree(loss, labels={"a": a, "b": b}))
    draw(loss, labels={"a": a, "b": b})          # in Jupyter: shown inline
    draw(loss).save("graph.png")                 # or .svg (needs the plot extra)
    open("graph.dot", "w").write(to_dot(loss))   # then: dot -Tpng graph.dot -o graph.png
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from microgpt.errors import UsageError, one_line
from microgpt.settings import shorten

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from microgpt.engine import Value

# Ops that make one node for a whole sum of terms (engine.dot, linear, vsum).
FUSED_OPS = ("dot", "sum")


def _op_name(node: Value) -> str:
    if node.op:
        return str(node.op)
    return "(unnamed op)" if node.children else "leaf"


def op_label(node: Value) -> str:
    """The op's name, and for a fused node (`dot`, `sum`: one node for a
    whole sum of terms) how many terms it adds up."""
    name = _op_name(node)
    if name in FUSED_OPS:
        terms = len(node.children) // (2 if name == "dot" else 1)
        return f"{name} of {terms} term{'s' if terms != 1 else ''}"
    return name


def _check_root(root: object, function: str) -> None:
    """A learner may pass `loss.data` (a float) where the Value is meant."""
    if not hasattr(root, "children") or not hasattr(root, "topological_order"):
        raise TypeError(
            f"{function}() shows the graph below a Value, got {type(root).__name__} {root!r}"
            + (" (pass the Value itself, not its .data)" if isinstance(root, float) else "")
        )


def nearest(root: Value, max_nodes: int | None) -> list[Value]:
    """The `max_nodes` nodes nearest `root` (None: all), breadth first from
    the root, so that a cut graph keeps the part nearest the output."""
    seen = {id(root)}
    order = [root]
    queue = deque([root])
    while queue and (max_nodes is None or len(order) < max_nodes):
        for child in queue.popleft().children:
            if id(child) not in seen:
                if max_nodes is not None and len(order) >= max_nodes:
                    break
                seen.add(id(child))
                order.append(child)
                queue.append(child)
    return order


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
    _check_root(root, "tree")
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
    _check_root(root, "to_dot")
    names = {id(v): name for name, v in (labels or {}).items()}
    order = nearest(root, max_nodes)
    ids = {id(node): f"n{i}" for i, node in enumerate(order)}

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
        lines.append(f'  {nid}_op [label="{_quote(op_label(node), record=False)}", shape=oval];')
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


# --- pictures ------------------------------------------------------------------------

DRAW_NODES = 40  # draw()'s default: as many values as a reader takes in at a glance
DRAW_LIMIT = 100  # beyond this a picture is a blur, and slow to lay out and render
RENDERERS = ("auto", "matplotlib", "graphviz")
GRAPHVIZ_SECONDS = 30  # a `dot` that takes longer is stopped: never a hang
PICTURE_FORMATS = {".png": "png", ".svg": "svg"}
DPI = 100

# Sizes in inches (the picture's axes are drawn 1 unit = 1 inch, so that the
# boxes can be sized from their text). Monospace text: 0.6 em per character.
FONT = 9.0
EDGE_FONT = 8.0
CHAR = FONT * 0.6 / 72
EDGE_CHAR = EDGE_FONT * 0.6 / 72
BOX_HEIGHT = 0.34
ROW = 0.55  # from one box's centre to the next in a column
GAP = 0.45  # between columns, before room for the edge labels
MARGIN = 0.25
LABEL_CHARS = 40  # a longer label or op name is elided in the middle

_COLOURS = {  # kind -> (fill, outline)
    "leaf": ("#e3f1e3", "#4a8a4a"),
    "value": ("#e6eef9", "#4a6fa5"),
    "root": ("#c9daf3", "#23467a"),
    "op": ("#fff3cf", "#a67c00"),
    "fused": ("#fbd9b8", "#b3540b"),
}


@dataclass
class _Shape:
    """A box in the picture: a value, an op, or the mark of a cut ("more")."""

    kind: str  # one of _COLOURS, "more", or "bend" (where a long edge crosses a column)
    text: str
    rank: int = 0  # columns from the right: the output is 0
    x: float = 0.0
    y: float = 0.0  # downwards
    span: float = 0.0  # a bend's: the width of its column

    @property
    def width(self) -> float:
        if self.kind in ("more", "bend"):
            return len(self.text) * CHAR
        return max(len(self.text) * CHAR + 0.24, 0.5)


@dataclass
class _Scene:
    """What a picture shows: its shapes, the edges between them (from, to,
    local gradients), and a line saying how much of the graph that is."""

    shapes: list[_Shape] = field(default_factory=list)
    edges: list[tuple[int, int, str]] = field(default_factory=list)
    paths: list[list[int]] = field(default_factory=list)  # per edge: its shapes, bends included
    note: str = ""


def draw(
    root: Value,
    labels: Mapping[str, Value] | None = None,
    max_nodes: int = DRAW_NODES,
    renderer: str = "auto",
) -> GraphPicture:
    """A picture of the graph below `root`, output on the right, leaves on the left.

    Each value is a box "label | data | grad"; the op that made it is an oval
    to its left (a fused `dot` or `sum`, one node for a whole sum of terms, a
    darker box saying how many); each edge into an op carries the local
    gradient d(op)/d(input). Only the `max_nodes` values nearest `root` are
    drawn (at most DRAW_LIMIT = 100: `tree` and `to_dot` show any size); where
    the graph goes on, a "... N more" mark says how many inputs are not shown.

    In Jupyter the picture shows itself; `.save("graph.png")` (or .svg)
    writes it. `renderer`: "matplotlib" (the plot extra), "graphviz" (needs
    Graphviz's `dot` program; draws `to_dot`'s boxes), or "auto": matplotlib
    when it is installed, else Graphviz when `dot` is on PATH.
    """
    _check_root(root, "draw")
    if renderer not in RENDERERS:
        raise ValueError(f"renderer must be one of {', '.join(RENDERERS)}, not {renderer!r}")
    if not 1 <= max_nodes <= DRAW_LIMIT:
        raise ValueError(
            f"max_nodes={max_nodes}: a picture shows 1 to {DRAW_LIMIT} values; "
            f"tree() or to_dot() show more"
        )
    dot = _renderer(renderer)
    scene = _scene(root, labels or {}, max_nodes)
    dot_text = to_dot(root, labels, max_nodes) if dot is not None else None
    return GraphPicture(scene, dot, dot_text)


def _renderer(renderer: str) -> str | None:
    """Graphviz's `dot` program, or None for matplotlib, checked now rather
    than when the picture is first shown."""
    from microgpt.plot import require_matplotlib

    if renderer == "auto":  # matplotlib draws the same picture everywhere; else Graphviz
        try:
            require_matplotlib()
            return None
        except UsageError:
            dot = shutil.which("dot")
            if dot is None:
                raise
            return dot
    if renderer == "matplotlib":
        require_matplotlib()
        return None
    dot = shutil.which("dot")
    if dot is None:
        raise UsageError(
            "renderer='graphviz' needs Graphviz's dot program on PATH; "
            "renderer='matplotlib' needs only the plot extra"
        )
    return dot


class GraphPicture:
    """A drawn graph. Jupyter shows it (`_repr_svg_`, `_repr_png_`);
    `save(path)` writes a PNG or an SVG; `note` says what it shows."""

    def __init__(self, scene: _Scene, dot: str | None, dot_text: str | None) -> None:
        self._scene = scene
        self._dot = dot  # Graphviz's program, or None: matplotlib draws
        self._dot_text = dot_text
        self._rendered: dict[str, bytes] = {}
        self._figure: Figure | None = None
        self.note = scene.note

    def __repr__(self) -> str:
        return f"<graph picture: {self.note}>"

    def render(self, fmt: str) -> bytes:
        """The picture as a "png" or "svg" file's bytes."""
        if fmt not in PICTURE_FORMATS.values():
            raise ValueError(f"format must be png or svg, not {fmt!r}")
        if fmt not in self._rendered:
            if self._dot is not None and self._dot_text is not None:
                self._rendered[fmt] = _graphviz(self._dot, self._dot_text, fmt)
            else:
                self._rendered[fmt] = _matplotlib(self.figure(), fmt)
        return self._rendered[fmt]

    def figure(self) -> Figure:
        """The picture as a matplotlib Figure (drawn by matplotlib whatever the renderer)."""
        if self._figure is None:
            self._figure = _figure(self._scene)
        return self._figure

    def _repr_svg_(self) -> str:
        return self.render("svg").decode("utf-8")

    def _repr_png_(self) -> bytes:
        return self.render("png")

    def save(self, path: str | Path) -> None:
        """Write the picture to `path`, a .png or .svg file, atomically. An
        existing file is replaced only if it is a picture of that format."""
        from microgpt.files import OUTPUT, check_output, show, write_bytes_atomic

        suffix = Path(path).suffix.lower()
        fmt = PICTURE_FORMATS.get(suffix)
        if fmt is None:
            raise UsageError(f"{show(path)}: a graph picture is a .png or .svg file")
        is_picture = _is_picture(fmt)
        target = check_output(path, OUTPUT, f"a microgpt {suffix[1:].upper()} picture", is_picture)
        write_bytes_atomic(target, self.render(fmt), is_picture)


def _is_picture(fmt: str) -> Callable[[Path], bool]:
    def check(path: Path) -> bool:
        with open(path, "rb") as f:
            head = f.read(64)
        if fmt == "png":
            return head.startswith(b"\x89PNG\r\n\x1a\n")
        return head.lstrip().startswith((b"<?xml", b"<svg"))

    return check


def _matplotlib(fig: Figure, fmt: str) -> bytes:
    from matplotlib import rc_context

    buffer = io.BytesIO()
    # an SVG keeps its text as text (searchable, and a tenth the size); no
    # date in it, so that the same graph makes the same file
    with rc_context({"svg.fonttype": "none"}):
        metadata = {"Date": None} if fmt == "svg" else {}
        fig.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata)
    return buffer.getvalue()


def _graphviz(dot: str, dot_text: str, fmt: str) -> bytes:
    try:
        done = subprocess.run(
            [dot, f"-T{fmt}"],
            input=dot_text.encode("utf-8"),
            capture_output=True,
            timeout=GRAPHVIZ_SECONDS,
        )
    except subprocess.TimeoutExpired:
        why = f"took more than {GRAPHVIZ_SECONDS} s"
    except OSError as exc:
        why = exc.strerror or str(exc)
    else:
        if done.returncode == 0 and done.stdout:
            return done.stdout
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = lines[0] if lines else f"exit status {done.returncode}"
    raise UsageError(f"Graphviz's {dot} failed ({why}); draw(..., renderer='matplotlib') avoids it")


# --- what a picture shows, and where -----------------------------------------------


def _scene(root: Value, labels: Mapping[str, Value], max_nodes: int) -> _Scene:
    """A box per drawn value, an op box to the left of each computed one,
    an edge per (input, op) pair, then the layout."""
    names = {id(v): name for name, v in labels.items()}
    nodes = nearest(root, max_nodes)
    index = {id(node): i for i, node in enumerate(nodes)}
    scene = _Scene([_value_shape(node, names.get(id(node)), node is root) for node in nodes])
    cut = 0
    for i, node in enumerate(nodes):
        children = node.children
        if not children:
            continue
        op = len(scene.shapes)
        fused = _op_name(node) in FUSED_OPS
        scene.shapes.append(_Shape("fused" if fused else "op", _shown(op_label(node))))
        scene.edges.append((op, i, ""))
        grads: dict[int, list[str]] = {}  # an input used twice (x * x) gets one edge
        hidden: set[int] = set()
        for child, local in zip(children, node.local_grads):
            j = index.get(id(child))
            if j is None:
                hidden.add(id(child))
            else:
                grads.setdefault(j, []).append(f"{local:.4g}")
        # a fused op's many edges would bury their labels: the key gives its rule instead
        scene.edges += [(j, op, "" if fused else ", ".join(t)) for j, t in grads.items()]
        if hidden:
            cut += 1
            scene.shapes.append(_Shape("more", f"... {len(hidden)} more"))
            scene.edges.append((len(scene.shapes) - 1, op, ""))
    ops = sum(1 for shape in scene.shapes if shape.kind in ("op", "fused"))
    scene.note = f"{len(nodes)} values, {ops} ops"
    if cut:
        scene.note += (
            f": the {len(nodes)} values nearest the output of a larger graph "
            f"(max_nodes={max_nodes}); '... N more' marks the inputs not drawn"
        )
    _layout(scene)
    return scene


def _shown(text: str) -> str:
    """A label or op name as one short line of a box."""
    return shorten(one_line(text), LABEL_CHARS)


def _value_shape(node: Value, name: str | None, is_root: bool) -> _Shape:
    text = f"data {node.data:.4g} | grad {node.grad:.4g}"
    if name is not None:
        text = f"{_shown(name)} | {text}"
    kind = "root" if is_root else "value" if node.children else "leaf"
    return _Shape(kind, text)


def _layout(scene: _Scene) -> None:
    """Columns by the longest path from the output (so every edge points
    right), an invisible bend in each column a long edge crosses (so that it
    passes between boxes, not behind them), rows ordered by where each
    shape's consumers are."""
    shapes = scene.shapes
    inputs: list[list[int]] = [[] for _ in shapes]
    waiting = [0] * len(shapes)  # consumers not ranked yet
    for source, target, _ in scene.edges:
        inputs[target].append(source)
        waiting[source] += 1
    # a shape's rank is final once every consumer has been ranked (Kahn's order)
    ready = deque(i for i, n in enumerate(waiting) if n == 0)
    while ready:
        i = ready.popleft()
        for j in inputs[i]:
            shapes[j].rank = max(shapes[j].rank, shapes[i].rank + 1)
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    consumers: list[list[int]] = [[] for _ in shapes]
    for source, target, _ in scene.edges:
        path = [source]
        for rank in range(shapes[source].rank - 1, shapes[target].rank, -1):
            shapes.append(_Shape("bend", "", rank))
            consumers.append([])
            path.append(len(shapes) - 1)
        path.append(target)
        for a, b in zip(path, path[1:]):
            consumers[a].append(b)
        scene.paths.append(path)
    columns: dict[int, list[int]] = {}
    for i, shape in enumerate(shapes):
        columns.setdefault(shape.rank, []).append(i)
    right = 0.0
    for rank in sorted(columns):
        column = columns[rank]
        width = max(shapes[i].width for i in column)
        for i in column:
            shapes[i].x = right - width / 2
            if shapes[i].kind == "bend":
                shapes[i].span = width
        _place_rows(shapes, column, consumers)
        # room for the labels on the edges leaving this column
        labels = [len(text) for source, _, text in scene.edges if shapes[source].rank == rank]
        right -= width + GAP + max(labels, default=0) * EDGE_CHAR


def _place_rows(shapes: list[_Shape], column: list[int], consumers: list[list[int]]) -> None:
    """Each shape as near as it can be to the mean height of its consumers
    (already placed: they are further right), in that order, ROW apart."""
    wanted = {
        i: sum(shapes[j].y for j in consumers[i]) / len(consumers[i]) if consumers[i] else 0.0
        for i in column
    }
    order = sorted(column, key=wanted.__getitem__)  # stable: inputs keep their order
    previous = None
    for i in order:
        shapes[i].y = wanted[i] if previous is None else max(wanted[i], previous + ROW)
        previous = shapes[i].y
    shift = sum(wanted[i] - shapes[i].y for i in column) / len(column)
    for i in column:
        shapes[i].y += shift


def _figure(scene: _Scene) -> Figure:
    """Draw the laid-out scene with matplotlib, 1 unit = 1 inch."""
    from matplotlib.figure import Figure

    shapes = [s for s in scene.shapes if s.kind != "bend"]
    left = min(s.x - s.width / 2 for s in shapes) - MARGIN
    right = max(s.x + s.width / 2 for s in shapes) + MARGIN
    top = min(s.y for s in scene.shapes) - BOX_HEIGHT / 2 - MARGIN
    key = KEY + (FUSED_KEY if any(s.kind == "fused" for s in shapes) else "")
    if "larger graph" in scene.note:
        key = f"{scene.note}\n{key}"
    caption = 0.16 * (key.count("\n") + 1) + 0.1
    bottom = max(s.y for s in scene.shapes) + BOX_HEIGHT / 2 + MARGIN + caption
    width = max(right - left, 7.0)  # wide enough for the caption
    left -= (width - (right - left)) / 2
    fig = Figure(figsize=(width, bottom - top), dpi=DPI)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.set_xlim(left, left + width)
    ax.set_ylim(bottom, top)  # y grows downwards, as the layout's does
    for path, (_, _, text) in zip(scene.paths, scene.edges):
        _draw_edge(ax, [scene.shapes[i] for i in path], text)
    for shape in shapes:
        _draw_shape(ax, shape)
    fig.text(0.5, 0.08 / (bottom - top), key, ha="center", va="bottom", fontsize=8, color="0.3")
    return fig


KEY = (
    "box: a value (label | data | grad), green: an input or weight;  oval: the op that "
    "made the value on its right;\nnumber on an edge: the local gradient d(op)/d(input)"
)
FUSED_KEY = (
    ";  orange: a fused op, one node for a whole sum\n(a dot's local gradients are "
    "d/dw_i = x_i and d/dx_i = w_i, a sum's are all 1)"
)


def _draw_edge(ax: Axes, path: list[_Shape], text: str) -> None:
    """An arrow from the right side of the input to the left side of the
    consumer, straight across the columns it crosses."""
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path as Line

    first, last = path[0], path[-1]
    points = [(first.x + first.width / 2, first.y)]
    for bend in path[1:-1]:
        points += [(bend.x - bend.span / 2, bend.y), (bend.x + bend.span / 2, bend.y)]
    points.append((last.x - last.width / 2, last.y))
    arrow = FancyArrowPatch(
        path=Line(points), arrowstyle="-|>", mutation_scale=9, color="0.45", lw=0.9, zorder=1
    )
    ax.add_artist(arrow)  # not add_patch: the limits are set, and updating them is slow
    if text:  # halfway across the gap after the input
        (x0, y0), (x1, y1) = points[0], points[1]
        level = abs(y1 - y0) < 0.05
        # above a level edge (on it, "-10-" could read as minus ten); on a
        # sloping one, breaking the line, so that it is clear whose it is
        ax.text(
            (x0 + x1) / 2, (y0 + y1) / 2 - (0.03 if level else 0.0), text, fontsize=EDGE_FONT,
            family="monospace", color="#8a3b00", ha="center", parse_math=False,
            va="bottom" if level else "center", zorder=3,
            bbox=None if level else {"facecolor": "white", "edgecolor": "none", "pad": 1.5},
        )  # fmt: skip


def _draw_shape(ax: Axes, shape: _Shape) -> None:
    from matplotlib.patches import FancyBboxPatch

    if shape.kind != "more":
        fill, outline = _COLOURS[shape.kind]
        rounding = BOX_HEIGHT / 2 if shape.kind == "op" else 0.06
        box = FancyBboxPatch(
            (shape.x - shape.width / 2, shape.y - BOX_HEIGHT / 2),
            shape.width,
            BOX_HEIGHT,
            boxstyle=f"round,pad=0,rounding_size={rounding}",
            facecolor=fill,
            edgecolor=outline,
            linewidth=1.8 if shape.kind in ("root", "fused") else 1.0,
            zorder=2,
        )
        ax.add_artist(box)
    ax.text(
        shape.x, shape.y, shape.text, fontsize=FONT, family="monospace", zorder=3, parse_math=False,
        ha="center", va="center", color="0.4" if shape.kind == "more" else "black",
        fontweight="bold" if shape.kind == "fused" else "normal",
    )  # fmt: skip
