"""The benchmark scripts run, measure the engine they were asked for, and
refuse to measure another one (a smoke run: one value each, no timing claims)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PURE_REQUESTED, REPO_ROOT

BENCHMARKS = REPO_ROOT / "bench" / "benchmarks.py"
pytestmark = pytest.mark.skipif(not BENCHMARKS.exists(), reason="bench/ is not beside the tests")
ACTIVE = "pure" if PURE_REQUESTED else "compiled"


def run_benchmarks(engine: str, groups: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS), "--engine", engine, "--group", groups]
        + ["--debug-single-value", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )


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
