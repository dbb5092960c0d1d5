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
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from microgpt.console import Console
from microgpt.errors import Name, UsageError
from microgpt.files import check_output, show, write_atomic
from microgpt.limits import Limits
from microgpt.runlog import MEAN_WINDOW, RunLog, differing_settings, read_log
from microgpt.settings import POSITIVE_INT, add_flags

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
        labels = [
            ", ".join(f"{key.replace('_', '-')}={value}" for key, value in d.items())
            for d in differ
        ]
        if all(labels) and len(set(labels)) == len(labels):
            return labels
    parts = [Path(log.path).parts for log in logs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        tails = ["/".join(p[-depth:]) for p in parts]
        if len(set(tails)) == len(tails):
            return tails
    return [log.path for log in logs]


def loss_figure(
    logs: list[RunLog], labels: list[str] | None = None, window: int = MEAN_WINDOW
) -> Figure:
    """Every run's loss by step: each step's loss faint, its running mean over
    `window` steps bold, and the validation loss (where logged) as dots."""
    labels = labels if labels is not None else run_labels(logs)
    fig = new_figure(9, 5.5)
    ax = fig.add_subplot()
    # one document's loss jumps around; over several runs the raw curves are
    # only a backdrop, and the axis follows the means, which are compared
    raw_alpha = 0.2 if len(logs) == 1 else 0.07
    shown: list[float] = []
    for i, (log, label) in enumerate(zip(logs, labels)):
        color = f"C{i % 10}"
        means = running_mean(log.losses, window)
        ax.plot(log.steps, log.losses, color=color, alpha=raw_alpha, linewidth=0.8)
        ending = f": {means[-1]:.3f}" if means else ""
        ax.plot(log.steps, means, color=color, linewidth=2, label=label + ending)
        shown += means
        if log.val_steps:
            ax.plot(
                log.val_steps,
                log.val_losses,
                color=color,
                linestyle="--",
                marker="o",
                markersize=4,
                label=f"{label} (validation): {log.val_losses[-1]:.3f}",
            )
            shown += log.val_losses
    if shown:
        low, high = min(shown), max(shown)
        pad = 0.15 * (high - low) or 0.1
        ax.set_ylim(low - pad, high + pad)
    style(ax, "Training loss", "step", "loss (cross-entropy, nats)")
    ax.text(
        0.99,
        0.98,
        f"faint: each step's loss (one document)\nbold: mean of the last {window} steps",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=9,
        color="0.35",
    )
    ax.grid(alpha=0.3)
    if logs:
        ax.legend(fontsize=10, loc="upper center", title="run: final mean loss", title_fontsize=10)
    return fig


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
    logs = [read_log(path, args.max_data_size) for path in args.logs]
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
