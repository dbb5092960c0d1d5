"""The gradient monitor: per-matrix gradient norms, and the flags it raises."""

from __future__ import annotations

import math
from typing import Any

import pytest

from microgpt import Value
from microgpt.data import load_documents
from microgpt.monitor import gradient_report
from microgpt.optim import clip_grad_norm
from microgpt.train import Run, TrainConfig


def matrix_with_grads(*grads: float) -> list[list[Any]]:
    row = []
    for g in grads:
        v = Value(0.0)
        v.grad = g
        row.append(v)
    return [row]


def test_norm_max_and_flags_from_hand_set_gradients() -> None:
    report = gradient_report(
        {
            "fine": matrix_with_grads(3.0, -4.0),  # norm 5, max |g| 4
            "huge": matrix_with_grads(60.0, 80.0),  # norm 100
            "tiny": matrix_with_grads(0.0, 1e-9),
            "broken": matrix_with_grads(1.0, math.nan),
        },
        explode_above=10.0,
        vanish_below=1e-6,
    )
    rows = {r.name: r for r in report.rows}
    assert (rows["fine"].norm, rows["fine"].max_abs, rows["fine"].size) == (5.0, 4.0, 2)
    assert rows["huge"].norm == 100.0
    statuses = {name: r.status for name, r in rows.items()}
    assert statuses == {
        "fine": "ok",
        "huge": "exploding",
        "tiny": "vanishing",
        "broken": "not finite",
    }
    assert [r.name for r in report.flagged] == ["huge", "tiny", "broken"]
    assert not report.healthy
    table = report.table()
    assert "<-- exploding" in table and "<-- vanishing" in table and "<-- not finite" in table
    assert "3 flagged" in table.splitlines()[-1]


def test_thresholds_are_the_callers() -> None:
    sd = {"w": matrix_with_grads(3.0, 4.0)}
    assert gradient_report(sd, explode_above=4.0).rows[0].status == "exploding"
    assert gradient_report(sd, vanish_below=6.0).rows[0].status == "vanishing"
    assert gradient_report(sd).healthy


def test_gpt_after_backward() -> None:
    run = Run.start(load_documents(), TrainConfig(), n_embd=8, n_head=2, block_size=8)
    run.loss(run.docs[0]).backward()
    report = gradient_report(run.model.state_dict)
    assert [r.name for r in report.rows] == list(run.model.state_dict)
    assert report.healthy, report.table()
    for row in report.rows:
        grads = [p.grad for r in run.model.state_dict[row.name] for p in r]
        assert row.size == len(grads)
        assert row.max_abs == max(abs(g) for g in grads)
    # the global norm is the one that gradient clipping measures
    assert report.total_norm == pytest.approx(clip_grad_norm(run.model.params, 1e9), rel=1e-12)
    lines = report.table().splitlines()
    assert len(lines) == len(run.model.state_dict) + 2
    assert lines[-1].endswith("all matrices ok")


def test_before_backward_every_matrix_vanishes() -> None:
    run = Run.start(load_documents(), TrainConfig(), n_embd=8, n_head=2, block_size=8)
    report = gradient_report(run.model.state_dict)  # no backward(): all grads are 0
    assert all(r.status == "vanishing" and r.norm == 0.0 for r in report.rows)
