"""Reporting: results.csv, the table on stdout and loss.png, from the runs'
results (see `record.finished_result`). Only finished runs are listed, each
once, with the grid values as the sweep shows them (no secrets)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

from microgpt import plot
from microgpt.errors import UsageError
from microgpt.files import write_bytes_atomic
from microgpt.runlog import MEAN_WINDOW, RunLog, read_log
from microgpt.sweep.folder import OUT, PLOT, RESULTS, regular_or_missing
from microgpt.sweep.plan import RunSpec
from microgpt.sweep.record import RunRecord, RunResult

CSV_FIELDS = ("final_loss", "mean_loss", "val_loss", "seconds")
NOISY_NOTE = (
    f"(ranked by the mean training loss of the last {MEAN_WINDOW} steps, which is noisy; "
    f"give --val-fraction to rank by the loss on held-out documents)"
)
Row = dict[str, str]


def row(spec: RunSpec, result: RunResult, record: RunRecord) -> Row:
    """A finished run's line of results.csv (losses exactly, as `repr` writes them)."""
    return {
        "run": spec.name,
        **spec.public_values,
        "final_loss": repr(result.final_loss),
        "mean_loss": repr(result.mean_loss),
        "val_loss": "" if result.val_loss is None else repr(result.val_loss),
        "seconds": f"{record.seconds:.1f}",
    }


def write_results(folder: Path, keys: list[str], rows: list[Row]) -> None:
    path = folder / RESULTS
    regular_or_missing(path)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=["run", *keys, *CSV_FIELDS])
    writer.writeheader()
    writer.writerows(rows)
    data = text.getvalue().encode("utf-8")

    write_bytes_atomic(path, data)


def sort_key(rows: list[Row]) -> str:
    """Validation loss when every run has one, else the mean training loss."""
    return "val_loss" if rows and all(row["val_loss"] for row in rows) else "mean_loss"


def markdown_table(rows: list[Row]) -> str:
    if not rows:
        return "no finished runs"
    key = sort_key(rows)
    rows = sorted(rows, key=lambda row: float(row[key]))
    fields = [f for f in rows[0] if f != "run" and (f != "val_loss" or key == "val_loss")]

    def cell(field: str, text: str) -> str:
        return f"{float(text):.4f}" if field.endswith("loss") and text else text

    lines = [
        "| " + " | ".join(fields) + " |",
        "|" + "|".join("---" for _ in fields) + "|",
        *("| " + " | ".join(cell(f, row[f]) for f in fields) + " |" for row in rows),
    ]
    note = [] if key == "val_loss" else [NOISY_NOTE]
    return "\n".join([f"runs sorted by {key}:", *lines, *note])


def draw(folder: Path, specs: list[RunSpec], cap: int, say: Callable[[str], None]) -> None:
    """The finished runs' loss curves, when the plot extra is installed."""
    try:
        plot.require_matplotlib()
    except UsageError:
        say(f"(no {PLOT}: {plot.INSTALL_HINT} to draw it)")
        return
    if not specs:
        return
    path = folder / PLOT
    regular_or_missing(path)
    logs: list[RunLog] = [read_log(spec.log, cap) for spec in specs]
    plot.save_figure(plot.loss_figure(logs, [spec.label for spec in specs]), path, OUT)
    say(f"wrote {path}")
