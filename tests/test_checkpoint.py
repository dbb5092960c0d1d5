"""Checkpoints: exact round trips, atomic writes, and refusal of anything that
is not a checkpoint this version wrote (as data: never as code)."""

from __future__ import annotations

import ast
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import IO, Any

import pytest
from conftest import DOCS, TINY, TINY_SETTINGS, assert_one_line_error, lines_of, microgpt_cli

import microgpt.checkpoint
from microgpt import checkpoint
from microgpt.errors import UsageError
from microgpt.train import Run, TrainConfig, documents_fingerprint

VOCAB_SIZE = len(set("".join(DOCS))) + 1


def new_run(steps: int = 4) -> Run:
    return Run.start(DOCS, TrainConfig(steps=steps), **TINY_SETTINGS)


def save(run: Run, path: Path) -> None:
    checkpoint.save(run, path, "names.txt", documents_fingerprint(DOCS))


def state_hex(run: Run) -> list[str]:
    """Every number a run carries, as exact bit patterns."""
    numbers = [p.data for p in run.model.params] + [*run.optimizer.m, *run.optimizer.v]
    return [x.hex() for x in numbers]


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A valid checkpoint of a tiny run after 2 of 4 steps."""
    run = new_run()
    run.train_step()
    run.train_step()
    path = tmp_path / "ckpt.json"
    save(run, path)
    return path


def write_variant(path: Path, change: Any) -> Path:
    raw = json.loads(path.read_text(encoding="utf-8"))
    change(raw)
    out = path.with_name("variant.json")
    out.write_text(json.dumps(raw), encoding="utf-8")
    return out


# --- round trips -------------------------------------------------------------


def test_resumed_run_continues_bit_for_bit(saved: Path) -> None:
    whole = new_run()
    whole_losses = [whole.train_step() for _ in range(4)]

    resumed = checkpoint.load(saved).run(DOCS)
    assert resumed.step == 2
    losses = [resumed.train_step() for _ in range(2)]

    assert [x.hex() for x in losses] == [x.hex() for x in whole_losses[2:]]
    assert state_hex(resumed) == state_hex(whole)
    assert resumed.rng.getstate() == whole.rng.getstate()


def test_saved_numbers_read_back_identically(tmp_path: Path) -> None:
    run = new_run()
    run.train_step()
    path = tmp_path / "c.json"
    save(run, path)
    loaded = checkpoint.load(path)
    assert state_hex(loaded.run(DOCS)) == state_hex(run)
    assert loaded.rng().getstate() == run.rng.getstate()
    assert loaded.tokenizer.chars == run.tokenizer.chars
    assert loaded.data == {
        "source": "names.txt",
        "sha256": documents_fingerprint(DOCS),
        "documents": len(DOCS),
    }


@pytest.mark.posix_only("file modes (umask, chmod)")
def test_checkpoint_permissions_are_those_of_an_ordinary_file(tmp_path: Path) -> None:
    run = new_run()
    path = tmp_path / "c.json"
    old_umask = os.umask(0o022)
    try:
        save(run, path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    path.chmod(0o600)  # a user who made it private keeps it private
    save(run, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- atomic writes -----------------------------------------------------------


def test_a_failed_write_leaves_the_previous_checkpoint(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = saved.read_bytes()

    def half_then_fail(obj: Any, fp: IO[str], **kwargs: Any) -> None:
        fp.write(json.dumps(obj, **kwargs)[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(microgpt.checkpoint.json, "dump", half_then_fail)
    with pytest.raises(OSError):
        save(new_run(), saved)
    monkeypatch.undo()

    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["ckpt.json"]  # no temp file left
    assert checkpoint.load(saved).step == 2


def test_a_diverged_run_is_not_saved(saved: Path) -> None:
    before = saved.read_bytes()
    run = new_run()
    run.optimizer.v[5] = float("inf")
    with pytest.raises(checkpoint.UnsavableRun, match=r"v\['wte'\] holds inf"):
        save(run, saved)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["ckpt.json"]


# A training run whose second checkpoint write stops halfway and hangs, so the
# test can SIGKILL it at exactly that point.
HANG_IN_SECOND_SAVE = """
import json, os, sys, time
from microgpt import cli

real_dump = json.dump
calls = 0

def dump_half_then_hang(obj, fp, **kwargs):
    global calls
    calls += 1
    if calls < 2:
        return real_dump(obj, fp, **kwargs)
    text = json.dumps(obj, **kwargs)
    fp.write(text[: len(text) // 2])
    fp.flush()
    os.fsync(fp.fileno())
    print("half written", flush=True)
    time.sleep(300)

json.dump = dump_half_then_hang
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.posix_only("SIGKILL")
def test_sigkill_while_saving_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    data = tmp_path / "names.txt"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    ckpt = tmp_path / "ckpt.json"
    args = ["train", "--data", data, "--steps", 4, *TINY, "--save-every", 1, "--out", ckpt]
    child = subprocess.Popen(
        [sys.executable, "-c", HANG_IN_SECOND_SAVE, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert lines_of(child.stdout).get(timeout=120) == "half written\n"  # type: ignore[arg-type]
        first_save = ckpt.read_bytes()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        child.kill()
        child.wait()
        stderr = child.stderr.read()  # type: ignore[union-attr]
    assert child.returncode == -signal.SIGKILL
    assert f"saved {ckpt} at step 1" in stderr

    # The half-written file exists, but only under its temporary name.
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0
    assert ckpt.read_bytes() == first_save
    assert checkpoint.load(ckpt).step == 1

    resumed = microgpt_cli("train", "--resume", ckpt, "--samples", 0)
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint.load(ckpt).step == 4


# --- refusing bad checkpoints -------------------------------------------------


def _set(path: list[Any], value: Any) -> Any:
    def change(raw: Any) -> None:
        target = raw
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


BAD_CHECKPOINTS: dict[str, tuple[Any, str]] = {
    "not a checkpoint": (lambda raw: raw.update(format="something-else"), "not a microgpt"),
    "other version": (_set(["version"], 2), "format version 2 is not supported"),
    "missing weights": (lambda raw: raw.pop("weights"), "missing 'weights'"),
    "missing row": (
        lambda raw: raw["weights"]["wte"].pop(),
        f"weights['wte'] must have {VOCAB_SIZE} rows",
    ),
    "short row": (
        lambda raw: raw["adam"]["m"]["wpe"][3].pop(),
        "adam.m['wpe'] rows must have 8 numbers",
    ),
    "extra matrix": (_set(["weights", "layer1.attn_wq"], [[0.0]]), "must hold exactly"),
    "vocab size": (_set(["model", "vocab_size"], 20), "vocab_size is 20"),
    "unsorted vocab": (_set(["vocab"], "ba"), "sorted order"),
    "string weight": (_set(["weights", "wte", 0, 0], "0.5"), "not a finite float"),
    "infinite weight": (_set(["weights", "wte", 0, 0], float("inf")), "Infinity"),
    "absurd n_embd": (
        _set(["model", "n_embd"], 100000),
        # 12 n_embd^2 per layer, plus wte, lm_head and wpe
        f"has about {12 * 100000**2 + (2 * VOCAB_SIZE + 8) * 100000:,} parameters and needs about",
    ),
    "absurd n_layer": (_set(["model", "n_layer"], 10**12), "of memory to train, more than the"),
    "heads": (_set(["model", "n_head"], 3), "divisible"),
    "step past the end": (_set(["step"], 99), "step 99 is outside 0..4"),
    "step as text": (_set(["step"], "2"), "step '2' is outside"),
    "unknown setting": (_set(["model", "evil"], 1), "unknown model setting(s): evil"),
    "code as a setting": (_set(["model", "norm"], "__import__('os').system('id')"), "norm"),
    "lr as text": (
        _set(["training", "lr"], "0.01"),
        "bad training settings: lr must be a number, got '0.01'",
    ),
    "lr of zero": (_set(["training", "lr"], 0.0), "bad training settings: lr must be positive"),
    "absurd number of steps": (
        _set(["training", "steps"], 10**13),
        "steps must be at least 1 and at most 1,000,000,000,000",
    ),
    "negative beta": (_set(["training", "beta1"], -0.5), "beta1 must be at least 0"),
    "rng state": (_set(["rng_state"], [3, [1, 2], None]), "rng_state"),
    "data": (_set(["data"], "names.txt"), "data must name its source"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoint_is_refused(saved: Path, case: str) -> None:
    change, fragment = BAD_CHECKPOINTS[case]
    variant = write_variant(saved, change)
    with pytest.raises(UsageError) as info:
        checkpoint.load(variant)
    message = str(info.value)
    assert fragment in message
    assert str(variant) in message and "\n" not in message


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "not a valid checkpoint (the file is empty)"),
        ("hello", "not a valid checkpoint (not JSON: Expecting value at line 1, column 1)"),
        ('{"format": "microgpt-checkpoint", "vers', "stops short at line 1, column 35"),
        ("[1, 2]", "not a microgpt checkpoint"),
        ('{"weights": [NaN]}', "NaN"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_text_that_is_not_a_checkpoint(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError, match="c.json") as info:
        checkpoint.load(path)
    assert fragment in str(info.value)


def test_number_too_big_for_a_float_is_refused(saved: Path) -> None:
    raw = json.loads(saved.read_text(encoding="utf-8"))
    raw["weights"]["wpe"][0][0] = "HUGE"
    variant = saved.with_name("huge.json")
    variant.write_text(json.dumps(raw).replace('"HUGE"', "1e999"), encoding="utf-8")
    with pytest.raises(UsageError, match=r"weights\['wpe'\] holds inf, not a finite float"):
        checkpoint.load(variant)


def test_absurd_size_is_refused_before_allocating(saved: Path) -> None:
    # A model this wide would need terabytes; refusing must cost next to nothing.
    variant = write_variant(saved, _set(["model", "n_embd"], 100000))
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match="parameters"):
            checkpoint.load(variant)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000


def test_cli_refuses_bad_checkpoints_in_one_line(saved: Path, tmp_path: Path) -> None:
    before = saved.read_bytes()
    missing = tmp_path / "nope.json"
    assert_one_line_error(microgpt_cli("sample", missing), f"checkpoint not found: {missing}")
    assert_one_line_error(
        microgpt_cli("train", "--resume", missing), f"checkpoint not found: {missing}"
    )

    truncated = tmp_path / "truncated.json"
    truncated.write_text(before.decode()[: len(before) // 2], encoding="utf-8")
    assert_one_line_error(
        microgpt_cli("sample", truncated), str(truncated), "stops short", "is the file truncated?"
    )

    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\x80\x04\x95")
    assert_one_line_error(microgpt_cli("sample", binary), "not UTF-8")

    assert_one_line_error(microgpt_cli("sample", tmp_path), "is a directory")

    version = write_variant(saved, _set(["version"], 2))
    assert_one_line_error(microgpt_cli("sample", version), "format version 2")
    assert_one_line_error(microgpt_cli("train", "--resume", version), "format version 2")

    shapes = write_variant(saved, lambda raw: raw["weights"]["lm_head"].pop())
    assert_one_line_error(microgpt_cli("sample", shapes), "weights['lm_head'] must have")

    absurd = write_variant(saved, _set(["model", "n_embd"], 100000))
    assert_one_line_error(microgpt_cli("train", "--resume", absurd), "parameters")
    assert saved.read_bytes() == before


# --- never code ---------------------------------------------------------------


def test_checkpoint_code_has_no_way_to_run_code() -> None:
    source = Path(microgpt.checkpoint.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    forbidden = {"pickle", "marshal", "shelve", "eval", "exec", "compile", "__import__"}
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    assert not names & forbidden


class _Payload:
    """What a malicious pickle does on load: run a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = tmp_path / "evil.json"
    payload.write_bytes(pickle.dumps(_Payload(marker), protocol=0))
    with pytest.raises(UsageError):
        checkpoint.load(payload)
    assert_one_line_error(microgpt_cli("sample", payload), str(payload))
    assert_one_line_error(microgpt_cli("train", "--resume", payload), str(payload))
    assert not marker.exists()


def test_code_in_fields_is_only_ever_data(saved: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    code = f"__import__('os').system('touch {marker}')"
    variant = write_variant(saved, _set(["data", "source"], code))
    ckpt = checkpoint.load(variant)  # a string is a fine data source name...
    assert ckpt.data["source"] == code
    # ...which, on resume, is looked for as a file, and not found.
    assert_one_line_error(microgpt_cli("train", "--resume", variant), "data file not found")
    for field in (["vocab"], ["model", "activation"], ["training", "seed"]):
        bad = write_variant(saved, _set(field, code))
        assert_one_line_error(microgpt_cli("sample", bad), str(bad))
    assert not marker.exists()


def test_loading_does_not_modify_the_file(saved: Path) -> None:
    before = saved.read_bytes()
    raw = json.loads(before)
    ckpt = checkpoint.load(saved)
    ckpt.run(DOCS).train_step()
    assert saved.read_bytes() == before
    # training the rebuilt run leaves the loaded checkpoint alone
    assert ckpt.weights == raw["weights"]
    assert ckpt.adam_m == [
        x for name in raw["adam"]["m"] for row in raw["adam"]["m"][name] for x in row
    ]
