"""Pictures: `microgpt plot loss|attention` and `microgpt lesson xor --plot`.

Each picture is checked twice: as the PNG file a user gets, and as the
matplotlib Figure it was drawn from (how many curves, panels, points).
"""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import DOCS, microgpt_cli, ok
from conftest import assert_one_line_error as refused

from microgpt import plot
from microgpt.errors import UsageError
from microgpt.lessons import xor
from microgpt.runlog import read_log, read_logs

if not os.environ.get("CI"):  # CI installs the plot extra: there its absence fails
    pytest.importorskip("matplotlib")

# Two layers of two heads: four attention panels, tiny enough for either engine.
SMALL = ["--n-layer", "2", "--n-embd", "8", "--n-head", "2", "--block-size", "8"]


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == plot.PNG_SIGNATURE


def legend_texts(fig: Any) -> list[str]:
    """The runs' legend (the figure's first legend), entry by entry."""
    return [t.get_text() for t in fig.legends[0].get_texts()]


def write_log(path: Path, *records: object, header: object = None) -> Path:
    """A log of these records (JSON text as given, dicts dumped), with a
    header record first if given."""
    lines = [] if header is None else [json.dumps({"format": "microgpt-log", "header": header})]
    lines += [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def curve(n: int, start: float = 3.3, val_every: int = 0) -> list[dict[str, float]]:
    """A made-up run of n steps whose loss falls from `start`."""
    records: list[dict[str, float]] = []
    for step in range(1, n + 1):
        records.append({"step": step, "loss": start - step / n + 0.3 * ((step * 7) % 5) / 5})
        if val_every and step % val_every == 0:
            records.append({"step": step, "val_loss": start - step / n + 0.4})
    return records


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two short runs that differ in --lr, with logs and a checkpoint."""
    folder = tmp_path_factory.mktemp("runs")
    data = folder / "names.txt"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    paths = {"data": data, "ckpt": folder / "ckpt.json"}
    for lr in ("0.01", "0.02"):
        log = folder / f"lr{lr}.jsonl"
        out = ["--out", paths["ckpt"]] if lr == "0.01" else []
        ok(microgpt_cli("train", "--data", data, *SMALL, "--steps", 30, "--lr", lr,
                        "--samples", 0, "--log", log, *out))  # fmt: skip
        paths[lr] = log
    return paths


def with_header(source: Path, target: Path, settings: dict[str, object]) -> Path:
    """A copy of a log with a header record and validation records."""
    records = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    records = [r for r in records if "header" not in r]  # replaced by this one
    header = {"settings": settings, "engine": "compiled", "version": "0.1.0"}
    lines = [{"header": header}]
    for record in records:
        lines.append(record)
        if record["step"] % 10 == 0:
            lines.append({"step": record["step"], "val_loss": record["loss"] + 0.5})
    target.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return target


# --- loss curves ---------------------------------------------------------------------


def test_loss_plot_draws_raw_and_smoothed_curve_per_run(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    logs = [read_log(trained["0.01"]), read_log(trained["0.02"])]
    fig = plot.loss_figure(logs, window=5)
    (ax,) = fig.axes
    assert len(ax.lines) == 4  # raw and running mean, for each run
    raw, smooth = ax.lines[0], ax.lines[1]
    assert list(raw.get_ydata()) == logs[0].losses
    assert list(smooth.get_ydata())[9] == pytest.approx(sum(logs[0].losses[5:10]) / 5)
    # each run is named by the setting its log's header says differs, then its final mean
    labels = legend_texts(fig)
    assert labels == [f"lr=0.01: {smooth.get_ydata()[-1]:.3f}", labels[1]]
    assert labels[1].startswith("lr=0.02: ")
    # logs without a header are named by their files
    for name in ("0.01", "0.02"):
        lines = trained[name].read_text(encoding="utf-8").splitlines()[1:]
        (tmp_path / f"lr{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    bare = [read_log(tmp_path / "lr0.01.jsonl"), read_log(tmp_path / "lr0.02.jsonl")]
    labels = legend_texts(plot.loss_figure(bare, window=5))
    assert [label.split(": ")[0] for label in labels] == ["lr0.01.jsonl", "lr0.02.jsonl"]

    out = tmp_path / "loss.png"
    ok(microgpt_cli("plot", "loss", trained["0.01"], trained["0.02"], "-o", out))
    assert is_png(out)


def test_loss_plot_labels_runs_by_the_settings_that_differ(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    a = with_header(trained["0.01"], tmp_path / "a.jsonl", {"lr": 0.01, "n_embd": 8})
    b = with_header(trained["0.02"], tmp_path / "b.jsonl", {"lr": 0.02, "n_embd": 8})
    logs = [read_log(a), read_log(b)]
    assert logs[0].val_steps == [10, 20, 30]
    fig = plot.loss_figure(logs)
    (ax,) = fig.axes
    assert len(ax.lines) == 6  # raw, mean and validation for each run
    labels = legend_texts(fig)
    assert [label.split(":")[0] for label in labels] == ["lr=0.01", "lr=0.02"]
    assert labels[0].endswith(f" (validation {logs[0].val_losses[-1]:.3f})")
    val = ax.lines[2]
    assert list(val.get_xdata()) == [10, 20, 30]


def test_running_mean_is_the_mean_of_the_last_window() -> None:
    assert plot.running_mean([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert plot.running_mean([2.0, 4.0], 100) == [2.0, 3.0]


def test_a_bad_log_is_one_line_naming_file_and_line(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    lines = trained["0.01"].read_text(encoding="utf-8").splitlines()
    bad.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n", encoding="utf-8")
    refused(microgpt_cli("plot", "loss", bad, "-o", tmp_path / "x.png"), "bad.jsonl", "line 2")
    assert not (tmp_path / "x.png").exists()
    # a last line cut short by a killed run is not an error
    torn = tmp_path / "torn.jsonl"
    torn.write_text("\n".join(lines) + '\n{"step": 31, "lo', encoding="utf-8")
    assert len(read_log(torn).losses) == 30


# --- any microgpt log, and nothing else -------------------------------------------------


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "1e400", "1" + "0" * 400])
def test_non_finite_losses_are_not_drawn_and_a_note_says_so(bad: str, tmp_path: Path) -> None:
    # a diverged run logs NaN or Infinity; 1e400 and a 400-digit integer are beyond float
    records = [json.dumps(r) for r in curve(30, val_every=10)]
    records[5] = f'{{"step": 6, "loss": {bad}}}'
    records.append(f'{{"step": 30, "val_loss": {bad}}}')
    log = write_log(tmp_path / "run.jsonl", *records)
    out = tmp_path / "loss.png"
    result = ok(microgpt_cli("plot", "loss", log, "-o", out))
    assert result.stderr.splitlines() == [
        f"note: {log}: 1 loss and 1 validation loss not drawn (NaN or infinite)",
        f"wrote {out}",
    ]
    assert is_png(out)
    fig = plot.loss_figure([read_log(log)], window=5)
    raw, mean, val = fig.axes[0].lines
    assert len(raw.get_ydata()) == 29 and len(val.get_ydata()) == 3
    assert all(math.isfinite(y) for line in (raw, mean, val) for y in line.get_ydata())
    assert all(math.isfinite(y) for y in fig.axes[0].get_ylim())


@pytest.mark.parametrize(
    ("record", "words"),
    [
        ('{"step": 2, "loss": -0.5}', "'loss' is negative"),
        ('{"step": 2, "val_loss": -Infinity}', "'val_loss' is negative"),
        ('{"step": 2, "loss": -1' + "0" * 400 + "}", "'loss' is negative"),
        ('{"step": -1, "loss": 2.0}', "'step' is out of range"),
        ('{"step": 1' + "0" * 400 + ', "loss": 2.0}', "'step' is out of range"),
        ('{"step": 2.5, "loss": 2.0}', "'step' is not a whole number"),
        ('{"step": 2, "loss": "2.0"}', "'loss' is not a number"),
        ('{"step": 2, "loss": true}', "'loss' is not a number"),
    ],
)
def test_numbers_no_run_writes_are_refused_in_one_line(
    record: str, words: str, tmp_path: Path
) -> None:
    log = write_log(tmp_path / "run.jsonl", {"step": 1, "loss": 3.0}, record, header={})
    out = tmp_path / "loss.png"
    refused(microgpt_cli("plot", "loss", log, "-o", out), "run.jsonl, line 3", words)
    assert not out.exists()


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ([1, 2], "the header is not a JSON object"),
        ({"settings": [["lr", 0.01]]}, "the header's 'settings' is not a JSON object"),
        ({"settings": "lr=0.01"}, "the header's 'settings' is not a JSON object"),
        ({"settings": {}, "data": "names.txt"}, "the header's 'data' is not a JSON object"),
        ({"settings": {}, "data": {"source": 7}}, "the header's data 'source' is not a string"),
        ({"settings": {}, "engine": ["compiled"]}, "the header's 'engine' is not a string"),
        ({"settings": {}, "version": 1}, "the header's 'version' is not a string"),
    ],
)
def test_a_header_of_the_wrong_shape_is_refused_in_one_line(
    header: object, words: str, tmp_path: Path
) -> None:
    good = write_log(tmp_path / "good.jsonl", *curve(5), header={"settings": {"lr": 0.01}})
    bad = write_log(tmp_path / "bad.jsonl", *curve(5), header=header)
    out = tmp_path / "loss.png"
    refused(microgpt_cli("plot", "loss", good, bad, "-o", out), "bad.jsonl, line 1", words)
    assert not out.exists()
    # another program's JSON Lines with a header is not a microgpt log
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text(json.dumps({"format": "other", "header": {}}) + "\n", encoding="utf-8")
    refused(microgpt_cli("plot", "loss", foreign, "-o", out), "not a microgpt log")


def test_the_logs_together_are_capped(tmp_path: Path) -> None:
    logs = [write_log(tmp_path / f"run{i}.jsonl", *curve(50)) for i in range(3)]
    total = sum(log.stat().st_size for log in logs)
    out = tmp_path / "loss.png"
    ok(microgpt_cli("plot", "loss", *logs, "-o", out, "--max-data-size", total))
    out.unlink()
    line = refused(
        microgpt_cli("plot", "loss", *logs, "-o", out, "--max-data-size", total - 1),
        "the 3 logs are larger than",
        "in all",
    )
    assert line.endswith("--max-data-size SIZE reads more")
    assert not out.exists()


def test_the_output_is_checked_before_any_log_is_read(tmp_path: Path) -> None:
    bad = write_log(tmp_path / "bad.jsonl", '{"step": 1, "loss": -1}')
    refused(microgpt_cli("plot", "loss", bad, "-o", tmp_path / "no" / "x.png"), "-o", "folder")


def test_no_two_runs_share_a_label(tmp_path: Path) -> None:
    log = write_log(tmp_path / "run.jsonl", *curve(20))
    fig = plot.loss_figure([read_log(log), read_log(log)])  # the same log twice
    labels = [text.split(":")[0] for text in legend_texts(fig)]
    assert labels == ["run.jsonl [1]", "run.jsonl [2]"]
    out = tmp_path / "loss.png"
    ok(microgpt_cli("plot", "loss", log, log, "-o", out))
    # settings that differ only in how a value is written: named by their files
    a = write_log(tmp_path / "a.jsonl", *curve(20), header={"settings": {"lr": 0.1}})
    b = write_log(tmp_path / "b.jsonl", *curve(20), header={"settings": {"lr": "0.1"}})
    assert plot.run_labels([read_log(a), read_log(b)]) == ["a.jsonl", "b.jsonl"]
    # labels given by a caller (a sweep's run names) are kept apart too
    fig = plot.loss_figure([read_log(a), read_log(b)], labels=["run", "run"])
    assert [text.split(":")[0] for text in legend_texts(fig)] == ["run [1]", "run [2]"]


def test_labels_are_drawn_as_written(tmp_path: Path) -> None:
    # a name with dollar signs is not TeX for matplotlib to typeset (or choke on)
    logs = [write_log(tmp_path / name, *curve(10)) for name in ("a$\\frac$.jsonl", "b$x^$.jsonl")]
    out = tmp_path / "loss.png"
    ok(microgpt_cli("plot", "loss", *logs, "-o", out))
    assert is_png(out)


def test_runs_on_different_data_are_named_by_the_ends_of_the_paths(tmp_path: Path) -> None:
    folder = "/home/someone/projects/datasets/a/very/long/folder/name"
    runs = [(0.01, "a.txt"), (0.02, "a.txt"), (0.01, "b.txt")]
    logs = [
        read_log(
            write_log(
                tmp_path / f"{i}.jsonl",
                *curve(20),
                header={"settings": {"lr": lr}, "data": {"source": f"{folder}/{name}"}},
            )
        )
        for i, (lr, name) in enumerate(runs)
    ]
    assert plot.run_labels(logs) == [
        "lr=0.01, data=a.txt",
        "lr=0.02, data=a.txt",
        "lr=0.01, data=b.txt",
    ]


def test_validation_losses_are_marks_inside_the_plot(tmp_path: Path) -> None:
    from matplotlib.colors import to_rgba

    # validation losses far above and below the training curve
    records = [*curve(200), {"step": 50, "val_loss": 9.0}, {"step": 150, "val_loss": 0.1}]
    fig = plot.loss_figure([read_log(write_log(tmp_path / "run.jsonl", *records))], window=10)
    ax = fig.axes[0]
    mean, val = ax.lines[1], ax.lines[2]
    # marks without a line: never read as the training curve of the same colour
    assert val.get_linestyle() == "None" and val.get_marker() == "D"
    assert to_rgba(val.get_markerfacecolor()) == to_rgba(mean.get_color())
    assert to_rgba(val.get_markeredgecolor()) == to_rgba("black")
    low, high = ax.get_ylim()
    assert all(low < y < high for line in (mean, val) for y in line.get_ydata())
    left, right = ax.get_xlim()
    assert all(left < x < right for x in val.get_xdata())
    assert legend_texts(fig)[0].endswith(" (validation 0.100)")
    assert "validation loss" in [t.get_text() for t in fig.legends[1].get_texts()]


def test_the_key_says_what_a_step_reads(tmp_path: Path) -> None:
    def key(*settings: dict[str, object]) -> str:
        paths = [write_log(tmp_path / f"{i}.jsonl", *curve(3), header={"settings": s})
                 for i, s in enumerate(settings)]  # fmt: skip
        fig = plot.loss_figure(read_logs([str(p) for p in paths]))
        return fig.legends[1].get_texts()[0].get_text()

    assert key({}) == "each step's loss (one document)"  # the defaults: one document a step
    assert key({"batch_size": 4}, {"batch_size": 4}) == "each step's loss (4 documents)"
    assert key({"data_mode": "text", "batch_size": 1}) == "each step's loss (one window)"
    assert key({"batch_size": 1}, {"batch_size": 2}) == "each step's loss"  # they differ


@pytest.mark.parametrize("runs", [1, 4, 12, 45])
def test_the_legends_never_cover_the_plot_or_each_other(runs: int, tmp_path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    folder = "/home/someone/projects/datasets/a/very/long/folder/name"
    logs = [
        read_log(
            write_log(
                tmp_path / f"{i}.jsonl",
                *curve(300, start=3.3 + i / 100, val_every=50),
                header={
                    "settings": {"lr": 0.001 * (i + 1), "n_embd": 16},
                    "data": {"source": f"{folder}/names-{i % 3}-with-a-long-name.txt"},
                },
            )
        )
        for i in range(runs)
    ]
    fig = plot.loss_figure(logs)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    (ax,) = fig.axes
    boxes = {
        "plot": ax.get_window_extent(renderer),
        "title": ax.title.get_window_extent(renderer),
        "x label": ax.xaxis.label.get_window_extent(renderer),
        "runs": fig.legends[0].get_window_extent(renderer),
        "key": fig.legends[1].get_window_extent(renderer),
    }
    assert not ax.texts  # every note is in a legend
    for name, box in boxes.items():  # nothing cut off at the figure's edge
        assert box.x0 >= 0 and box.y0 >= 0, name
        assert box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1, name
    names = list(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            one, two = boxes[a], boxes[b]
            width = min(one.x1, two.x1) - max(one.x0, two.x0)
            height = min(one.y1, two.y1) - max(one.y0, two.y0)
            assert width <= 0 or height <= 0, (a, b)
    labels = legend_texts(fig)
    assert len(labels) == runs and len(set(labels)) == runs
    assert all(len(line) <= 70 for label in labels for line in label.splitlines())


def test_only_png_files_are_written_or_replaced(trained: dict[str, Path], tmp_path: Path) -> None:
    precious = tmp_path / "notes.png"
    precious.write_text("my notes", encoding="utf-8")
    refused(microgpt_cli("plot", "loss", trained["0.01"], "-o", precious), "not a PNG")
    assert precious.read_text(encoding="utf-8") == "my notes"
    refused(microgpt_cli("plot", "loss", trained["0.01"], "-o", tmp_path / "a.pdf"), ".png")
    refused(
        microgpt_cli("plot", "loss", trained["0.01"], "-o", tmp_path / "no" / "a.png"), "folder"
    )
    # an earlier picture is replaced
    out = tmp_path / "loss.png"
    ok(microgpt_cli("plot", "loss", trained["0.01"], "-o", out))
    ok(microgpt_cli("plot", "loss", trained["0.02"], "-o", out))
    assert is_png(out)


# --- attention ---------------------------------------------------------------------


def test_attention_plot_has_a_causal_panel_per_layer_and_head(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    fig = plot.attention_figure(trained["ckpt"], "anna")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2 * 2  # --n-layer 2, --n-head 2
    assert [ax.get_title() for ax in panels[:2]] == ["layer 1, head 1", "layer 1, head 2"]
    for ax in panels:
        cells = ax.images[0].get_array()
        assert cells.shape == (5, 5)  # BOS + 4 characters
        for t in range(5):
            for s in range(5):
                assert bool(cells.mask[t, s]) == (s > t)  # nothing above the diagonal
            assert float(cells[t, : t + 1].sum()) == pytest.approx(1.0)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["BOS", "a", "n", "n", "a"]

    out = tmp_path / "attention.png"
    ok(microgpt_cli("plot", "attention", trained["ckpt"], "anna", "-o", out))
    assert is_png(out)


def test_attention_text_must_fit_the_model(trained: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "a.png"
    refused(microgpt_cli("plot", "attention", trained["ckpt"], "abcdefghij", "-o", out), "7")
    refused(microgpt_cli("plot", "attention", trained["ckpt"], "an!", "-o", out), "'!'")
    assert not out.exists()


# --- XOR ------------------------------------------------------------------------------


def test_xor_lesson_draws_the_boundary_and_the_four_points(tmp_path: Path) -> None:
    out = tmp_path / "xor.png"
    result = ok(microgpt_cli("lesson", "xor", "--plot", out))
    assert "all four points classified correctly" in result.stdout
    assert is_png(out)

    import random

    model = xor.MLP(random.Random(1))
    fig = xor.boundary_figure(model, steps=0, resolution=11)
    ax = fig.axes[0]
    points = {tuple(p) for c in ax.collections for p in c.get_offsets() if len(c.get_offsets())}
    assert points == {x for x, _ in xor.POINTS}
    assert "boundary: output 0" in [t.get_text() for t in ax.get_legend().get_texts()]


# --- without matplotlib ----------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["plot", "loss", "LOG", "-o", "x.png"], ["lesson", "xor", "--plot", "x.png"]],
)
def test_without_matplotlib_the_error_says_how_to_install_it(
    command: list[str], trained: dict[str, Path], tmp_path: Path
) -> None:
    command = [str(trained["0.01"]) if word == "LOG" else word for word in command]
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # makes `import matplotlib` fail
        "from microgpt.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *command],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    refused(result, 'pip install "microgpt-exact[plot]"')
    assert not (tmp_path / "x.png").exists()


def test_check_picture_refuses_a_folder(tmp_path: Path) -> None:
    (tmp_path / "pic.png").mkdir()
    with pytest.raises(UsageError, match="is a directory; give a file name"):
        plot.check_picture(tmp_path / "pic.png")


def test_a_log_is_read_only_up_to_its_cap(trained: dict[str, Path], tmp_path: Path) -> None:
    # A log is an input like any other: one over --max-data-size is refused in one line.
    out = tmp_path / "loss.png"
    small = microgpt_cli("plot", "loss", trained["0.01"], "-o", out, "--max-data-size", "100")
    assert small.returncode == 2
    assert small.stderr.splitlines() == [
        f"microgpt: error: log {trained['0.01']} is larger than 100 bytes; "
        "--max-data-size SIZE reads more"
    ]
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b'{"step": 1, "loss": \xff}\n')
    refused = microgpt_cli("plot", "loss", binary, "-o", out)
    assert refused.returncode == 2
    assert (
        refused.stderr.strip() == f"microgpt: error: {binary}: not a microgpt log (not UTF-8 text)"
    )
    assert not out.exists()


@pytest.mark.posix_only("device nodes (mknod)")
def test_an_endless_log_is_read_only_up_to_the_cap(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    zero = tmp_path / "zero"
    os.mknod(zero, 0o444 | stat.S_IFCHR, os.makedev(1, 5))  # like /dev/zero, our own node
    out = tmp_path / "loss.png"
    endless = microgpt_cli("plot", "loss", zero, "-o", out, "--max-data-size", "1M")
    assert endless.returncode == 2 and "is larger than 1.0 MiB" in endless.stderr
    assert not out.exists()
