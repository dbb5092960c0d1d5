"""Adam with bias correction (and optional decoupled weight decay), and the
learning-rate schedules.

The update is written exactly as in the original microgpt so that it gives the
same float64 results: each parameter's moments are updated, bias-corrected,
and applied, then its gradient is reset to zero. Weight decay, as in
`torch.optim.AdamW`, also shrinks each weight by lr * weight_decay times
itself (its value before the step); with the default 0 nothing is added.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING

from microgpt.backend import engine
from microgpt.settings import Rule, Settings, setting

if TYPE_CHECKING:
    from microgpt.engine import Value, adam_update
else:
    adam_update = engine.adam_update

POSITIVE = Rule("float", low=0.0, low_open=True)
BETA = Rule("float", low=0.0, high=1.0, high_open=True)


@dataclass(frozen=True)
class AdamConfig(Settings):
    """Adam's settings; `TrainConfig` is an AdamConfig, so these fields are
    the training settings of the same names (one declaration)."""

    what = "optimiser"

    lr: float = setting(0.01, "peak learning rate (over time: --lr-schedule)", POSITIVE)
    beta1: float = setting(0.85, "Adam beta1", BETA)
    beta2: float = setting(0.99, "Adam beta2", BETA)
    eps: float = setting(1e-8, "Adam epsilon", POSITIVE)
    weight_decay: float = setting(
        0.0, "decoupled weight decay, as AdamW (0: none, as the original)", Rule("float", low=0.0)
    )


class Adam:
    """Adam over a list of `Value` parameters, with per-parameter moments."""

    def __init__(
        self, params: list[Value], config: AdamConfig | None = None, **settings: float
    ) -> None:
        """`config`'s settings (a TrainConfig is one), or AdamConfig's own
        built from `settings` (e.g. `Adam(params, lr=0.02)`): either way its
        defaults and checks."""
        if config is not None and settings:
            raise TypeError("give Adam a config or settings, not both")
        config = config or AdamConfig(**settings)  # checked when it was built
        self.params = params
        self.lr = config.lr
        self.beta1 = config.beta1
        self.beta2 = config.beta2
        self.eps = config.eps
        self.weight_decay = config.weight_decay
        self.m = zeros(len(params))  # first moment (mean of gradients)
        self.v = zeros(len(params))  # second moment (mean of squared gradients)

    def step(self, step: int, lr_t: float) -> None:
        """Apply the update of (0-based) `step` with learning rate `lr_t`.

        For each parameter p with gradient g (see `engine.adam_update`):
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g**2
            p.data -= lr_t * (m / bias1) / ((v / bias2)**0.5 + eps)
        then g is reset to 0.
        """
        bias1 = 1 - self.beta1 ** (step + 1)  # bias corrections: the moments start at 0
        bias2 = 1 - self.beta2 ** (step + 1)
        # AdamW shrinks the weights as they were before the step; taken now,
        # applied after the update, which refuses a bad gradient changing nothing
        decay = (
            [lr_t * self.weight_decay * p.data for p in self.params] if self.weight_decay else []
        )
        adam_update(
            self.params, self.m, self.v, lr_t, self.beta1, self.beta2, self.eps, bias1, bias2
        )
        for p, shrink in zip(self.params, decay):
            p.data -= shrink


def zeros(n: int) -> array[float]:
    """n float64 zeros: Adam's moments are C doubles, not Python floats."""
    return array("d", bytes(8 * n))


SCHEDULES = ("linear", "cosine", "constant")


def linear_decay(lr: float, step: int, num_steps: int) -> float:
    """The learning rate of (0-based) `step`: `lr` falling linearly to zero."""
    return lr * (1 - step / num_steps)


def scheduled_lr(
    schedule: str, lr: float, step: int, steps: int, warmup: int = 0, min_lr: float = 0.0
) -> float:
    """The learning rate of (0-based) `step` of `steps`.

    Warm-up: steps 0..warmup-1 rise linearly, lr * (step + 1) / (warmup + 1)
    (torch's LinearLR from 1 / (warmup + 1)). After it, over the remaining
    steps, with p = (step - warmup) / (steps - warmup) going from 0 to 1:
    linear: min_lr + (lr - min_lr) * (1 - p), the original's with the
    defaults (warmup 0, min_lr 0); cosine: min_lr + (lr - min_lr) *
    (1 + cos(pi p)) / 2 (torch's CosineAnnealingLR); constant: lr.
    """
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if schedule == "constant":
        return lr
    if schedule == "linear" and warmup == 0 and min_lr == 0:
        return linear_decay(lr, step, steps)  # the original's float operations
    progress = (step - warmup) / (steps - warmup)
    if schedule == "linear":
        return min_lr + (lr - min_lr) * (1 - progress)
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def clip_grad_norm(params: list[Value], max_norm: float) -> float:
    """Scale all gradients so that their global L2 norm is at most `max_norm`.

    Returns the norm before clipping. (An option: the original has none.)
    """
    total = 0.0
    for p in params:
        total += p.grad * p.grad
    norm: float = total**0.5
    if norm > max_norm:
        scale = max_norm / norm
        for p in params:
            p.grad *= scale
    return norm
