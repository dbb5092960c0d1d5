"""Pictures: loss curves of runs and the attention of a trained model.

    microgpt plot loss LOG... -o FILE.png
    microgpt plot attention CKPT TEXT -o FILE.png

matplotlib is an optional extra (`pip install "microgpt-exact[plot]"`); it is
imported only when a picture is drawn, so the rest of microgpt never needs it.
Each function that draws returns the matplotlib `Figure`, which a notebook
shows as it is and `save_figure` writes as a PNG.
"""

from __future__ import annotations

import argparse
import math
import textwrap
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from microgpt.console import Console
from microgpt.errors import Name, UsageError
from microgpt.files import check_output, show, write_atomic
from microgpt.limits import Limits
from microgpt.runlog import MEAN_WINDOW, RunLog, differing_settings, read_logs
from microgpt.settings import POSITIVE_INT, add_flags, shorten

if TYPE_CHECKING:  # matplotlib is optional: only the type checker imports it here
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_HINT = 'pip install "microgpt-exact[plot]"'
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DPI = 120


def require_matplotlib() -> None:
    """Fail with a one-line hint, before any work, if matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(
            f"pictures need matplotlib, which is not installed: {INSTALL_HINT}"
        ) from None


def new_figure(width: float, height: float) -> Figure:
    """A figure of its own (no pyplot: no global state, no window), with
    fonts a reader can see at a glance."""
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig


def style(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=13)
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    ax.tick_params(labelsize=10)


# --- output ------------------------------------------------------------------------


PICTURE = Name("output", "picture")  # the setting that names a picture (`-o`)


def check_picture(path: str | Path, name: Name = PICTURE) -> None:
    """Refuse, before any work, a picture path that is not ours to write:
    a name not ending in .png, or anything `files.check_output` refuses (an
    existing file that is not a PNG among them: a picture is replaced,
    nothing else ever is)."""
    if Path(path).suffix.lower() != ".png":
        raise UsageError(name, f" {show(path)}: pictures are PNG files; give a name ending in .png")
    check_output(path, name, "a PNG", _is_png)


def _is_png(path: Path) -> bool:
    """Whether `path` is empty or starts as a PNG does."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(PNG_SIGNATURE))
    except OSError:
        return False
    return not head or head == PNG_SIGNATURE


def save_figure(fig: Figure, path: str | Path, name: Name = PICTURE) -> None:
    """Write `fig` as a PNG, atomically (see `files.write_atomic`), so a
    failure never leaves half a picture."""
    check_picture(path, name)

    def write(f: BinaryIO) -> None:
        fig.savefig(f, format="png", dpi=DPI)

    write_atomic(path, write, _is_png)


# --- loss curves --------------------------------------------------------------------


def running_mean(values: list[float], window: int) -> list[float]:
    """Entry i is the mean of values[i - window + 1 .. i] (fewer at the start)."""
    means, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        means.append(total / min(i + 1, window))
    return means


def run_labels(logs: list[RunLog]) -> list[str]:
    """A legend label per run: the settings that differ between the runs
    (from the logs' headers), else the shortest distinct ends of the paths."""
    if len(logs) > 1 and all(log.header is not None for log in logs):
        differ = differing_settings(logs)
        for key in differ[0]:
            values = [d[key] for d in differ]
            if all(isinstance(v, str) and "/" in v for v in values):  # paths, URLs
                for d, tail in zip(differ, distinct_tails(values)):
                    d[key] = tail
        labels = [
            ", ".join(f"{key.replace('_', '-')}={value}" for key, value in d.items())
            for d in differ
        ]
        if all(labels) and len(set(labels)) == len(labels):
            return labels
    return distinct_tails([log.path for log in logs])


def distinct_tails(paths: list[str]) -> list[str]:
    """The shortest ends of the paths (whole parts) that tell different paths
    apart, the paths themselves if none does."""
    parts = {path: Path(path).parts for path in paths}
    for depth in range(1, max((len(p) for p in parts.values()), default=0) + 1):
        tails = {path: "/".join(p[-depth:]) for path, p in parts.items()}
        if len(set(tails.values())) == len(tails):
            return [tails[path] for path in paths]
    return paths


def distinct(labels: list[str]) -> list[str]:
    """The labels, those that repeat numbered ("log.jsonl [2]"): two runs
    never share a name in a legend (the same log given twice, say)."""
    counts = Counter(labels)
    seen: Counter[str] = Counter()
    named = []
    for label in labels:
        seen[label] += 1
        named.append(f"{label} [{seen[label]}]" if counts[label] > 1 else label)
    return named


def finite_points(steps: list[int], losses: list[float]) -> tuple[list[int], list[float]]:
    """The (step, loss) pairs whose loss is a finite number: a diverged run's
    NaN or infinity cannot be drawn (and would make every later mean NaN)."""
    kept = [(step, loss) for step, loss in zip(steps, losses) if math.isfinite(loss)]
    return [step for step, _ in kept], [loss for _, loss in kept]


def not_drawn(log: RunLog) -> str | None:
    """A note naming what of `log` a loss plot leaves out, if anything."""
    bad = sum(not math.isfinite(x) for x in log.losses)
    bad_val = sum(not math.isfinite(x) for x in log.val_losses)
    if not bad and not bad_val:
        return None
    counts = [_count(n, what) for n, what in ((bad, "loss"), (bad_val, "validation loss")) if n]
    return f"{show(log.path)}: {' and '.join(counts)} not drawn (NaN or infinite)"


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("es" if n != 1 else "")


LABEL_WIDTH = 34  # characters per legend line: a long label wraps, a very long one is elided
LABEL_LINES = 3
LEGEND_LINES = 36  # lines in a column of the runs' legend
LINE_STYLES = ["-", "--", ":", "-."]  # with the 10 colours, 40 runs look different


def loss_figure(
    logs: list[RunLog], labels: list[str] | None = None, window: int = MEAN_WINDOW
) -> Figure:
    """Every run's loss by step: each step's loss faint, its running mean over
    `window` steps bold, and the validation loss (where logged) as diamonds
    without a line. The runs' legend is right of the plot, the key to the
    styles below it: neither ever covers a curve or the other."""
    from matplotlib.ticker import MaxNLocator

    labels = distinct(labels if labels is not None else run_labels(logs))
    fig = new_figure(11, 5.5)
    ax = fig.add_subplot()
    # a step's loss jumps around; over several runs the raw curves are
    # only a backdrop, and the axis follows the means, which are compared
    raw_alpha = 0.2 if len(logs) == 1 else max(0.02, 0.3 / len(logs))
    handles: list[Any] = []
    texts: list[str] = []
    shown: list[float] = []
    for i, (log, label) in enumerate(zip(logs, labels)):
        handle, means, val_losses = _draw_run(ax, log, i, raw_alpha, window)
        handles.append(handle)
        texts.append(_legend_text(label, means, val_losses))
        shown += means + val_losses
    if shown:  # every mean and validation point is inside the plot
        low, high = min(shown), max(shown)
        pad = 0.15 * (high - low) or 0.1
        ax.set_ylim(low - pad, high + pad)
    style(ax, "Training loss", "step", "loss (cross-entropy, nats)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.grid(alpha=0.3)
    has_val = any(isinstance(handle, tuple) for handle in handles)
    _run_legend(fig, handles, texts, has_val)
    _key(fig, window, has_val, step_reads(logs))
    return fig


def step_reads(logs: list[RunLog]) -> str:
    """What one training step of these runs reads ("one document", "4
    windows"), where their headers agree on it; "" where they do not."""
    kinds = set()
    for log in logs:
        settings = log.settings()  # a log without a header: the defaults
        kinds.add((settings.get("data_mode", "lines"), settings.get("batch_size", 1)))
    if len(kinds) != 1:
        return ""
    mode, batch = kinds.pop()
    thing = "window" if mode == "text" else "document"
    return f"one {thing}" if batch == 1 else f"{batch} {thing}s"


def _draw_run(
    ax: Axes, log: RunLog, i: int, raw_alpha: float, window: int
) -> tuple[Any, list[float], list[float]]:
    """Run i's curves; returns its legend handle (the mean's line, with the
    validation marks if any), its running means and validation losses."""
    color, dashes = f"C{i % 10}", LINE_STYLES[i // 10 % len(LINE_STYLES)]
    steps, losses = finite_points(log.steps, log.losses)
    means = running_mean(losses, window)
    ax.plot(steps, losses, color=color, alpha=raw_alpha, linewidth=0.8)
    (line,) = ax.plot(steps, means, color=color, linewidth=2, linestyle=dashes)
    val_steps, val_losses = finite_points(log.val_steps, log.val_losses)
    if not val_steps:
        return line, means, val_losses
    (marks,) = ax.plot(val_steps, val_losses, linestyle="none", **_diamond(color))
    return (line, marks), means, val_losses


def _legend_text(label: str, means: list[float], val_losses: list[float]) -> str:
    text = textwrap.fill(
        shorten(label, LABEL_WIDTH * LABEL_LINES), LABEL_WIDTH, break_on_hyphens=False
    )
    text = text.replace("$", r"\$")  # shown as written, never read as TeX math
    ending = f": {means[-1]:.3f}" if means else ""
    return text + ending + (f" (validation {val_losses[-1]:.3f})" if val_losses else "")


def _run_legend(fig: Figure, handles: list[Any], texts: list[str], has_val: bool) -> None:
    """The runs' legend, right of the plot; the figure grows to hold it."""
    from matplotlib.legend_handler import HandlerTuple

    if not handles:
        return
    lines = [text.count("\n") + 1 for text in texts]
    columns = math.ceil(sum(lines) / LEGEND_LINES)
    tallest = math.ceil(len(texts) / columns) * max(lines)  # lines in the fullest column
    fig.set_figheight(max(5.5, 1.8 + 0.24 * min(tallest, sum(lines))))
    fig.set_figwidth(11 + 4 * (columns - 1))  # the plot keeps its width
    fig.legend(
        handles,
        texts,
        loc="outside right upper",
        ncols=columns,
        title="run: final mean loss" + (" (validation)" if has_val else ""),
        fontsize=10,
        title_fontsize=10,
        handler_map={tuple: HandlerTuple(ndivide=None)},
    )


def _key(fig: Figure, window: int, has_val: bool, reads: str) -> None:
    """What each style means, below the plot."""
    from matplotlib.lines import Line2D

    raw = "each step's loss" + (f" ({reads})" if reads else "")
    key = [
        (Line2D([], [], color="0.4", alpha=0.5, linewidth=0.8), raw),
        (Line2D([], [], color="0.4", linewidth=2), f"mean of the last {window} steps"),
    ]
    if has_val:
        key.append((Line2D([], [], linestyle="none", **_diamond("0.6")), "validation loss"))
    fig.legend(
        [handle for handle, _ in key],
        [text for _, text in key],
        loc="outside lower center",
        ncols=len(key),
        fontsize=9,
        frameon=False,
    )


def _diamond(color: str) -> dict[str, Any]:
    """Validation points: marks, not a line, edged in black, so that they are
    never read as the training curve of the same colour."""
    return {
        "marker": "D",
        "markersize": 6,
        "markerfacecolor": color,
        "markeredgecolor": "black",
        "markeredgewidth": 0.8,
        "zorder": 3,
    }


# --- attention ----------------------------------------------------------------------


def attention_figure(ckpt_path: str | Path, text: str) -> Figure:
    """A heatmap per layer and head: how much each position of BOS + `text`
    attends to each position before it (the cells above the diagonal, the
    future, are blank: the model never sees them)."""
    from microgpt import checkpoint

    require_matplotlib()
    ckpt = checkpoint.load(ckpt_path)
    config = ckpt.model_config
    if not text:
        raise UsageError("TEXT is empty; give the characters for the model to read")
    if len(text) + 1 > config.block_size:
        raise UsageError(
            f"TEXT is {len(text)} characters; this model reads BOS and at most "
            f"{config.block_size - 1} characters (its ",
            Name("block_size"),
            f" is {config.block_size})",
        )
    tokens = [ckpt.tokenizer.bos, *ckpt.tokenizer.encode(text)]
    weights = ckpt.model().attention_weights(tokens)
    labels = ["BOS", *text]
    fig = new_figure(2.6 * config.n_head + 1.2, 2.6 * config.n_layer + 0.9)
    grid = fig.subplots(config.n_layer, config.n_head, squeeze=False)
    image = None
    for layer, row in enumerate(grid):
        for head, ax in enumerate(row):
            image = _heatmap(ax, weights[layer][head], labels)
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=11)
            if head == 0:
                ax.set_ylabel("position reading", fontsize=10)
            if layer == config.n_layer - 1:
                ax.set_xlabel("position attended to", fontsize=10)
    assert image is not None
    fig.colorbar(image, ax=grid, shrink=0.8, label="attention weight")
    fig.suptitle(
        f"Attention over {text!r} after {ckpt.step} training steps\n"
        "each row sums to 1; blank cells are the future, which a position never sees",
        fontsize=12,
    )
    return fig


def _heatmap(ax: Axes, rows: list[list[float]], labels: list[str]) -> Any:
    """One head's weights; row t has t + 1 entries, the rest is masked."""
    import numpy as np
    from matplotlib import colormaps

    n = len(labels)
    cells = np.full((n, n), np.nan)
    for t, row in enumerate(rows):
        cells[t, : len(row)] = row
    cmap = colormaps["Blues"].with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(cells), cmap=cmap, vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), labels, fontsize=9)
    ax.set_yticks(range(n), labels, fontsize=9)
    if n <= 8:  # few cells: the numbers fit, and a reader can check a row sums to 1
        for t, row in enumerate(rows):
            for s, w in enumerate(row):
                color = "white" if w > 0.6 else "black"
                ax.text(s, t, f"{w:.2f}", ha="center", va="center", fontsize=7, color=color)
    return image


# --- the `microgpt plot` command -------------------------------------------------------


def add_parser(subparsers: Any) -> None:
    """Add `microgpt plot loss|attention` to the `microgpt` parser."""
    plot = subparsers.add_parser(
        "plot",
        help="draw a picture: loss curves or attention (needs the plot extra)",
        description=f"Draw a picture as a PNG. Needs matplotlib: {INSTALL_HINT}",
    )
    kinds = plot.add_subparsers(dest="picture", metavar="PICTURE", parser_class=type(plot))
    kinds.required = True

    loss = kinds.add_parser(
        "loss",
        help="loss curves of one or more runs' --log files",
        description="Overlay the loss of runs logged with `microgpt train --log`, labelled by "
        "the settings that differ between them.",
    )
    loss.add_argument("logs", nargs="+", metavar="LOG", help="JSON Lines logs")
    loss.add_argument("-o", "--output", required=True, metavar="FILE.png", help="the picture")
    add_flags(loss, Limits, only=("max_data_size",))
    loss.add_argument(
        "--window",
        type=POSITIVE_INT.parse,
        default=MEAN_WINDOW,
        help=f"steps in the running mean ({MEAN_WINDOW})",
    )
    loss.set_defaults(func=cmd_loss)

    attention = kinds.add_parser(
        "attention",
        help="a trained model's attention over a text, per layer and head",
        description="Heatmaps of the attention weights of a checkpoint's model reading TEXT.",
    )
    attention.add_argument("checkpoint", metavar="CKPT")
    attention.add_argument("text", metavar="TEXT", help="the characters the model reads")
    attention.add_argument("-o", "--output", required=True, metavar="FILE.png", help="the picture")
    attention.set_defaults(func=cmd_attention)


def cmd_loss(args: argparse.Namespace, console: Console) -> int:
    require_matplotlib()
    check_picture(args.output)
    logs = read_logs(args.logs, args.max_data_size)
    for note in filter(None, map(not_drawn, logs)):
        console.message(f"note: {note}")
    fig = loss_figure(logs, window=args.window)
    save_figure(fig, args.output)
    console.message(f"wrote {args.output}")
    return 0


def cmd_attention(args: argparse.Namespace, console: Console) -> int:
    require_matplotlib()
    check_picture(args.output)
    save_figure(attention_figure(args.checkpoint, args.text), args.output)
    console.message(f"wrote {args.output}")
    return 0
