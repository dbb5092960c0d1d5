"""Documents are read exactly as the original microgpt reads its file; URLs are
downloaded once; the tokenizer's vocabulary is sorted with BOS last."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest
from conftest import HTTPTestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from microgpt.data import Tokenizer, load_documents, parse_documents
from microgpt.errors import UsageError


def original_documents(raw: bytes) -> list[str]:
    """The original's reading: a text-mode read (universal newlines), then
    `[l.strip() for l in text.strip().split('\\n') if l.strip()]`."""
    text = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8").read()
    return [line.strip() for line in text.strip().split("\n") if line.strip()]


TRICKY = (
    b"\n\n  emma  \r\nolivia\r\n\r\n\t\nava\n mary ann \nzo\xc3\xab\rlone\rcr\n\n  \n"
    b"last line without newline"
)


def test_lines_are_stripped_and_blanks_skipped_like_the_original(tmp_path: Path) -> None:
    path = tmp_path / "docs.txt"
    path.write_bytes(TRICKY)
    docs = load_documents(str(path))
    assert docs == original_documents(TRICKY)
    # Spelled out, so the comparison above cannot pass vacuously.
    assert docs == [
        "emma",
        "olivia",
        "ava",
        "mary ann",
        "zoë",
        "lone",
        "cr",
        "last line without newline",
    ]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab \t\r\n\u00e9\u2028\x0b\x85"), max_size=40))
def test_any_text_reads_like_the_original(text: str) -> None:
    raw = text.encode("utf-8")
    expected = original_documents(raw)
    if expected:
        assert parse_documents(raw, "x.txt") == expected
    else:
        with pytest.raises(UsageError, match="no documents"):
            parse_documents(raw, "x.txt")


def test_documents_keep_file_order_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "docs.txt"
    path.write_text("zed\nann\nzed\n", encoding="utf-8")
    assert load_documents(str(path)) == ["zed", "ann", "zed"]


@pytest.mark.parametrize(
    "raw, line", [(b"\xff", 1), (b"ok\nfine\nba\xe9d\n", 3), (b"a\r\nb\r\n\xc3(\r\n", 3)]
)
def test_invalid_utf8_names_the_line(tmp_path: Path, raw: bytes, line: int) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(raw)
    with pytest.raises(UsageError) as info:
        load_documents(str(path))
    message = str(info.value)
    assert f"line {line}," in message and "UTF-8" in message and str(path) in message
    assert "\n" not in message


@pytest.mark.parametrize("raw", [b"", b"\n\n", b"  \n\t\r\n \n"])
def test_no_documents_is_an_error(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(raw)
    with pytest.raises(UsageError, match="no documents"):
        load_documents(str(path))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found: .*nope.txt"):
        load_documents(str(tmp_path / "nope.txt"))
    with pytest.raises(UsageError, match="directory"):
        load_documents(str(tmp_path))


def test_bundled_dataset() -> None:
    docs = load_documents()
    assert len(docs) == 32000 == len(set(docs))
    assert all(doc.isascii() and doc.isalpha() and doc.islower() for doc in docs)
    tokenizer = Tokenizer.from_documents(docs)
    assert tokenizer.chars == "abcdefghijklmnopqrstuvwxyz"
    assert tokenizer.bos == 26 and tokenizer.vocab_size == 27


# --- the tokenizer -----------------------------------------------------------


def test_vocabulary_is_sorted_and_bos_is_the_last_id() -> None:
    tokenizer = Tokenizer.from_documents(["cab", "bad", "é"])
    assert tokenizer.chars == "abcdé"
    assert tokenizer.bos == 5 and tokenizer.vocab_size == 6
    assert tokenizer.encode_document("dab") == [5, 3, 0, 1, 5]
    assert tokenizer.decode(tokenizer.encode_document("dab")) == "dab"


def test_unknown_character_is_refused() -> None:
    tokenizer = Tokenizer.from_documents(["ab"])
    with pytest.raises(UsageError, match="'z'"):
        tokenizer.encode("az")


def test_vocabulary_must_be_sorted_and_distinct() -> None:
    for chars in ("ba", "aab"):
        with pytest.raises(UsageError):
            Tokenizer(chars)


# --- URLs --------------------------------------------------------------------


@pytest.fixture
def server(server: HTTPTestServer) -> HTTPTestServer:
    server.files["people.txt"] = b"ada\r\ngrace\n\nalan\n"
    return server


def test_url_is_downloaded_once_then_read_from_the_cache(
    server: HTTPTestServer, tmp_path: Path
) -> None:
    url = server.base + "/people.txt"
    assert load_documents(url) == ["ada", "grace", "alan"]
    assert server.paths == ["/people.txt"]
    assert load_documents(url) == ["ada", "grace", "alan"]
    assert server.paths == ["/people.txt"]  # the second load did not ask the server
    assert any((tmp_path / "cache").iterdir())


def test_url_not_found_is_a_clear_error(server: HTTPTestServer) -> None:
    url = server.base + "/missing.txt"
    with pytest.raises(UsageError) as info:
        load_documents(url)
    assert str(info.value).startswith(f"cannot download {url}: HTTP 404")


def test_url_that_cannot_be_reached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROGPT_CACHE", str(tmp_path / "cache"))
    # A port that is bound but not listening refuses connections at once.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/x.txt"
        with pytest.raises(UsageError, match=f"cannot download {url}: "):
            load_documents(url)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
