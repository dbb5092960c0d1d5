"""The notebooks of the learning path (docs/notebooks) run top to bottom
without an error, in the engine under test: the suite's two passes run them
in both engines. They are committed without outputs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT

import microgpt

FOLDER = REPO_ROOT / "docs" / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
CELL_SECONDS = 300  # a cell that takes longer has hung (each notebook takes well under a minute)
KERNEL = "microgpt-under-test"

pytestmark = pytest.mark.skipif(
    not NOTEBOOKS, reason="docs/notebooks is not beside the tests (not a checkout)"
)


def test_the_notebooks_follow_the_learning_path() -> None:
    assert [path.name.split("-", 1)[0] for path in NOTEBOOKS] == ["1", "2", "3", "4", "5"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)


def kernel_manager(folder: Path) -> Any:
    """A kernel that runs this Python (not whichever "python3" kernel the
    machine has registered), with this process's environment: its engine."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec = folder / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": KERNEL, "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    specs = KernelSpecManager(kernel_dirs=[str(folder)])
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not os.environ.get("CI"):  # CI installs the test extra: there their absence fails
        pytest.importorskip("nbclient")
        pytest.importorskip("ipykernel")
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # first, that the kernel runs the engine under test
    engine = f"import microgpt\nassert microgpt.ENGINE_NAME == {microgpt.ENGINE_NAME!r}"
    nb.cells.insert(0, nbformat.v4.new_code_cell(engine))
    work = tmp_path / "work"  # the notebook's current folder: anything it writes lands here
    work.mkdir()
    (tmp_path / "tmp").mkdir()  # and its temporary folders, which the kernel inherits
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    client = NotebookClient(
        nb,
        km=kernel_manager(tmp_path / "kernels"),
        timeout=CELL_SECONDS,
        resources={"metadata": {"path": str(work)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    errors = [o for cell in nb.cells for o in cell.get("outputs", []) if o.output_type == "error"]
    assert not errors
