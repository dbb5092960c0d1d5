"""A training step that goes wrong changes nothing: the run keeps its last
good state, so it can be saved and continued."""

from __future__ import annotations

import math
from typing import Any

import pytest
from conftest import TINY_SETTINGS as SMALL

from microgpt.backend import engine
from microgpt.train import NonFiniteLoss, Run, TrainConfig

DOCS = ["anna", "bob", "cleo", "dan", "eve"]


def snapshot(run: Run) -> tuple[list[float], list[float], list[float], object, int]:
    params = [p.data for p in run.model.params]
    return params, list(run.optimizer.m), list(run.optimizer.v), run.rng.getstate(), run.step


def test_adam_refuses_a_non_finite_gradient_before_changing_anything() -> None:
    params = [engine.Value(1.0), engine.Value(2.0), engine.Value(3.0)]
    params[0].grad, params[1].grad, params[2].grad = 0.5, math.nan, 0.25
    m, v = [0.0] * 3, [0.0] * 3
    with pytest.raises(FloatingPointError, match="parameter 1"):
        engine.adam_update(params, m, v, 0.01, 0.85, 0.99, 1e-8, 0.15, 0.01)
    assert [p.data for p in params] == [1.0, 2.0, 3.0]
    assert m == [0.0] * 3 and v == [0.0] * 3


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_an_infinite_loss_leaves_the_run_at_its_last_good_step(dropout: float) -> None:
    run = Run.start(DOCS, TrainConfig(steps=10, seed=3), dropout=dropout, **SMALL)
    run.train_step()
    # Weights this large make a softmax probability 0, and log(0) raises.
    for p in run.model.state_dict["lm_head"][0]:
        p.data = 1e6
    for p in run.model.state_dict["lm_head"][1]:
        p.data = -1e6
    huge = snapshot(run)
    with pytest.raises(NonFiniteLoss, match="at step 2"):
        run.train_step()
    assert snapshot(run) == huge  # nothing moved, the random stream included
    assert all(p.grad == 0.0 for p in run.model.params)


def test_a_non_finite_gradient_stops_the_step_before_the_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = Run.start(DOCS, TrainConfig(steps=10, seed=3), **SMALL)
    run.train_step()
    before = snapshot(run)
    first = run.model.params[0]

    def finite_loss_infinite_gradient(doc: str, rng: object = None) -> object:
        return engine.Value(1.0, (first,), (math.inf,), "overflowing op")

    monkeypatch.setattr(run, "loss", finite_loss_infinite_gradient)
    with pytest.raises(NonFiniteLoss, match="gradient of parameter 0 is inf.* at step 2"):
        run.train_step()
    assert snapshot(run) == before
    assert all(p.grad == 0.0 for p in run.model.params)


def test_clipping_scales_a_large_gradient_to_the_limit() -> None:
    from microgpt.optim import clip_grad_norm

    big = [engine.Value(0.0), engine.Value(0.0)]
    big[0].grad, big[1].grad = 3.0, 4.0
    assert clip_grad_norm(big, 1.0) == 5.0  # the norm before clipping
    assert [p.grad for p in big] == pytest.approx([0.6, 0.8])
    small = [engine.Value(0.0), engine.Value(0.0)]
    small[0].grad, small[1].grad = 0.3, 0.4
    assert clip_grad_norm(small, 1.0) == pytest.approx(0.5)
    assert [p.grad for p in small] == [0.3, 0.4]  # under the limit: untouched


def test_grad_clip_bounds_every_update_of_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run.start(DOCS, TrainConfig(steps=6, seed=3, grad_clip=0.1), **SMALL)
    norms: list[float] = []
    step = run.optimizer.step

    def record(*args: Any) -> None:
        norms.append(math.sqrt(sum(p.grad * p.grad for p in run.model.params)))
        step(*args)

    monkeypatch.setattr(run.optimizer, "step", record)
    for _ in range(6):
        run.train_step()
    assert len(norms) == 6
    assert all(n <= 0.1 * (1 + 1e-12) for n in norms)
    assert max(norms) == pytest.approx(0.1)  # the raw gradients are larger than 0.1
