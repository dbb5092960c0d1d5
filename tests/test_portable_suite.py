"""The suite itself runs on every platform a wheel is built for.

The wheels workflow runs it on Windows too, and publishing needs every wheel
job: one test module that cannot be imported there fails the release. So a
test that needs what only POSIX systems have carries the `posix_only` marker
(conftest.py skips it on Windows), and nothing is evaluated at collection that
Windows lacks. Both are checked here, on any machine: the whole suite is
collected in a Python without the POSIX-only names, and every test whose code
(or a helper or fixture of its module that it uses) names one must be marked.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import conftest
import pytest
from conftest import PURE_REQUESTED

TESTS = Path(__file__).resolve().parent

# What a test may only do on POSIX: device nodes and FIFOs, Unix sockets,
# signals Windows lacks or sends as TerminateProcess (send_signal and os.kill
# there stop a process outright, so it cannot save), file modes (chmod sets
# only the read-only bit there), symbolic links (they need a privilege there),
# user ids, and the POSIX-only modules (also in a child's code, as text).
POSIX_ONLY = re.compile(
    r"\bos\.(mkfifo|mknod|makedev|geteuid|getuid|fork|setsid|killpg|getpgid|sysconf|umask)\b"
    r"|\bsignal\.(SIGKILL|SIGHUP|SIGPIPE|SIGALRM|SIGQUIT|SIGUSR[12]|SIGCHLD|SIGSTOP|SIGCONT)\b"
    r"|\bsignal\.(SIGTSTP|SIGXFSZ|SIGXCPU|alarm|setitimer|pthread_kill)\b|\bpreexec_fn\b"
    r"|\.send_signal\(|\bos\.kill\(|\bAF_UNIX\b|\.chmod\(|\bsymlink_to\(|\bos\.symlink\("
    r"|\b(import|from) (fcntl|resource|termios|pty|pwd|grp)\b"
)


def test_the_suite_collects_where_posix_only_names_are_missing(
    simulated_windows: dict[str, str],
) -> None:
    if PURE_REQUESTED:
        pytest.skip("collection does not depend on the engine: once, in the compiled pass")

    def collect(env: dict[str, str] | None) -> tuple[int, list[str], str]:
        command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        # platformdirs' plugin (installed with the notebook tests' jupyter_core)
        # picks its POSIX module by sys.platform, which the simulation keeps:
        # on Windows it would take its Windows one. Not microgpt's code.
        command += ["-p", "no:platformdirs"]
        # bench/ on the path as pyproject.toml puts it, also where there is none (run_suite.py)
        command += ["-o", f"pythonpath={TESTS.parent / 'bench'}", str(TESTS)]
        result = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=600, cwd=TESTS.parent
        )
        ids = [line for line in result.stdout.splitlines() if "::" in line]
        return result.returncode, ids, result.stdout[-3000:] + result.stderr[-3000:]

    status, ids, output = collect(simulated_windows)
    assert status == 0, output
    # Every test is still there: none was dropped at collection (they skip when run).
    _, ids_here, _ = collect(None)
    assert ids == ids_here


@dataclass
class FakeItem:
    """What the collection hook uses of a test item."""

    markers: list[pytest.Mark]
    added: list[pytest.MarkDecorator] = field(default_factory=list)

    def get_closest_marker(self, name: str) -> pytest.Mark | None:
        return next((m for m in self.markers if m.name == name), None)

    def add_marker(self, marker: pytest.MarkDecorator) -> None:
        self.added.append(marker)


@pytest.mark.parametrize("windows", [True, False])
def test_posix_only_tests_skip_on_windows_and_only_there(
    monkeypatch: pytest.MonkeyPatch, windows: bool
) -> None:
    marked = FakeItem([pytest.mark.posix_only("FIFOs").mark])
    bare = FakeItem([pytest.mark.posix_only.mark])
    plain = FakeItem([pytest.mark.parametrize("x", [1]).mark])
    monkeypatch.setattr(conftest, "WINDOWS", windows)
    conftest.pytest_collection_modifyitems(None, [marked, bare, plain])  # type: ignore[arg-type]
    reasons = [[m.kwargs["reason"] for m in item.added] for item in (marked, bare, plain)]
    if windows:
        assert reasons == [["POSIX only: FIFOs"], ["POSIX only: POSIX only"], []]
    else:
        assert reasons == [[], [], []]


# --- which tests need the marker ------------------------------------------------------


def module_definitions(tree: ast.Module) -> dict[str, ast.stmt]:
    """Module-level functions, classes and assignments, by the names they bind."""
    found: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        found[name.id] = node
    return found


def code_reached(test: ast.FunctionDef, definitions: dict[str, ast.stmt]) -> list[ast.AST]:
    """The test with its decorators, and every module-level definition it
    uses, directly or through another (fixtures by their parameter names)."""
    reached: list[ast.AST] = [test]
    seen: set[str] = set()
    todo: list[ast.AST] = [test]
    while todo:
        node = todo.pop()
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        if isinstance(node, ast.FunctionDef):
            names |= {a.arg for a in node.args.args}  # fixtures
        for name in sorted(names - seen):
            seen.add(name)
            if name in definitions and definitions[name] is not node:
                reached.append(definitions[name])
                todo.append(definitions[name])
    return reached


def text_of(node: ast.AST) -> str:
    """The code, and the text of its strings as they are (a child's code is often one)."""
    strings = [n.value for n in ast.walk(node) if isinstance(n, ast.Constant)]
    return "\n".join([ast.unparse(node), *(s for s in strings if isinstance(s, str))])


def is_marked(node: ast.FunctionDef | ast.Module) -> bool:
    if isinstance(node, ast.Module):
        decorators = [
            n.value
            for n in node.body
            if isinstance(n, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)
        ]
    else:
        decorators = node.decorator_list
    return any("posix_only" in ast.unparse(d) for d in decorators)


def unmarked_posix_tests(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    if is_marked(tree):
        return []
    definitions = module_definitions(tree)
    found = []
    for test in tree.body:
        if not isinstance(test, ast.FunctionDef) or not test.name.startswith("test_"):
            continue
        if is_marked(test):
            continue
        for node in code_reached(test, definitions):
            match = POSIX_ONLY.search(text_of(node))
            if match:
                found.append(f"{path.name}::{test.name} uses {match.group(0)!r}")
                break
    return found


def test_every_test_that_needs_posix_is_marked() -> None:
    # (this module is left out: it names the POSIX-only things as text)
    modules = [p for p in sorted(TESTS.glob("test_*.py")) if p.name != Path(__file__).name]
    found = [line for path in modules for line in unmarked_posix_tests(path)]
    assert not found, "mark these @pytest.mark.posix_only(reason):\n" + "\n".join(found)


def test_the_marker_check_finds_a_helper_two_steps_away_and_a_childs_code(tmp_path: Path) -> None:
    module = tmp_path / "test_sample.py"
    module.write_text(
        "import os, pytest\n"
        "def make(p):\n    os.mkfifo(p)\n"
        "MAKERS = {'fifo': make}\n"
        "@pytest.fixture\ndef fifo(tmp_path):\n    MAKERS['fifo'](tmp_path / 'f')\n"
        "def test_uses_fixture(fifo):\n    pass\n"
        "@pytest.mark.posix_only('FIFOs')\ndef test_marked(fifo):\n    pass\n"
        "def test_portable():\n    assert os.path.sep\n"
        'CHILD = """\nimport resource\n"""\n'
        "def test_child(tmp_path):\n    run(CHILD)\n",
        encoding="utf-8",
    )
    assert unmarked_posix_tests(module) == [
        "test_sample.py::test_uses_fixture uses 'os.mkfifo'",
        "test_sample.py::test_child uses 'import resource'",
    ]
