"""Inputs are bounded: every read has a cap, a download has an overall
deadline, only a complete non-empty text body is cached, a bad cache entry is
fetched again, no credential is ever shown, and a byte-order mark is not data.

Downloads come from a server this test runs on 127.0.0.1 (threads, each
response bounded); nothing leaves the machine."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from conftest import TINY, microgpt_cli
from conftest import HTTPTestServer as Server

from microgpt import checkpoint
from microgpt.data import cache_path, load_documents
from microgpt.errors import UsageError
from microgpt.limits import Limits
from microgpt.settings import flag_of
from microgpt.train import documents_fingerprint

NAMES = Server.NAMES


def cached(tmp_path: Path) -> list[str]:
    folder = tmp_path / "cache"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


SMALL = Limits(max_data_size=64 * 1024, download_timeout=10)


@pytest.mark.parametrize(
    "path, fragment",
    [
        ("truncated", "the body stopped after 15 of 1000 bytes"),
        ("empty", "the body is empty (no documents)"),
        ("html", "the server sent a web page (HTML), not a text file"),
        ("binary", "the body is binary (holds NUL bytes), not text"),
        ("declared_huge", "larger than 64.0 KiB; max_data_size SIZE reads more"),
        ("endless", "larger than 64.0 KiB; max_data_size SIZE reads more"),
        ("missing", "HTTP 404"),
    ],
)
def test_a_bad_download_is_one_line_and_never_cached(
    server: Server, tmp_path: Path, path: str, fragment: str
) -> None:
    url = f"{server.base}/{path}"
    started = time.monotonic()
    with pytest.raises(UsageError) as info:
        load_documents(url, SMALL)
    message = str(info.value)
    assert message.startswith(f"cannot download {url}: ") and fragment in message, message
    assert "\n" not in message
    assert time.monotonic() - started < 5  # the endless one too: stopped at the cap
    assert cached(tmp_path) == []


def test_a_dripping_server_meets_the_overall_deadline(server: Server, tmp_path: Path) -> None:
    started = time.monotonic()
    # From Python the message names the setting; the command line its flag.
    with pytest.raises(UsageError, match=r"not complete after 1 s \(download_timeout") as info:
        load_documents(f"{server.base}/drip", Limits(download_timeout=1.0))
    assert "(--download-timeout SECONDS allows more)" in info.value.worded(flag_of)
    assert time.monotonic() - started < 2.5  # not 100 reads of 0.2 s
    assert cached(tmp_path) == []


def test_a_good_download_is_cached_and_a_bad_cache_entry_refetched(
    server: Server, tmp_path: Path
) -> None:
    url = f"{server.base}/names"
    assert load_documents(url) == ["ada", "grace", "alan"]
    assert load_documents(url) == ["ada", "grace", "alan"]
    assert [p for p, _ in server.requests] == ["/names"]  # the second came from the cache
    entry = cache_path(url)
    for damage in (b"", b"\x00" * 100, b"\xff\xfe not utf-8", b"  \n\n"):
        entry.write_bytes(damage)
        assert load_documents(url) == ["ada", "grace", "alan"]
        assert entry.read_bytes() == NAMES
    assert len(server.requests) == 5


def test_credentials_are_used_but_never_shown_or_saved(server: Server, tmp_path: Path) -> None:
    secret_url = f"http://user:s3cr3t@127.0.0.1:{server.port}/private?token=t0k3n"
    assert load_documents(secret_url) == ["ada", "grace", "alan"]
    assert server.requests[-1][1] == "Basic dXNlcjpzM2NyM3Q="
    assert not any("s3cr3t" in name for name in cached(tmp_path))

    data = tmp_path / "unused.txt"
    ckpt = tmp_path / "c.json"
    result = microgpt_cli(
        "train", "--data", secret_url, "--steps", 1, *TINY, "--samples", 0, "--out", ckpt,
        env={**os.environ, "MICROGPT_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "s3cr3t" not in result.stderr and "t0k3n" not in result.stderr
    assert f"data: http://***@127.0.0.1:{server.port}/private?... (3 documents" in result.stderr
    source = json.loads(ckpt.read_text())["data"]["source"]
    assert "s3cr3t" not in source and source.startswith("http://127.0.0.1:")
    assert not data.exists()

    wrong = f"http://user:wr0ng@127.0.0.1:{server.port}/missing?token=t0k3n"
    failed = microgpt_cli(
        "train", "--data", wrong, env={**os.environ, "MICROGPT_CACHE": str(tmp_path / "c2")}
    )
    assert failed.returncode == 2 and len(failed.stderr.splitlines()) == 1, failed.stderr
    assert "wr0ng" not in failed.stderr and "t0k3n" not in failed.stderr
    assert "HTTP 404" in failed.stderr


@pytest.mark.parametrize("path", ["truncated", "html", "drip"])
def test_download_failures_through_the_command_line(
    server: Server, tmp_path: Path, path: str
) -> None:
    env = {**os.environ, "MICROGPT_CACHE": str(tmp_path / "cache")}
    url = f"{server.base}/{path}"
    started = time.monotonic()
    result = microgpt_cli("train", "--data", url, "--download-timeout", 1, *TINY, env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"microgpt: error: cannot download {url}: ")
    assert time.monotonic() - started < 10
    assert cached(tmp_path) == []


# --- files ---------------------------------------------------------------------------------


def test_a_data_file_above_the_cap_is_refused_and_the_flag_raises_it(tmp_path: Path) -> None:
    data = tmp_path / "big.txt"
    data.write_bytes(b"anna\nbob\n" * 200)  # 1800 bytes
    result = microgpt_cli("train", "--data", data, "--max-data-size", "1k", "--steps", 1)
    assert result.returncode == 2
    assert result.stderr == (
        f"microgpt: error: data file {data} is larger than 1.0 KiB; --max-data-size SIZE "
        f"reads more\n"
    )
    ok = microgpt_cli(
        "train", "--data", data, "--max-data-size", "2k", "--steps", 1, *TINY, "--samples", 0
    )
    assert ok.returncode == 0, ok.stderr


@pytest.mark.posix_only("device nodes (mknod)")
def test_an_endless_device_is_read_only_up_to_the_cap(tmp_path: Path) -> None:
    zero = tmp_path / "zero"
    os.mknod(zero, 0o444 | stat.S_IFCHR, os.makedev(1, 5))  # like /dev/zero, our own node
    started = time.monotonic()
    result = microgpt_cli("train", "--data", zero, "--max-data-size", "1M", "--steps", 1)
    assert result.returncode == 2
    assert f"data file {zero} is larger than 1.0 MiB" in result.stderr
    assert time.monotonic() - started < 10


@pytest.mark.posix_only("FIFOs")
def test_a_fifo_can_be_the_data(tmp_path: Path) -> None:
    fifo = tmp_path / "docs"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(b"anna\nbob\n")

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    assert load_documents(str(fifo)) == ["anna", "bob"]
    writer.join(timeout=10)


def test_a_checkpoint_above_the_cap_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "names.txt"
    data.write_text("anna\nbob\n", encoding="utf-8")
    ckpt = tmp_path / "c.json"
    made = microgpt_cli("train", "--data", data, "--steps", 1, *TINY, "--out", ckpt)
    assert made.returncode == 0, made.stderr
    for command in (["sample", ckpt], ["train", "--resume", ckpt]):
        result = microgpt_cli(*command, "--max-checkpoint-size", "4k")
        assert result.returncode == 2
        assert result.stderr == (
            f"microgpt: error: checkpoint {ckpt} is larger than 4.0 KiB; "
            f"--max-checkpoint-size SIZE reads more\n"
        )
    assert microgpt_cli("sample", ckpt, "--max-checkpoint-size", "1M").returncode == 0
    with pytest.raises(UsageError, match="larger than"):
        checkpoint.load(ckpt, Limits(max_checkpoint_size=100))


def test_a_byte_order_mark_is_not_a_character_of_the_data(tmp_path: Path) -> None:
    plain, marked = tmp_path / "plain.txt", tmp_path / "marked.txt"
    plain.write_bytes(b"anna\nbob\n")
    marked.write_bytes(b"\xef\xbb\xbfanna\nbob\n")
    docs = load_documents(str(marked))
    assert docs == ["anna", "bob"] == load_documents(str(plain))
    assert documents_fingerprint(docs) == documents_fingerprint(load_documents(str(plain)))
    # Only at the start: a mark inside the text is a character like any other.
    inside = tmp_path / "inside.txt"
    inside.write_bytes(b"anna\n\xef\xbb\xbfbob\n")
    assert load_documents(str(inside)) == ["anna", "\ufeffbob"]
    result = microgpt_cli("train", "--data", marked, "--steps", 1, *TINY, "--samples", 0)
    assert "(2 documents, vocabulary 5)" in result.stderr  # a n b o and BOS
