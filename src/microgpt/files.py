"""Files the user names: inputs read within a cap, outputs written only where
that is safe.

Every output microgpt writes (a checkpoint, a loss log, a downloaded
dataset's cached copy, a picture, a sweep's records) follows one set of
rules, written here once:

- It is a regular file: microgpt refuses to write to, or replace, a
  directory, a device, a FIFO or a socket, also when run as root.
- An output that already exists must be one microgpt wrote (`is_ours`).
- It is replaced atomically (`write_atomic`): a temporary file with an
  unpredictable name in the same folder, created with O_EXCL (so never
  through a link), flushed to disk and renamed over the target. A crash
  leaves the previous file intact; the temporary file's descriptor is
  always closed.
- Its name is checked before any work starts (`check_output`), the
  temporary file's longer name included.
- One permissions rule: a new file gets what a plain `open()` gives
  (0666 less the umask); a replaced file keeps its permissions.
- A symbolic link the user gives is followed: the file it points to is
  written (and replaced atomically) and the link is kept; a link to nothing
  is refused.
- One run at a time writes an output (`OutputLock`): it holds a lock on a
  hidden `.NAME.lock` beside the file, removed when the run ends.

A problem with a path is a one-line `UsageError` naming the path and the
setting that named it (a `Name`, which the command line shows as its flag).
The few calls that differ between platforms are small functions below,
one per platform: this module imports and runs where `fcntl`,
`os.O_NOFOLLOW` or `os.O_NONBLOCK` do not exist (Windows).
"""

from __future__ import annotations

import errno
import io
import json
import os
import secrets
import stat
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from microgpt.errors import Name, UsageError
from microgpt.settings import format_size, shorten

READ_CHUNK = 1 << 20
OUTPUT = Name("output")  # an output no setting names (a Python caller's path)
# The temporary file's name is the target's plus this many bytes: "." before,
# then ".", 8 random hex digits and ".tmp" after.
TEMPORARY_EXTRA = 14
DEFAULT_NAME_MAX = 255  # bytes in a file name, where the system will not say
IsOurs = Callable[[Path], bool]


def show(path: str | Path) -> str:
    """A path for a one-line message: long ones elided, control characters escaped."""
    text = str(path)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return shorten(text, 160)


@contextmanager
def os_errors(name: Name, path: str | Path, doing: str = "") -> Iterator[None]:
    """Turn an OSError on `path` into one line naming the setting and the path."""
    try:
        yield
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise UsageError(name, f" {show(path)}: {doing + ': ' if doing else ''}{why}") from None


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


# --- the platform: what differs between POSIX and Windows ----------------------------

# Windows has neither flag: a link is checked for after opening instead
# (`open_no_follow`), and it has no FIFOs that could block an open.
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def open_no_follow(path: str | Path, flags: int, mode: int = 0o666) -> int:
    """`os.open` that refuses a symbolic link as the last part of `path`
    (OSError ELOOP). Without O_NOFOLLOW, the name is checked after opening:
    it must not be a link, and must name the file that was opened."""
    if O_NOFOLLOW:
        return os.open(path, flags | O_NOFOLLOW | O_BINARY, mode)
    if os.path.islink(path):
        raise OSError(errno.ELOOP, "it is a symbolic link", str(path))
    fd = os.open(path, flags | O_BINARY, mode)
    if not _same_inode(fd, path):
        os.close(fd)
        raise OSError(errno.ELOOP, "it was replaced by a symbolic link", str(path))
    return fd


def _same_inode(fd: int, path: str | Path) -> bool:
    """Whether `path` (not followed) is the file open as `fd`."""
    try:
        by_path = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    by_fd = os.fstat(fd)
    same = (by_fd.st_dev, by_fd.st_ino) == (by_path.st_dev, by_path.st_ino)
    return same and not stat.S_ISLNK(by_path.st_mode)


def _lock_flock(fd: int) -> bool:
    """POSIX: an exclusive advisory lock on the whole file; False if held."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


# How a lock file is held: by a lock on its open descriptor where the
# platform has one (released by the system when the process dies), else by
# the file's existence (see `_hold_by_existence`).
_lock_descriptor: Callable[[int], bool] | None
if sys.platform == "win32":
    import msvcrt

    def _lock_msvcrt(fd: int) -> bool:
        """Windows: a lock on one byte far past the holder's process number, so
        that the number stays readable to the run that is refused."""
        os.lseek(fd, 1 << 20, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True

    _lock_descriptor = _lock_msvcrt
else:
    try:
        import fcntl
    except ImportError:  # a platform without flock
        _lock_descriptor = None
    else:
        _lock_descriptor = _lock_flock


# --- inputs --------------------------------------------------------------------------


def read_capped(path: str | Path, cap: int, what: str, raise_with: str) -> bytes:
    """The bytes of `path`, refusing more than `cap` of them.

    `what` names the input in messages ("data file"); `raise_with` is the
    setting that raises the cap. A FIFO or a device is read too (e.g.
    `<(...)`), but never past the cap."""
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a directory")
            if stat.S_ISREG(info.st_mode) and info.st_size > cap:
                raise too_big(f"{what} {show(path)}", cap, raise_with)
            raw = _read_up_to(f, cap + 1)
    except FileNotFoundError:
        raise UsageError(f"{what} not found: {show(path)}") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {show(path)} is a directory, not a file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {show(path)}: {exc.strerror or exc}") from None
    if len(raw) > cap:
        raise too_big(f"{what} {show(path)}", cap, raise_with)
    return raw


def _read_up_to(f: BinaryIO, limit: int) -> bytes:
    """At most `limit` bytes, read in chunks (so a small file costs little)."""
    chunks, total = [], 0
    while total < limit and (chunk := f.read(min(READ_CHUNK, limit - total))):
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def too_big(subject: str, cap: int, raise_with: str) -> UsageError:
    """`subject` is larger than `cap`, which the setting `raise_with` raises."""
    return UsageError(
        f"{subject} is larger than {format_size(cap)}; ", Name(raise_with), " SIZE reads more"
    )


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (through links too; paths that do not
    exist yet are compared as absolute paths)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_same_file(name: Name, path: str | Path, others: list[tuple[Name, str | None]]) -> None:
    """Refuse an output that is the same file as one of `others` ((setting,
    path) pairs; None and non-file sources such as URLs are skipped)."""
    for other_name, other in others:
        if other is None or other.startswith(("http://", "https://", "bundled:")):
            continue
        if same_file(path, other):
            raise UsageError(
                name,
                f" {show(path)} is the same file as ",
                other_name,
                f" {show(other)}; give the {name} its own file",
            )


# --- outputs --------------------------------------------------------------------------


def output_target(path: str | Path, name: Name = OUTPUT) -> Path:
    """The file an output path writes: a symbolic link is followed to the file
    it points to; a link to nothing is refused."""
    with os_errors(name, path):
        if not os.path.islink(path):
            return Path(path)
        target = Path(os.path.realpath(path))
        if not os.path.lexists(target):
            raise UsageError(
                name,
                f" {show(path)} is a symbolic link to {show(target)}, which does not "
                f"exist; give the file itself",
            )
        return target


def check_output(path: str | Path, name: Name, what: str, is_ours: IsOurs | None = None) -> Path:
    """Fail now, not after an hour of training, if `path` cannot or must not be
    written: its folder, its kind, its owner (`is_ours`: whether an existing
    file is one microgpt wrote, `what` in messages: "a microgpt checkpoint")
    and the length of its name. Returns the file that will be written
    (links followed)."""
    target = output_target(path, name)
    folder = _folder(target)
    with os_errors(name, path):
        _check_name_length(target, name, path)
        try:
            os.stat(target)  # a folder that cannot be searched: say so now
        except (FileNotFoundError, NotADirectoryError):
            pass  # said more precisely below
        if folder.exists() and not folder.is_dir():
            raise UsageError(name, f" {show(path)}: {show(folder)} is a file, not a folder")
        if not folder.is_dir():
            raise UsageError(name, f" {show(path)}: folder {show(folder)} does not exist")
        if os.path.lexists(target):
            mode = os.stat(target).st_mode
            if stat.S_ISDIR(mode):
                raise UsageError(name, f" {show(path)} is a directory; give a file name")
            if not stat.S_ISREG(mode):
                raise UsageError(
                    name, f" {show(path)} is {kind_of(mode)}; microgpt writes only regular files"
                )
            if is_ours is not None and not is_ours(target):
                # e.g. `--out names.txt`: never overwrite the user's other files.
                raise UsageError(
                    name, f" {show(path)} exists and is not {what}; refusing to overwrite it"
                )
            if not os.access(target, os.W_OK):
                raise UsageError(name, f" {show(path)}: the file is not writable")
    with os_errors(name, path, f"cannot write in {show(folder)}"):
        # The temporary file a save writes, made and removed: its name, the
        # folder's permissions and the file system are all tried now.
        fd, probe = _create_temporary(target)
        os.close(fd)
        os.unlink(probe)
    return target


def _folder(target: Path) -> Path:
    return target.parent if str(target.parent) else Path(".")


def _check_name_length(target: Path, name: Name, shown: str | Path) -> None:
    """Refuse a name whose temporary file's name would be too long (the
    system would refuse it only when the first save comes)."""
    length = len(os.fsencode(target.name))
    try:
        limit = os.pathconf(_folder(target), "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # Windows has no pathconf
        limit = DEFAULT_NAME_MAX
    if length + TEMPORARY_EXTRA > limit:
        raise UsageError(
            name,
            f" {show(shown)}: {os.strerror(errno.ENAMETOOLONG)} ({length} bytes): microgpt "
            f"writes a temporary file beside it whose name is {TEMPORARY_EXTRA} bytes longer, "
            f"and names in this folder have at most {limit} bytes",
        )


def _create_temporary(target: Path) -> tuple[int, Path]:
    """A new, empty file beside `target` with an unpredictable name: made
    with O_EXCL, so never through a link, nor over another file."""
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
            return open_no_follow(tmp, flags, 0o666), tmp  # 0666 less the umask
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no free temporary name", str(target))


def check_replaceable(target: Path, is_ours: IsOurs | None = None) -> None:
    """Raise OSError unless `target` is missing, or a regular file (and one
    microgpt wrote, if `is_ours` is given): checked again just before a
    replace, in case it changed since the run started."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise OSError(errno.EEXIST, f"it is now {kind_of(mode)}, which microgpt never replaces")
    if is_ours is not None and not is_ours(target):
        raise OSError(errno.EEXIST, "it is no longer a file microgpt wrote; it was left as it is")


def write_atomic(
    target: str | Path, write: Callable[[BinaryIO], None], is_ours: IsOurs | None = None
) -> None:
    """Replace `target` atomically: `write(f)` fills a temporary file in the
    same folder (a binary file object, which this function closes), which is
    flushed to disk and renamed over the target. A crash or kill mid-write
    leaves the previous file intact. A symbolic link is followed: the file it
    names is replaced, and the link kept. Raises OSError (the target is left
    as it was) if the target is no longer a regular file, or no longer ours.

    Call `check_output` for the same path before any work, so that a path
    that cannot be written is refused then rather than here."""
    target = Path(os.path.realpath(target)) if os.path.islink(target) else Path(target)
    fd, tmp = _create_temporary(target)
    try:
        try:
            f = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            raise
        with f:
            _keep_permissions(f.fileno(), tmp, target)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        check_replaceable(target, is_ours)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _sync_folder(_folder(target))


def write_bytes_atomic(target: str | Path, data: bytes, is_ours: IsOurs | None = None) -> None:
    def write(f: BinaryIO) -> None:
        f.write(data)

    write_atomic(target, write, is_ours)


def write_text_atomic(target: str | Path, text: str, is_ours: IsOurs | None = None) -> None:
    """`text` as UTF-8 (newlines as written, on every platform)."""
    write_bytes_atomic(target, text.encode("utf-8"), is_ours)


def write_json_atomic(target: str | Path, obj: Any, is_ours: IsOurs | None = None) -> None:
    """`obj` as compact JSON (NaN and infinities refused: ValueError),
    encoded as it is written (a large checkpoint is never one string)."""

    def write(f: BinaryIO) -> None:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        json.dump(obj, text, allow_nan=False, separators=(",", ":"))
        text.flush()
        text.detach()  # `f` is closed by write_atomic

    write_atomic(target, write, is_ours)


def _keep_permissions(fd: int, tmp: Path, target: Path) -> None:
    """A replaced file keeps its permissions (a new one has 0666 less the umask)."""
    try:
        mode = os.stat(target).st_mode & 0o7777
    except OSError:
        return
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:  # Windows before Python 3.13: only the read-only bit exists
        os.chmod(tmp, mode)


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # Windows cannot open a folder
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # nor can every file system sync one
    finally:
        os.close(dir_fd)


# --- one writer per output -----------------------------------------------------------


class OutputLock:
    """One writer per output: a lock on a hidden `.NAME.lock` file beside
    `target`, holding the writer's process number, held for the run and
    removed at its end.

    Where the platform can lock an open file (flock on POSIX, msvcrt on
    Windows), the lock is released by the system when the process dies, and
    a lock file left behind is simply locked again. The lock file is removed
    while still locked, so a run that locks a stale, already-removed lock
    file sees that and tries again. Elsewhere the lock is the file's
    existence (`_hold_by_existence`).
    """

    def __init__(self, target: Path, name: Name = OUTPUT, shown: str | Path = "") -> None:
        self.path = target.with_name(f".{target.name}.lock")
        self.name = name
        self.shown = shown or target
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        with os_errors(self.name, self.shown, "cannot lock"):
            if _lock_descriptor is not None:
                fd = _hold_by_lock(self.path, _lock_descriptor)
            else:
                fd = _hold_by_existence(self.path)
            if fd is None:
                raise UsageError(
                    self.name,
                    f" {show(self.shown)} is being written by another microgpt run "
                    f"(process {_holder(self.path) or 'unknown'}); one run per output",
                )
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while locked: see the class's docstring
        except OSError:
            pass  # Windows cannot remove an open file: it is locked again next time
        os.close(self._fd)
        self._fd = None


def _hold_by_lock(path: Path, lock: Callable[[int], bool]) -> int | None:
    """The lock file open and locked, or None if another process holds it."""
    while True:
        fd = open_no_follow(path, os.O_RDWR | os.O_CREAT)
        try:
            locked = lock(fd)
        except BaseException:
            os.close(fd)
            raise
        if not locked:
            os.close(fd)
            return None
        if _same_inode(fd, path):
            return fd
        os.close(fd)  # removed by the run that held it: lock the new one


# A lock file that holds no process number yet is being written by its
# maker; after this many seconds it is taken for one left by a crash.
UNWRITTEN_LOCK_SECONDS = 10.0


def _hold_by_existence(path: Path) -> int | None:
    """The lock where no file can be locked: whoever creates the lock file
    (O_EXCL) holds it. A lock file whose process no longer runs (a run that
    was killed) is stale, and removed; one of a process on another machine
    sharing the folder cannot be told from a stale one (a known limit)."""
    for _ in range(3):
        try:
            return open_no_follow(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            if not _remove_if_stale(path):
                return None
    return None


def lock_holder(target: Path) -> str | None:
    """The process holding the output lock of `target` ("unknown" if it
    cannot be read), or None if no run holds it."""
    path = target.with_name(f".{target.name}.lock")
    try:
        fd = open_no_follow(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        if _lock_descriptor is not None:
            if _lock_descriptor(fd):  # free: released again when fd closes
                return None
        elif _is_stale(path, os.fstat(fd).st_mtime):
            return None
        return _holder(path) or "unknown"
    finally:
        os.close(fd)


def _is_stale(path: Path, mtime: float) -> bool:
    """Whether the lock file at `path` (where locks are files' existence) is
    left by a process that is gone."""
    holder = _holder(path)
    if holder.isdigit():
        return not _running(int(holder))
    return time.time() - mtime >= UNWRITTEN_LOCK_SECONDS


def _remove_if_stale(path: Path) -> bool:
    """Remove the lock file at `path` if its process is gone; whether it was."""
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        return True  # released meanwhile: try again
    if not _is_stale(path, before.st_mtime):
        return False
    try:
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) == (before.st_dev, before.st_ino):
            os.unlink(path)
    except FileNotFoundError:
        pass
    return True


def _running(pid: int) -> bool:
    """Whether process `pid` exists (True where that cannot be asked)."""
    if os.name != "posix":
        return True  # os.kill would end the process there, not ask about it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by another user
    return True


def _holder(path: Path) -> str:
    """The process number a lock file holds ('' if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return f.read(32).decode("ascii", "replace").strip()
    except OSError:
        return ""
