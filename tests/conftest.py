"""Shared test setup.

The suite runs once per engine: `python -m pytest` tests the compiled engine
(and fails if it is not installed), `MICROGPT_PURE=1 python -m pytest` tests
the interpreted one. Every test sees the engine that `microgpt` selected.
"""

from __future__ import annotations

import http.server
import importlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import IO

import pytest

import microgpt

REPO_ROOT = Path(__file__).resolve().parent.parent
# Named by MICROGPT_PARITY_DIR (CI does), the golden files must be there;
# otherwise they are looked for beside the checkout, and the golden test skips
# where they are not (the wheel builders: the files are not in the repository).
PARITY_DIR_NAMED = bool(os.environ.get("MICROGPT_PARITY_DIR"))
PARITY_DIR = Path(os.environ.get("MICROGPT_PARITY_DIR") or REPO_ROOT.parent / "shared" / "parity")
PURE_REQUESTED = os.environ.get("MICROGPT_PURE", "").strip() not in ("", "0")
WINDOWS = sys.platform == "win32"

# A small training set, and the model settings that make a run on it quick.
DOCS = ["anna", "bob", "carl", "dora", "eve", "frank", "gus", "hana", "ivo", "jan"]
TINY_SETTINGS = {"n_embd": 8, "n_head": 2, "block_size": 8}
TINY = [
    part
    for key, value in TINY_SETTINGS.items()
    for part in (f"--{key.replace('_', '-')}", str(value))
]


def pytest_report_header(config: pytest.Config) -> str:
    pure = os.environ.get("MICROGPT_PURE", "")
    return f"microgpt engine: {microgpt.ENGINE_NAME} (MICROGPT_PURE={pure!r})"


def pytest_configure(config: pytest.Config) -> None:
    # Registered here, not in pyproject.toml: the wheel builders run the tests
    # from a folder without it.
    config.addinivalue_line(
        "markers",
        "posix_only(reason): needs what only POSIX systems have (FIFOs, device nodes, "
        "signals other than SIGTERM, file modes, ...); skipped on Windows",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A marker, not skipif(expression): the expression would be evaluated at
    # collection, where a POSIX-only name (os.geteuid, signal.SIGKILL) raises
    # on Windows and stops the whole suite.
    if not WINDOWS:
        return
    for item in items:
        marker = item.get_closest_marker("posix_only")
        if marker is not None:
            reason = marker.args[0] if marker.args else "POSIX only"
            item.add_marker(pytest.mark.skip(reason=f"POSIX only: {reason}"))


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """The original microgpt's names file and golden losses (../shared/parity)."""
    if not (PARITY_DIR / "names.txt").exists() or not (PARITY_DIR / "default_seed42.txt").exists():
        why = f"parity files not found in {PARITY_DIR} (set MICROGPT_PARITY_DIR)"
        if PARITY_DIR_NAMED:  # asked for by name: never skip the golden test
            pytest.fail(why)
        pytest.skip(why)
    return PARITY_DIR


@pytest.fixture(scope="session")
def golden(parity_dir: Path) -> dict[str, object]:
    """{'losses': {step: float}, 'samples': [names]} from default_seed42.txt."""
    losses: dict[int, float] = {}
    samples: list[str] = []
    for line in (parity_dir / "default_seed42.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("step "):
            _, step, _, hexloss = line.split()
            losses[int(step)] = float.fromhex(hexloss)
        elif line.startswith("sample "):
            samples.append(line.split(": ", 1)[1])
    return {"losses": losses, "samples": samples}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """DOCS in a names file, one a line."""
    path = tmp_path / "names.txt"
    path.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    return path


def both_engines() -> tuple[ModuleType, ModuleType | None]:
    """The interpreted engine and the compiled one, loaded side by side.

    The compiled one is None only in a MICROGPT_PURE=1 run on an install
    without it; in the compiled run its absence is a failure (ImportError).
    """
    pure = importlib.import_module("microgpt.engine")  # always the .py module
    assert pure.COMPILED is False
    try:
        compiled = importlib.import_module("microgpt._engine")
    except ImportError:
        if PURE_REQUESTED:
            return pure, None
        raise
    assert compiled.COMPILED is True
    return pure, compiled


def microgpt_cli(
    *args: object, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m microgpt ARGS` in a subprocess (same engine as the suite)."""
    return subprocess.run(
        [sys.executable, "-m", "microgpt", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


def lines_of(stream: IO[str] | None) -> queue.Queue[str]:
    """A stream's lines as they come ('' at the end), read in a thread so
    that a test can wait for one with a timeout and the pipe never fills."""
    assert stream is not None
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    return lines


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """A command that succeeded, without a traceback."""
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def logged_losses(log: Path) -> list[float]:
    """The training losses a run's log holds, in order (headers skipped)."""
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def train_tiny(data: object, *flags: object) -> subprocess.CompletedProcess[str]:
    """`microgpt train` of the tiny model on `data`, which must succeed; no
    samples unless `flags` ask for them (a later flag wins)."""
    return ok(microgpt_cli("train", "--data", data, *TINY, "--samples", 0, *flags))


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], *fragments: str, status: int = 2
) -> str:
    """Exit status 2 (or `status`), one line on stderr naming the problem
    (with every fragment), nothing on stdout, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == status, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("microgpt"), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result.stdout == "", result.stdout
    return lines[0]


class HTTPTestServer:
    """An HTTP server on 127.0.0.1 for the download tests. GET /NAME serves
    files[NAME], or calls route_NAME (one misbehaviour each); else 404.
    Every request's (path, Authorization header) is recorded."""

    NAMES = b"ada\ngrace\nalan\n"

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                server.requests.append((self.path, self.headers.get("Authorization")))
                name = self.path.split("?")[0].strip("/")
                if name in server.files:
                    server.reply(self, server.files[name])
                elif (route := getattr(server, "route_" + name, None)) is not None:
                    route(self)
                else:
                    self.send_error(404)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep the test output clean

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def reply(h: http.server.BaseHTTPRequestHandler, body: bytes, kind: str = "text/plain") -> None:
        h.send_response(200)
        h.send_header("Content-Type", kind)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def route_names(self, h: http.server.BaseHTTPRequestHandler) -> None:
        self.reply(h, self.NAMES)

    def route_empty(self, h: http.server.BaseHTTPRequestHandler) -> None:
        self.reply(h, b"")

    def route_html(self, h: http.server.BaseHTTPRequestHandler) -> None:
        self.reply(h, b"<!DOCTYPE html>\n<html><body>Sign in</body></html>\n", "text/html")

    def route_binary(self, h: http.server.BaseHTTPRequestHandler) -> None:
        self.reply(h, b"ada\n\x00\x00\x00\ngrace\n", "application/octet-stream")

    def route_truncated(self, h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(self.NAMES)  # then the connection closes

    def route_declared_huge(self, h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(10**12))
        h.end_headers()
        h.wfile.write(self.NAMES)

    def route_endless(self, h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.end_headers()
        try:
            for _ in range(10_000):  # 160 MB at most, far past any cap used here
                h.wfile.write(b"abcdefghijklmno\n" * 1024)
        except OSError:
            pass  # the client gave up, as it should

    def route_drip(self, h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.end_headers()
        try:
            for _ in range(100):  # one byte every 0.2 s: each read is quick, the whole is not
                h.wfile.write(b"a")
                h.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass

    def route_private(self, h: http.server.BaseHTTPRequestHandler) -> None:
        if h.headers.get("Authorization") != "Basic dXNlcjpzM2NyM3Q=":  # user:s3cr3t
            h.send_error(401)
        else:
            self.reply(h, self.NAMES)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HTTPTestServer]:
    """An HTTPTestServer, with downloads cached in tmp_path/cache."""
    monkeypatch.setenv("MICROGPT_CACHE", str(tmp_path / "cache"))
    srv = HTTPTestServer()
    yield srv
    srv.close()


# What Windows lacks, made unavailable before anything else runs: the
# POSIX-only modules cannot be imported and the POSIX-only names of `os` and
# `signal` are gone. As a `sitecustomize` (see `simulated_windows`), it holds
# for every Python started with that environment, children included.
SIMULATED_WINDOWS = """
import importlib.abc
import os
import signal
import sys

BLOCKED = {"fcntl", "termios", "resource", "grp", "pwd", "pty", "tty", "syslog"}
REMOVED = {
    os: ["O_NOFOLLOW", "O_NONBLOCK", "sysconf", "sysconf_names", "pathconf", "fpathconf",
         "pathconf_names", "fchmod", "fchown", "getuid", "geteuid", "killpg", "setsid",
         "getpgid", "setpgrp", "fork", "forkpty", "mkfifo", "mknod", "makedev",
         "getloadavg"],
    signal: ["SIGPIPE", "SIGHUP", "SIGKILL", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM",
             "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "alarm", "setitimer", "getitimer",
             "pause", "pthread_kill", "pthread_sigmask", "siginterrupt", "sigwait"],
}


class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (simulated Windows)", name=name)
        return None


sys.meta_path.insert(0, Blocked())
for name in BLOCKED:
    sys.modules.pop(name, None)
for module, names in REMOVED.items():
    for name in names:
        if hasattr(module, name):
            delattr(module, name)
"""


@pytest.fixture(scope="session")
def simulated_windows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose Pythons lack what Windows lacks (SIMULATED_WINDOWS)."""
    folder = tmp_path_factory.mktemp("simulated-windows")
    (folder / "sitecustomize.py").write_text(SIMULATED_WINDOWS, encoding="utf-8")
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}
