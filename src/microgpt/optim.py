"""Adam with bias correction, and the learning-rate schedule.

The update is written exactly as in the original microgpt so that it gives the
same float64 results: each parameter's moments are updated, bias-corrected,
and applied, then its gradient is reset to zero.
"""

from __future__ import annotations

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

    lr: float = setting(0.01, "peak learning rate (decays linearly to 0)", POSITIVE)
    beta1: float = setting(0.85, "Adam beta1", BETA)
    beta2: float = setting(0.99, "Adam beta2", BETA)
    eps: float = setting(1e-8, "Adam epsilon", POSITIVE)


class Adam:
    """Adam over a list of `Value` parameters, with per-parameter moments."""

    def __init__(self, params: list[Value], config: AdamConfig | None = None) -> None:
        config = config or AdamConfig()  # checked when it was built
        self.params = params
        self.lr = config.lr
        self.beta1 = config.beta1
        self.beta2 = config.beta2
        self.eps = config.eps
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
        adam_update(
            self.params, self.m, self.v, lr_t, self.beta1, self.beta2, self.eps, bias1, bias2
        )


def zeros(n: int) -> array[float]:
    """n float64 zeros: Adam's moments are C doubles, not Python floats."""
    return array("d", bytes(8 * n))


def linear_decay(lr: float, step: int, num_steps: int) -> float:
    """The learning rate of (0-based) `step`: `lr` falling linearly to zero."""
    return lr * (1 - step / num_steps)


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
