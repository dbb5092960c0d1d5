"""Pictures: `microgpt plot loss|attention` and `microgpt lesson xor --plot`.

Each picture is checked twice: as the PNG file a user gets, and as the
matplotlib Figure it was drawn from (how many curves, panels, points).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DOCS, microgpt_cli, ok
from conftest import assert_one_line_error as refused

from microgpt import plot
from microgpt.errors import UsageError
from microgpt.lessons import xor
from microgpt.runlog import read_log

if not os.environ.get("CI"):  # CI installs the plot extra: there its absence fails
    pytest.importorskip("matplotlib")

# Two layers of two heads: four attention panels, tiny enough for either engine.
SMALL = ["--n-layer", "2", "--n-embd", "8", "--n-head", "2", "--block-size", "8"]


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == plot.PNG_SIGNATURE


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
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [f"lr=0.01: {smooth.get_ydata()[-1]:.3f}", labels[1]]
    assert labels[1].startswith("lr=0.02: ")
    # logs without a header are named by their files
    for name in ("0.01", "0.02"):
        lines = trained[name].read_text(encoding="utf-8").splitlines()[1:]
        (tmp_path / f"lr{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    bare = [read_log(tmp_path / "lr0.01.jsonl"), read_log(tmp_path / "lr0.02.jsonl")]
    labels = [
        t.get_text() for t in plot.loss_figure(bare, window=5).axes[0].get_legend().get_texts()
    ]
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
    (ax,) = plot.loss_figure(logs).axes
    assert len(ax.lines) == 6  # raw, mean and validation for each run
    labels = [t.get_text().split(":")[0] for t in ax.get_legend().get_texts()]
    assert labels == ["lr=0.01", "lr=0.01 (validation)", "lr=0.02", "lr=0.02 (validation)"]
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
    # A log is an input like any other: an endless one (a device like
    # /dev/zero) or one over --max-data-size is refused in one line.
    out = tmp_path / "loss.png"
    small = microgpt_cli("plot", "loss", trained["0.01"], "-o", out, "--max-data-size", "100")
    assert small.returncode == 2
    assert small.stderr.splitlines() == [
        f"microgpt: error: log {trained['0.01']} is larger than 100 bytes; "
        "--max-data-size SIZE reads more"
    ]
    if os.geteuid() == 0:  # making a device node needs root
        zero = tmp_path / "zero"
        os.mknod(zero, 0o444 | stat.S_IFCHR, os.makedev(1, 5))  # like /dev/zero, our own node
        endless = microgpt_cli("plot", "loss", zero, "-o", out, "--max-data-size", "1M")
        assert endless.returncode == 2 and "is larger than 1.0 MiB" in endless.stderr
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b'{"step": 1, "loss": \xff}\n')
    refused = microgpt_cli("plot", "loss", binary, "-o", out)
    assert refused.returncode == 2
    assert (
        refused.stderr.strip() == f"microgpt: error: {binary}: not a microgpt log (not UTF-8 text)"
    )
    assert not out.exists()
