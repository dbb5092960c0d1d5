"""Documents and the character-level tokenizer.

A dataset is a text file with one document per line (UTF-8; surrounding
white space stripped; blank lines skipped), read exactly as the original
microgpt reads its names file. It can be the bundled default, a local path,
or an http(s) URL that is downloaded once into a cache folder. In text mode
the file is one stream of characters instead (newlines are characters),
read in windows of the model's context.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import threading
import urllib.parse
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from microgpt.errors import Name, UsageError
from microgpt.files import read_capped, show, write_bytes_atomic
from microgpt.limits import Limits
from microgpt.settings import format_size

if TYPE_CHECKING:
    import urllib.request

# The bundled dataset (README, "The default dataset"); written like a URL so
# that no file name can be mistaken for it.
DEFAULT_DATA = "bundled:names"
DATA_MODES = ("lines", "text")  # a document per line (the original's), or one stream
BOM = "\ufeff"
READ_TIMEOUT = 30.0  # seconds one read of a download may wait (the whole has its own deadline)


def cache_dir() -> Path:
    """Where downloaded datasets are kept: $MICROGPT_CACHE, else the user cache."""
    if os.environ.get("MICROGPT_CACHE"):
        return Path(os.environ["MICROGPT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "microgpt"


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def without_credentials(url: str) -> str:
    """The URL with any user:password@ removed (what is cached and recorded)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def describe_source(source: str) -> str:
    """A data source as messages show it: never a password or a query string
    (which often holds an access token)."""
    if source == DEFAULT_DATA:
        return "the bundled names dataset"
    if not is_url(source):
        return show(source)
    parts = urllib.parse.urlsplit(without_credentials(source))
    query = "?..." if parts.query else ""
    hidden = "***@" if "@" in urllib.parse.urlsplit(source).netloc else ""
    return show(f"{parts.scheme}://{hidden}{parts.netloc}{parts.path}{query}")


def recorded_source(source: str) -> str:
    """The data source a checkpoint records: a file as an absolute path, so that
    a resumed run works from any folder; a URL without its password."""
    if source == DEFAULT_DATA:
        return source
    return without_credentials(source) if is_url(source) else os.path.abspath(source)


def load_data(source: str, limits: Limits, mode: str) -> list[str]:
    """The documents of `source` (lines mode), or [its text] (text mode)."""
    if mode != "text":
        return load_documents(source, limits)
    if source == DEFAULT_DATA:
        raw = resources.files("microgpt").joinpath("data/names.txt").read_bytes()
        return [parse_text(raw, "the bundled names dataset")]
    if is_url(source):
        return [parse_text(fetch_bytes(source, limits), describe_source(source))]
    raw = read_capped(source, limits.max_data_size, "data file", "max_data_size")
    return [parse_text(raw, show(source))]


def load_documents(source: str = DEFAULT_DATA, limits: Limits | None = None) -> list[str]:
    """The documents of the bundled dataset, a file, or a URL, in file order.

    A file is read up to `limits.max_data_size` bytes, a URL is downloaded
    (within the same cap and `limits.download_timeout`) once into the cache."""
    limits = limits or Limits()
    if source == DEFAULT_DATA:
        raw = resources.files("microgpt").joinpath("data/names.txt").read_bytes()
        return parse_documents(raw, "the bundled names dataset")
    if is_url(source):
        return parse_documents(fetch_bytes(source, limits), describe_source(source))
    raw = read_capped(source, limits.max_data_size, "data file", "max_data_size")
    return parse_documents(raw, show(source))


def parse_documents(raw: bytes, name: str) -> list[str]:
    """One document per line, stripped, blank lines skipped; a byte-order mark
    at the start is not part of the first document."""
    text = decode_text(raw, name)
    docs = [line.strip() for line in text.strip().split("\n") if line.strip()]
    if not docs:
        raise UsageError(f"{name}: no documents (the file is empty or only blank lines)")
    return docs


def parse_text(raw: bytes, name: str) -> str:
    """The whole file as one text (text mode): nothing stripped but a
    byte-order mark, line ends made "\n"."""
    text = decode_text(raw, name)
    if not text.strip():
        raise UsageError(f"{name}: no text (the file is empty or only white space)")
    return text


def decode_text(raw: bytes, name: str) -> str:
    """UTF-8 text with "\n" line ends, without a byte-order mark; a byte that
    is not UTF-8 is a one-line error naming its line and byte."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UsageError(
            f"{name}: line {line}, byte {column}: not valid UTF-8 (byte 0x{raw[exc.start]:02x})"
        ) from None
    text = text.removeprefix(BOM)
    # The original reads its file in text mode, which turns "\r\n" and a lone
    # "\r" into "\n" before splitting; do the same so the documents match.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def random_window(text: str, block_size: int, rng: random.Random) -> str:
    """block_size + 1 consecutive characters of `text` at an offset drawn
    from `rng` (one draw): block_size predictions."""
    start = rng.randrange(len(text) - block_size)
    return text[start : start + block_size + 1]


def text_windows(text: str, block_size: int) -> Iterator[str]:
    """`text` in consecutive windows of (at most) block_size + 1 characters
    overlapping by one: every character after the first is predicted once."""
    for start in range(0, len(text) - 1, block_size):
        yield text[start : start + block_size + 1]


# --- downloads ---------------------------------------------------------------------


def cache_path(url: str) -> Path:
    clean = without_credentials(url)
    digest = hashlib.sha256(clean.encode("utf-8")).hexdigest()[:16]
    basename = os.path.basename(clean.split("?", 1)[0].rstrip("/")) or "data.txt"
    return cache_dir() / f"{digest}-{basename[:64]}"


def fetch_bytes(url: str, limits: Limits) -> bytes:
    """The body of `url`: from the cache if a good copy is there, else
    downloaded, checked (complete, non-empty UTF-8 text) and cached.

    A cached copy that is no longer good (emptied, cut short, edited into
    something else) is thrown away and downloaded again."""
    target = cache_path(url)
    shown = describe_source(url)
    if target.is_file():
        try:
            raw = read_capped(target, limits.max_data_size, "cached download", "max_data_size")
            parse_documents(raw, shown)
            _check_text(raw, shown)
            return raw
        except UsageError:
            target.unlink(missing_ok=True)  # a bad entry: fetch it again
    raw = download(url, limits)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, raw)
    except OSError as exc:
        folder = show(target.parent)
        raise UsageError(
            f"cannot write the download cache {folder}: {exc.strerror or exc}"
        ) from None
    return raw


def download(url: str, limits: Limits) -> bytes:
    """Download `url`, all of it within `limits.download_timeout` seconds and
    `limits.max_data_size` bytes; any failure is a one-line UsageError."""
    shown = describe_source(url)
    outcome: list[bytes | BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        try:
            outcome.append(_download(url, limits, stop))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append(exc)

    # A thread, so that the deadline holds however the server trickles its bytes.
    thread = threading.Thread(target=worker, name="microgpt-download", daemon=True)
    thread.start()
    thread.join(limits.download_timeout)
    if not outcome:
        stop.set()
        raise UsageError(
            f"cannot download {shown}: not complete after {limits.download_timeout:g} s (",
            Name("download_timeout"),
            " SECONDS allows more)",
        )
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _download(url: str, limits: Limits, stop: threading.Event) -> bytes:
    # Imported here: urllib.request pulls in http and email, which would slow
    # the start of every command for the one that downloads.
    import http.client
    import urllib.error
    import urllib.request

    shown = describe_source(url)
    cap = limits.max_data_size
    try:
        request = _request(url)
        timeout = min(READ_TIMEOUT, limits.download_timeout)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > cap:
                raise _too_big(shown, cap)
            body = _read_body(response, cap, shown, stop)
            if declared is not None and declared.isdigit() and len(body) != int(declared):
                raise UsageError(
                    f"cannot download {shown}: the body stopped after {len(body)} of "
                    f"{declared} bytes"
                )
            content_type = response.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        raise UsageError(f"cannot download {shown}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        detail = str(reason).replace(url, shown) if str(reason) else exc.__class__.__name__
        raise UsageError(f"cannot download {shown}: {detail}") from None
    if content_type == "text/html" or body.lstrip()[:15].lower().startswith(
        (b"<!doctype html", b"<html")
    ):
        raise UsageError(
            f"cannot download {shown}: the server sent a web page (HTML), not a text file of "
            f"documents; give the address of the raw file"
        )
    if not body.strip():
        raise UsageError(f"cannot download {shown}: the body is empty (no documents)")
    parse_documents(body, f"cannot download {shown}: the body")
    _check_text(body, shown)
    return body


def _request(url: str) -> urllib.request.Request:
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    headers = {"User-Agent": "microgpt"}
    if parts.username is not None or parts.password is not None:
        user = urllib.parse.unquote(parts.username or "")
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    return urllib.request.Request(without_credentials(url), headers=headers)


def _read_body(response: object, cap: int, shown: str, stop: threading.Event) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while not stop.is_set():
        chunk: bytes = response.read1(1 << 16)  # type: ignore[attr-defined]
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > cap:
            raise _too_big(shown, cap)
        chunks.append(chunk)
    raise UsageError(f"cannot download {shown}: stopped at the deadline")


def _too_big(shown: str, cap: int) -> UsageError:
    return UsageError(
        f"cannot download {shown}: larger than {format_size(cap)}; ",
        Name("max_data_size"),
        " SIZE reads more",
    )


def _check_text(raw: bytes, shown: str) -> None:
    if b"\x00" in raw:
        raise UsageError(f"cannot download {shown}: the body is binary (holds NUL bytes), not text")


class Tokenizer:
    """Characters to token ids and back; BOS marks a document's start and end.

    The vocabulary is the sorted set of characters in the data, and BOS is the
    last id, `len(chars)`, as in the original.
    """

    def __init__(self, chars: str) -> None:
        if len(set(chars)) != len(chars) or list(chars) != sorted(chars):
            raise UsageError("a vocabulary must be distinct characters in sorted order")
        self.chars = chars
        self.bos = len(chars)
        self.vocab_size = len(chars) + 1
        self._ids = {ch: i for i, ch in enumerate(chars)}

    @classmethod
    def from_documents(cls, docs: list[str]) -> Tokenizer:
        return cls("".join(sorted(set("".join(docs)))))

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no BOS); an unknown character is an error."""
        ids = []
        for position, ch in enumerate(text, start=1):
            if ch not in self._ids:
                raise UsageError(
                    f"character {ch!r} (position {position} of {text!r}) is not in the "
                    f"vocabulary ({self.chars!r})"
                )
            ids.append(self._ids[ch])
        return ids

    def encode_document(self, doc: str) -> list[int]:
        """BOS, the document's characters, BOS: the training sequence."""
        return [self.bos, *self.encode(doc), self.bos]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids if i != self.bos)
