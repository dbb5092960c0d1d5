"""The benchmark scripts run, measure the engine they were asked for, and
refuse to measure another one (a smoke run: one value each, no timing claims).
The PyTorch model they compare with does the same work as microgpt."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import PURE_REQUESTED, REPO_ROOT

from microgpt.data import load_documents
from microgpt.train import Run, TrainConfig

BENCHMARKS = REPO_ROOT / "bench" / "benchmarks.py"
pytestmark = pytest.mark.skipif(not BENCHMARKS.exists(), reason="bench/ is not beside the tests")
ACTIVE = "pure" if PURE_REQUESTED else "compiled"


def run_benchmarks(
    engine: str, groups: str, out: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS), "--engine", engine, "--group", groups]
        + ["--debug-single-value", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.fixture
def without_torch(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import torch` fails, whether or not it is installed."""
    (tmp_path / "hidden" / "torch").mkdir(parents=True)
    (tmp_path / "hidden" / "torch" / "__init__.py").write_text(
        'raise ImportError("No module named torch (hidden by the test)")\n'
    )
    path = os.pathsep.join(p for p in (str(tmp_path / "hidden"), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def test_benchmarks_run_on_the_active_engine_and_record_it(tmp_path: Path) -> None:
    out = tmp_path / f"{ACTIVE}.json"
    result = run_benchmarks(ACTIVE, "graph,step", out)
    assert result.returncode == 0, result.stderr[-2000:]
    suite = json.loads(out.read_text(encoding="utf-8"))
    names = {b["metadata"]["name"] for b in suite["benchmarks"]}
    assert {"graph_add_chain", "graph_dot_engine", "train_step_default"} <= names
    assert suite["metadata"]["bench_engine"] == ACTIVE
    assert suite["metadata"]["microgpt_compiled"] == str(not PURE_REQUESTED)


def test_the_original_design_baseline_runs(tmp_path: Path) -> None:
    if PURE_REQUESTED:
        pytest.skip("the baseline is engine-independent: run once, in the compiled pass")
    out = tmp_path / "original.json"
    result = run_benchmarks("original", "graph", out)
    assert result.returncode == 0, result.stderr[-2000:]
    names = {b["metadata"]["name"] for b in json.loads(out.read_text())["benchmarks"]}
    assert "graph_dot_sum" in names and "graph_dot_engine" not in names


def test_asking_for_the_other_engine_is_refused(tmp_path: Path) -> None:
    other = "compiled" if PURE_REQUESTED else "pure"
    result = run_benchmarks(other, "graph", tmp_path / "other.json")
    assert result.returncode != 0
    assert "MICROGPT_PURE" in result.stderr
    assert not (tmp_path / "other.json").exists()


# --- PyTorch -----------------------------------------------------------------


def test_torch_trains_to_microgpts_losses_within_1e_12() -> None:
    pytest.importorskip("torch")
    from torch_design import TorchGPT

    run = Run.start(load_documents(), TrainConfig(steps=50, seed=42))
    model = TorchGPT(run)  # the same initial weights, document order and settings
    for step in range(50):
        ours, theirs = run.train_step(), model.train_step()
        assert math.isclose(theirs, ours, rel_tol=1e-12), (step, ours, theirs)


def test_torch_samples_the_same_names_as_microgpt() -> None:
    pytest.importorskip("torch")
    import workloads

    docs = load_documents()
    names: Any = workloads.make_sampler("torch", docs)()
    assert names == workloads.make_sampler(ACTIVE, docs)()
    assert len(names) == workloads.SAMPLE_NAMES and any(names)


def test_the_torch_benchmarks_run(tmp_path: Path) -> None:
    if PURE_REQUESTED:
        pytest.skip("torch does not depend on microgpt's engine: run once, in the compiled pass")
    pytest.importorskip("torch")
    out = tmp_path / "torch.json"
    result = run_benchmarks("torch", "step", out)
    assert result.returncode == 0, result.stderr[-2000:]
    import pyperf

    (bench,) = pyperf.BenchmarkSuite.load(str(out)).get_benchmarks()
    metadata = bench.get_metadata()
    assert bench.get_name() == "train_step_default" and bench.median() > 0
    assert metadata["bench_engine"] == "torch"
    assert "float64, 1 thread" in metadata["bench_engine_detail"]


def test_asking_for_torch_without_it_is_refused(
    tmp_path: Path, without_torch: dict[str, str]
) -> None:
    result = run_benchmarks("torch", "step", tmp_path / "torch.json", env=without_torch)
    assert result.returncode != 0
    assert "torch does not import" in result.stderr and "pip install" in result.stderr
    assert not (tmp_path / "torch.json").exists()


def test_run_py_leaves_torch_out_with_a_note_without_it(
    monkeypatch: pytest.MonkeyPatch, without_torch: dict[str, str]
) -> None:
    import run

    monkeypatch.setenv("PYTHONPATH", without_torch["PYTHONPATH"])
    engines, notes = run.engines_that_run(sys.executable, ["torch"])
    assert engines == []
    assert len(notes) == 1 and notes[0].startswith("torch left out: ")
    assert "pip install" in notes[0]
