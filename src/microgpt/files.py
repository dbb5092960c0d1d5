"""Files the user names: inputs read within a cap, outputs written only where
that is safe.

Outputs (a checkpoint, a loss log) are only ever regular files: microgpt
refuses to write to, or replace, a directory, a device, a FIFO or a socket,
also when run as root. An output that already exists must be one microgpt
wrote (a checkpoint, a loss log). A symbolic link is followed: the file it
points to is written (and replaced atomically) and the link is kept; a link
to nothing is refused. One run at a time writes an output: it holds a lock
(a hidden `.NAME.lock` beside the file, removed when the run ends) and a
second run is refused.

Any OS error on a path the user named is one line naming the option and the
path (a `UsageError`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from microgpt.errors import UsageError
from microgpt.settings import format_size, shorten

READ_CHUNK = 1 << 20


def show(path: str | Path) -> str:
    """A path for a one-line message: long ones elided, control characters escaped."""
    text = str(path)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return shorten(text, 160)


@contextmanager
def os_errors(option: str, path: str | Path, doing: str = "") -> Iterator[None]:
    """Turn an OSError on `path` into one line naming `option` and the path."""
    try:
        yield
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise UsageError(f"{option} {show(path)}: {doing + ': ' if doing else ''}{why}") from None


def kind_of(mode: int) -> str:
    """What a file is, in words, from its stat mode."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


# --- inputs --------------------------------------------------------------------------


def read_capped(path: str | Path, cap: int, what: str, raise_with: str) -> bytes:
    """The bytes of `path`, refusing more than `cap` of them.

    `what` names the input in messages ("data file"); `raise_with` is the flag
    that raises the cap. A FIFO or a device is read too (e.g. `<(...)`), but
    never past the cap."""
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a directory")
            if stat.S_ISREG(info.st_mode) and info.st_size > cap:
                raise _too_big(path, what, cap, raise_with)
            raw = _read_up_to(f, cap + 1)
    except FileNotFoundError:
        raise UsageError(f"{what} not found: {show(path)}") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {show(path)} is a directory, not a file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {show(path)}: {exc.strerror or exc}") from None
    if len(raw) > cap:
        raise _too_big(path, what, cap, raise_with)
    return raw


def _read_up_to(f: BinaryIO, limit: int) -> bytes:
    """At most `limit` bytes, read in chunks (so a small file costs little)."""
    chunks, total = [], 0
    while total < limit and (chunk := f.read(min(READ_CHUNK, limit - total))):
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _too_big(path: str | Path, what: str, cap: int, raise_with: str) -> UsageError:
    return UsageError(
        f"{what} {show(path)} is larger than {format_size(cap)}; {raise_with} SIZE reads more"
    )


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (through links too; paths that do not
    exist yet are compared as absolute paths)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_same_file(option: str, path: str | Path, others: list[tuple[str, str | None]]) -> None:
    """Refuse an output that is the same file as one of `others` ((option,
    path) pairs; None and non-file sources such as URLs are skipped)."""
    for other_option, other in others:
        if other is None or other.startswith(("http://", "https://", "bundled:")):
            continue
        if same_file(path, other):
            raise UsageError(
                f"{option} {show(path)} is the same file as {other_option} {show(other)}; "
                f"give the {option[2:]} its own file"
            )


# --- outputs --------------------------------------------------------------------------


def output_target(path: str | Path, option: str) -> Path:
    """The file an output path writes: a symbolic link is followed to the file
    it points to; a link to nothing is refused."""
    with os_errors(option, path):
        if not os.path.islink(path):
            return Path(path)
        target = Path(os.path.realpath(path))
        if not os.path.lexists(target):
            raise UsageError(
                f"{option} {show(path)} is a symbolic link to {show(target)}, which does not "
                f"exist; give the file itself"
            )
        return target


def check_output(path: str | Path, option: str, what: str, is_ours: Callable[[Path], bool]) -> Path:
    """Fail now, not after an hour of training, if `path` cannot or must not be
    written. Returns the file that will be written (links followed)."""
    target = output_target(path, option)
    with os_errors(option, path):
        try:
            os.stat(target)  # an over-long name or a folder that cannot be searched: say so now
        except (FileNotFoundError, NotADirectoryError):
            pass  # said more precisely below
        folder = target.parent if str(target.parent) else Path(".")
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{option} {show(path)}: {show(folder)} is a file, not a folder")
        if not folder.is_dir():
            raise UsageError(f"{option} {show(path)}: folder {show(folder)} does not exist")
        if os.path.lexists(target):
            mode = os.stat(target).st_mode
            if stat.S_ISDIR(mode):
                raise UsageError(f"{option} {show(path)} is a directory; give a file name")
            if not stat.S_ISREG(mode):
                raise UsageError(
                    f"{option} {show(path)} is {kind_of(mode)}; microgpt writes only regular files"
                )
            if not is_ours(target):
                # e.g. `--out names.txt`: never overwrite the user's other files.
                raise UsageError(
                    f"{option} {show(path)} exists and is not a microgpt {what}; "
                    f"refusing to overwrite it"
                )
            if not os.access(target, os.W_OK):
                raise UsageError(f"{option} {show(path)}: the file is not writable")
    with os_errors(option, path, f"cannot write in {show(folder)}"):
        fd, probe = tempfile.mkstemp(prefix=".microgpt-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    return target


def check_regular_or_missing(target: Path) -> None:
    """Raise OSError unless `target` is a regular file or does not exist (checked
    again just before a replace, in case it changed since the run started)."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise OSError(errno.EEXIST, f"it is now {kind_of(mode)}, which microgpt never replaces")


def write_atomic(target: str | Path, write: Callable[[int], None]) -> None:
    """Replace `target` atomically: `write(fd)` fills a temporary file in the
    same folder, which is flushed to disk and renamed over the target. A crash
    or kill mid-write leaves the previous file intact. A symbolic link is
    followed: the file it names is replaced, and the link kept."""
    target = Path(os.path.realpath(target)) if os.path.islink(target) else Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        # mkstemp makes the file private (0600); give it the permissions a
        # plain open() would, or keep those of the file it replaces.
        if hasattr(os, "fchmod"):  # not on every platform
            os.fchmod(fd, _file_mode(target))
        write(fd)
        check_regular_or_missing(target)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # not every platform can fsync a folder


def _file_mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


class OutputLock:
    """One writer per output: an exclusive lock on a hidden `.NAME.lock` file
    beside `target`, held for the run and removed at its end.

    The lock file is removed while still locked, so a run that locks a
    stale, already-removed lock file sees that and tries again.
    """

    def __init__(self, target: Path, option: str, shown: str | Path) -> None:
        self.path = target.with_name(f".{target.name}.lock")
        self.option = option
        self.shown = shown
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        with os_errors(self.option, self.shown, "cannot lock"):
            while self._fd is None:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.read(fd, 32).decode("ascii", "replace").strip()
                    os.close(fd)
                    raise UsageError(
                        f"{self.option} {show(self.shown)} is being written by another microgpt "
                        f"run (process {holder or 'unknown'}); one run per output"
                    ) from None
                if _same_inode(fd, self.path):
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                    self._fd = fd
                else:  # removed by the run that held it: lock the new one
                    os.close(fd)
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None


def _same_inode(fd: int, path: Path) -> bool:
    try:
        by_path = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    by_fd = os.fstat(fd)
    return (by_fd.st_dev, by_fd.st_ino) == (by_path.st_dev, by_path.st_ino)
