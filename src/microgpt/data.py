"""Documents and the character-level tokenizer.

A dataset is a text file with one document per line (UTF-8; surrounding
white space stripped; blank lines skipped), read exactly as the original
microgpt reads its names file. It can be the bundled default, a local path,
or an http(s) URL that is downloaded once into a cache folder.
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path

from microgpt.errors import UsageError

# The bundled dataset (README, "The default dataset"); written like a URL so
# that no file name can be mistaken for it.
DEFAULT_DATA = "bundled:names"


def cache_dir() -> Path:
    """Where downloaded datasets are kept: $MICROGPT_CACHE, else the user cache."""
    if os.environ.get("MICROGPT_CACHE"):
        return Path(os.environ["MICROGPT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "microgpt"


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def load_documents(source: str = DEFAULT_DATA) -> list[str]:
    """The documents of the bundled dataset, a file, or a URL, in file order."""
    if source == DEFAULT_DATA:
        raw = resources.files("microgpt").joinpath("data/names.txt").read_bytes()
        return parse_documents(raw, "the bundled names dataset")
    path = fetch(source) if is_url(source) else Path(source)
    if not path.exists():
        raise UsageError(f"data file not found: {source}")
    if path.is_dir():
        raise UsageError(f"data path is a directory, not a file: {source}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read data file {source}: {exc.strerror or exc}") from None
    return parse_documents(raw, source)


def parse_documents(raw: bytes, name: str) -> list[str]:
    """One document per line, stripped, blank lines skipped."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UsageError(
            f"{name}: line {line}, byte {column}: not valid UTF-8 (byte 0x{raw[exc.start]:02x})"
        ) from None
    # The original reads its file in text mode, which turns "\r\n" and a lone
    # "\r" into "\n" before splitting; do the same so the documents match.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    docs = [line.strip() for line in text.strip().split("\n") if line.strip()]
    if not docs:
        raise UsageError(f"{name}: no documents (the file is empty or only blank lines)")
    return docs


def fetch(url: str) -> Path:
    """Download `url` into the cache once; later calls reuse the file."""
    folder = cache_dir()
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    basename = os.path.basename(url.split("?", 1)[0].rstrip("/")) or "data.txt"
    target = folder / f"{digest}-{basename}"
    if target.exists():
        return target
    # Imported here: urllib pulls in http and email, which would slow the start
    # of every command for the one that downloads.
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise UsageError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise UsageError(f"cannot download {url}: {reason}") from None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(raw)
        os.replace(partial, target)
    except OSError as exc:
        raise UsageError(
            f"cannot write the download cache {folder}: {exc.strerror or exc}"
        ) from None
    return target


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
