"""The optimiser and the learning-rate schedules: decoupled weight decay as
torch.optim.AdamW, and each schedule as PyTorch's, in float64 to 1e-12; the
defaults are the original's float operations exactly."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from microgpt.nn import Value
from microgpt.optim import Adam, AdamConfig, linear_decay, scheduled_lr
from microgpt.settings import SettingError
from microgpt.train import TrainConfig

STEPS = 40


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def gradients(n: int, steps: int) -> list[list[float]]:
    rng = random.Random(3)
    return [[rng.gauss(0, 1) for _ in range(n)] for _ in range(steps)]


def microgpt_adam(
    start: list[float], grads: list[list[float]], config: TrainConfig
) -> list[list[float]]:
    params = [Value(x) for x in start]
    adam = Adam(params, config)
    seen = []
    for step, g in enumerate(grads):
        for p, gi in zip(params, g):
            p.grad = gi
        adam.step(step, config.lr_at(step))
        seen.append([p.data for p in params])
    return seen


@pytest.mark.parametrize("weight_decay", [0.0, 0.1, 2.5])
@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_adamw_agrees_with_pytorch_float64(weight_decay: float, schedule: str) -> None:
    torch = pytest.importorskip("torch")
    config = TrainConfig(
        steps=STEPS, lr=0.05, weight_decay=weight_decay, lr_schedule=schedule, warmup_steps=3
    )
    start = [random.Random(1).gauss(0, 1) for _ in range(12)]
    grads = gradients(len(start), STEPS)
    ours = microgpt_adam(start, grads, config)

    weights = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    adamw = torch.optim.AdamW(
        [weights],
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        eps=config.eps,
        weight_decay=weight_decay,
    )
    for step, g in enumerate(grads):
        for group in adamw.param_groups:
            group["lr"] = config.lr_at(step)
        weights.grad = torch.tensor(g, dtype=torch.float64)
        adamw.step()
        theirs = weights.detach().tolist()
        assert all(close(a, b) for a, b in zip(ours[step], theirs)), (step, ours[step], theirs)


def test_no_weight_decay_is_the_original_update_exactly() -> None:
    start = [random.Random(2).gauss(0, 1) for _ in range(8)]
    grads = gradients(len(start), 5)
    plain = microgpt_adam(start, grads, TrainConfig(steps=5))
    # The original's update, written out: no decay term at all.
    params, m, v = list(start), [0.0] * 8, [0.0] * 8
    for step, g in enumerate(grads):
        lr_t = 0.01 * (1 - step / 5)
        for i, gi in enumerate(g):
            m[i] = 0.85 * m[i] + (1 - 0.85) * gi
            v[i] = 0.99 * v[i] + (1 - 0.99) * gi**2
            m_hat = m[i] / (1 - 0.85 ** (step + 1))
            v_hat = v[i] / (1 - 0.99 ** (step + 1))
            params[i] -= lr_t * m_hat / (v_hat**0.5 + 1e-8)
        assert plain[step] == params  # bit for bit


def test_weight_decay_shrinks_the_weights_before_the_step() -> None:
    # With a zero gradient Adam moves nothing; decay alone is w * (1 - lr * wd).
    params = [Value(2.0), Value(-1.0)]
    Adam(params, AdamConfig(lr=0.1, weight_decay=0.5)).step(0, 0.1)
    assert [p.data for p in params] == [2.0 - 0.1 * 0.5 * 2.0, -1.0 - 0.1 * 0.5 * -1.0]


def test_a_bad_gradient_with_weight_decay_changes_nothing() -> None:
    params = [Value(1.0), Value(2.0)]
    adam = Adam(params, AdamConfig(weight_decay=0.1))
    params[1].grad = math.nan
    with pytest.raises(FloatingPointError):
        adam.step(0, 0.01)
    assert [p.data for p in params] == [1.0, 2.0]


def torch_schedule(torch: Any, config: TrainConfig) -> list[float]:
    """PyTorch's schedulers: LinearLR for the warm-up, then LinearLR to
    min_lr, CosineAnnealingLR or ConstantLR (factor 1) over the rest."""
    lr, w, rest = config.lr, config.warmup_steps, config.steps - config.warmup_steps
    sched = torch.optim.lr_scheduler
    rates: list[float] = []
    if w:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
        warmup = sched.LinearLR(opt, start_factor=1 / (w + 1), end_factor=1.0, total_iters=w)
        for _ in range(w):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            warmup.step()
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    if config.lr_schedule == "linear":
        after = sched.LinearLR(
            opt, start_factor=1.0, end_factor=config.min_lr / lr, total_iters=rest
        )
    elif config.lr_schedule == "cosine":
        after = sched.CosineAnnealingLR(opt, T_max=rest, eta_min=config.min_lr)
    else:
        after = sched.ConstantLR(opt, factor=1.0, total_iters=rest)
    for _ in range(rest):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        after.step()
    return rates


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
@pytest.mark.parametrize(("warmup", "min_lr"), [(0, 0.0), (7, 0.0), (5, 0.002), (0, 0.004)])
def test_each_schedule_agrees_with_pytorch(schedule: str, warmup: int, min_lr: float) -> None:
    torch = pytest.importorskip("torch")
    config = TrainConfig(
        steps=60, lr=0.01, lr_schedule=schedule, warmup_steps=warmup, min_lr=min_lr
    )
    ours = [config.lr_at(step) for step in range(config.steps)]
    theirs = torch_schedule(torch, config)
    assert len(ours) == len(theirs)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        assert close(a, b), (step, a, b)


def test_the_default_schedule_is_the_originals_linear_decay_exactly() -> None:
    config = TrainConfig(steps=1000)
    assert [config.lr_at(s) for s in range(1000)] == [
        linear_decay(0.01, s, 1000) for s in range(1000)
    ]
    # min_lr and warm-up change it only where they say
    assert scheduled_lr("linear", 0.01, 999, 1000, min_lr=0.001) > linear_decay(0.01, 999, 1000)
    assert scheduled_lr("cosine", 0.01, 0, 1000) == 0.01
    assert scheduled_lr("constant", 0.01, 999, 1000) == 0.01
    assert scheduled_lr("linear", 0.01, 0, 1000, warmup=9) == 0.001


def test_schedule_settings_that_contradict_each_other_are_refused() -> None:
    with pytest.raises(SettingError, match=r"warmup_steps must be below steps \(10\), got 10"):
        TrainConfig(steps=10, warmup_steps=10)
    with pytest.raises(SettingError, match=r"min_lr must be at most lr \(0.01\), got 0.02"):
        TrainConfig(min_lr=0.02)
    with pytest.raises(SettingError, match="weight_decay must be at least 0"):
        TrainConfig(weight_decay=-0.1)
