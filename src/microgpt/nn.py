"""The GPT: a function from a token and its position to logits over the next
token, built from scalar `Value`s.

It follows GPT-2 with the original microgpt's simplifications: RMSNorm
instead of LayerNorm, no biases, ReLU instead of GeLU. LayerNorm, GeLU and
dropout are available as options; the defaults reproduce the original.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from microgpt.backend import engine
from microgpt.settings import POSITIVE_INT, Rule, Settings, setting

if TYPE_CHECKING:  # the type checker reads engine.py; at run time the selected engine's
    from microgpt.engine import Value as Value
    from microgpt.engine import attend as attend
    from microgpt.engine import dot as dot
    from microgpt.engine import exps_shifted as exps_shifted
    from microgpt.engine import linear as linear
    from microgpt.engine import scaled_dots as scaled_dots
    from microgpt.engine import vsum as vsum
    from microgpt.engine import weighted_sum as weighted_sum
else:
    # Each of these computes exactly the floats of the Python code beside it,
    # forward and backward, with fewer nodes (see engine.py).
    Value = engine.Value
    dot = engine.dot  # sum(w * x for w, x in zip(ws, xs))
    linear = engine.linear  # w @ x: [dot(wo, x) for wo in w]
    vsum = engine.vsum  # sum(vs)
    scaled_dots = engine.scaled_dots  # [dot(q, k) / divisor for k in ks]
    exps_shifted = engine.exps_shifted  # [(v - shift).exp() for v in vs]
    weighted_sum = engine.weighted_sum  # [dot(weights, [v[j] for v in vs]) for j in ...]
    attend = engine.attend  # attention_head(q, keys, values), without showing the weights

Vector = list[Value]
Row = tuple[Value, ...]  # a row of weights: fixed once made, so a dot node can keep it as it is
Matrix = list[Row]  # weights are [n_out][n_in]

NORMS = ("rmsnorm", "layernorm")
ACTIVATIONS = ("relu", "gelu")
INIT_STD = 0.08
NORM_EPS = 1e-5


@dataclass(frozen=True)
class GPTConfig(Settings):
    """The shape of the network. The defaults are the original microgpt's."""

    what = "model"

    vocab_size: int = setting(
        dataclasses.MISSING, "tokens: the data's characters and BOS", POSITIVE_INT, flag=False
    )
    n_layer: int = setting(1, "number of transformer blocks", POSITIVE_INT)
    n_embd: int = setting(
        16, "embedding width (divisible by --n-head)", Rule("int", low=1, divides="n_head")
    )
    n_head: int = setting(4, "attention heads per block", POSITIVE_INT)
    block_size: int = setting(16, "context length in characters", POSITIVE_INT)
    norm: str = setting(
        "rmsnorm",
        "normalisation: rmsnorm (the original's) or layernorm",
        Rule("choice", choices=NORMS),
    )
    activation: str = setting(
        "relu",
        "MLP nonlinearity: relu (the original's) or gelu",
        Rule("choice", choices=ACTIVATIONS),
    )
    dropout: float = setting(
        0.0, "dropout probability while training", Rule("float", 0, 1, high_open=True)
    )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def weight_shapes(config: GPTConfig) -> dict[str, tuple[int, int]]:
    """Every weight matrix, (rows, columns), in the order its weights are drawn.

    The one definition of the layout: the model is built from it and a
    checkpoint is checked against it.
    """
    c = config
    shapes = {
        "wte": (c.vocab_size, c.n_embd),
        "wpe": (c.block_size, c.n_embd),
        "lm_head": (c.vocab_size, c.n_embd),
    }
    for i in range(c.n_layer):
        shapes[f"layer{i}.attn_wq"] = (c.n_embd, c.n_embd)
        shapes[f"layer{i}.attn_wk"] = (c.n_embd, c.n_embd)
        shapes[f"layer{i}.attn_wv"] = (c.n_embd, c.n_embd)
        shapes[f"layer{i}.attn_wo"] = (c.n_embd, c.n_embd)
        shapes[f"layer{i}.mlp_fc1"] = (4 * c.n_embd, c.n_embd)
        shapes[f"layer{i}.mlp_fc2"] = (c.n_embd, 4 * c.n_embd)
    return shapes


def parameter_count(config: GPTConfig) -> int:
    """How many weights a model of this shape has (counted, nothing built)."""
    c = config
    embeddings = (2 * c.vocab_size + c.block_size) * c.n_embd
    return embeddings + c.n_layer * 12 * c.n_embd * c.n_embd


# --- building blocks ---------------------------------------------------------


def softmax(logits: Vector) -> Vector:
    """exp(l - max) / total; subtracting the max keeps exp() in range."""
    exps, total = _exps_and_total(logits)
    return [e / total for e in exps]


def cross_entropy(logits: Vector, target: int) -> Value:
    """-log(softmax(logits)[target]): the loss for predicting `target`. Only
    the target's probability is built; the others would be nodes that the
    loss never reaches (the numbers are the same either way)."""
    exps, total = _exps_and_total(logits)
    return -(exps[target] / total).log()


def _exps_and_total(logits: Vector) -> tuple[Vector, Value]:
    max_val = max(val.data for val in logits)
    exps = exps_shifted(logits, max_val)  # [(val - max_val).exp() for val in logits]
    return exps, vsum(exps)


def attention_head(
    q: Vector, keys: list[Row], values: list[Row], show: Callable[[Vector], None] | None = None
) -> Vector:
    """What one head of attention gives one query: the keys' scores against
    q, their softmax, and the values weighted by it. `show`, if given, is
    called with the weights (then built as nodes, to be seen; `attend`
    computes the same floats, forward and backward, with a node per output)."""
    if show is None:
        return attend(q, keys, values)
    attn_logits = scaled_dots(q, keys, len(q) ** 0.5)  # [dot(q, k) / len(q)**0.5 for k in keys]
    attn_weights = softmax(attn_logits)
    show(attn_weights)
    return weighted_sum(attn_weights, values)  # one output per dimension j


def rmsnorm(x: Vector) -> Vector:
    """x / sqrt(mean(x^2) + eps), with no learned scale."""
    ms = dot(x, x) / len(x)  # sum(xi * xi for xi in x) / len(x)
    scale = (ms + NORM_EPS) ** -0.5
    return [xi * scale for xi in x]


def layernorm(x: Vector) -> Vector:
    """(x - mean) / sqrt(var + eps), with no learned scale or shift."""
    mean = vsum(x) / len(x)
    centered = [xi - mean for xi in x]
    var = dot(centered, centered) / len(x)
    scale = (var + NORM_EPS) ** -0.5
    return [c * scale for c in centered]


def dropout(x: Vector, p: float, rng: random.Random) -> Vector:
    """Zero each element with probability p, scale the rest by 1/(1-p)."""
    keep = 1.0 / (1.0 - p)
    return [xi * (keep if rng.random() >= p else 0.0) for xi in x]


# --- the model ---------------------------------------------------------------


class GPT:
    """The weights (`state_dict`) and the forward pass for one position.

    Weights are drawn from `rng` with `gauss(0, 0.08)`, matrix by matrix, row
    by row, in the original's order, so a seeded `random.Random` gives the
    original's initial weights.
    """

    def __init__(self, config: GPTConfig, rng: random.Random) -> None:
        def matrix(n_out: int, n_in: int) -> Matrix:
            return [
                tuple([Value(rng.gauss(0, INIT_STD)) for _ in range(n_in)]) for _ in range(n_out)
            ]

        self._setup(config, {name: matrix(*shape) for name, shape in weight_shapes(config).items()})

    @classmethod
    def from_weights(cls, config: GPTConfig, weights: Mapping[str, list[list[float]]]) -> GPT:
        """The model with the given weights (e.g. a checkpoint's), matrix by
        matrix in `weight_shapes` order."""
        model = cls.__new__(cls)
        state = {
            name: [tuple([Value(x) for x in row]) for row in weights[name]]
            for name in weight_shapes(config)
        }
        model._setup(config, state)
        return model

    def _setup(self, config: GPTConfig, state_dict: dict[str, Matrix]) -> None:
        self.config = config
        self.state_dict = state_dict
        self.params: list[Value] = [p for mat in state_dict.values() for row in mat for p in row]
        self._norm = rmsnorm if config.norm == "rmsnorm" else layernorm

    def new_cache(self) -> tuple[list[list[list[Row]]], list[list[list[Row]]]]:
        """Empty lists of the keys and values seen so far, per layer and head."""
        c = self.config
        return (
            [[[] for _ in range(c.n_head)] for _ in range(c.n_layer)],
            [[[] for _ in range(c.n_head)] for _ in range(c.n_layer)],
        )

    def __call__(
        self,
        token_id: int,
        pos_id: int,
        keys: list[list[list[Row]]],
        values: list[list[list[Row]]],
        rng: random.Random | None = None,
        on_attention: Callable[[int, int, Vector], None] | None = None,
    ) -> Vector:
        """Logits for the token after `token_id` at `pos_id`.

        `keys`/`values` hold what earlier positions appended: attention sees
        only them and this position, which is what makes it causal. Pass `rng`
        to apply dropout (training); without it there is none. `on_attention`
        is called with (layer, head, weights) for inspection.
        """
        sd = self.state_dict
        x = [t + p for t, p in zip(sd["wte"][token_id], sd["wpe"][pos_id])]
        x = self._norm(x)  # not redundant: the residual path skips the block's own norm
        x = self._dropout(x, rng)
        for li in range(self.config.n_layer):
            x = self._attention(li, x, keys[li], values[li], rng, on_attention)
            x = self._mlp(li, x, rng)
        return linear(x, sd["lm_head"])

    def _attention(
        self,
        li: int,
        x: Vector,
        keys: list[list[Row]],
        values: list[list[Row]],
        rng: random.Random | None,
        on_attention: Callable[[int, int, Vector], None] | None,
    ) -> Vector:
        """Block li's multi-head causal self-attention, added to x."""
        sd, head_dim = self.state_dict, self.config.head_dim
        x_residual = x
        x = self._norm(x)
        q = linear(x, sd[f"layer{li}.attn_wq"])
        k = linear(x, sd[f"layer{li}.attn_wk"])
        v = linear(x, sd[f"layer{li}.attn_wv"])
        x_attn: Vector = []
        for h in range(self.config.n_head):
            hs = slice(h * head_dim, (h + 1) * head_dim)
            keys[h].append(tuple(k[hs]))
            values[h].append(tuple(v[hs]))
            show = None if on_attention is None else functools.partial(on_attention, li, h)
            x_attn.extend(attention_head(q[hs], keys[h], values[h], show))
        x = linear(x_attn, sd[f"layer{li}.attn_wo"])
        x = self._dropout(x, rng)
        return [a + b for a, b in zip(x, x_residual)]

    def _mlp(self, li: int, x: Vector, rng: random.Random | None) -> Vector:
        """Block li's MLP (expand 4x, nonlinearity, project back), added to x."""
        sd = self.state_dict
        x_residual = x
        x = self._norm(x)
        x = linear(x, sd[f"layer{li}.mlp_fc1"])
        x = [xi.relu() for xi in x] if self.config.activation == "relu" else [xi.gelu() for xi in x]
        x = linear(x, sd[f"layer{li}.mlp_fc2"])
        x = self._dropout(x, rng)
        return [a + b for a, b in zip(x, x_residual)]

    def _dropout(self, x: Vector, rng: random.Random | None) -> Vector:
        """Dropout while training (given `rng`), if the model has any."""
        if rng is None or self.config.dropout == 0.0:
            return x
        return dropout(x, self.config.dropout, rng)

    def attention_weights(self, token_ids: list[int]) -> list[list[list[list[float]]]]:
        """Attention weights `[layer][head][query t][key s]` for a sequence.

        Row t has t+1 entries: position t only ever sees positions <= t.
        """
        c = self.config
        rows: list[list[list[list[float]]]] = [
            [[] for _ in range(c.n_head)] for _ in range(c.n_layer)
        ]

        def record(layer: int, head: int, weights: Vector) -> None:
            rows[layer][head].append([w.data for w in weights])

        keys, values = self.new_cache()
        for pos_id, token_id in enumerate(token_ids):
            self(token_id, pos_id, keys, values, on_attention=record)
        return rows
