"""The GPT: its settings, weights, causal attention, norms and options, and a
cross-check against the original design (bench/original_design.py)."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from conftest import TINY_SETTINGS as SMALL
from original_design import OriginalGPT

from microgpt import Value
from microgpt.data import load_documents
from microgpt.errors import UsageError
from microgpt.nn import GPT, GPTConfig, cross_entropy, layernorm, rmsnorm, softmax
from microgpt.train import Run, TrainConfig

TINY_DOCS = ["anna", "bob", "emma", "otto", "ava", "eve", "hannah", "ada"]


# --- settings ---------------------------------------------------------------------


def test_defaults_are_the_originals() -> None:
    c = GPTConfig(vocab_size=27)
    assert (c.n_layer, c.n_embd, c.n_head, c.block_size) == (1, 16, 4, 16)
    assert (c.norm, c.activation, c.dropout, c.head_dim) == ("rmsnorm", "relu", 0.0, 4)
    assert GPTConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    "settings",
    [
        {"n_embd": 16, "n_head": 3},  # not divisible
        {"n_embd": 6, "n_head": 4},
        {"vocab_size": 0},
        {"n_layer": 0},
        {"n_embd": -16},
        {"n_head": 0},
        {"block_size": 0},
        {"n_layer": 1.5},
        {"n_layer": True},
        {"block_size": "16"},
        {"norm": "batchnorm"},
        {"norm": "RMSNorm"},
        {"activation": "tanh"},
        {"activation": ""},
        {"dropout": -0.1},
        {"dropout": 1.0},
        {"dropout": "0.1"},
    ],
)
def test_bad_settings_are_usage_errors(settings: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        GPTConfig(**{"vocab_size": 27, **settings})


def test_unknown_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="n_embed"):
        GPTConfig.from_dict({"vocab_size": 27, "n_embed": 16})


@pytest.mark.parametrize(
    "settings",
    [
        {"n_layer": 3, "n_embd": 12, "n_head": 3, "block_size": 1},
        {"n_embd": 1, "n_head": 1},
        {"norm": "layernorm", "activation": "gelu", "dropout": 0.5},
    ],
)
def test_good_settings(settings: dict[str, Any]) -> None:
    config = GPTConfig(vocab_size=2, **settings)
    assert all(getattr(config, name) == value for name, value in settings.items())
    assert GPTConfig.from_dict(config.to_dict()) == config


# --- weights ----------------------------------------------------------------------


def test_parameter_count_of_the_default_config() -> None:
    model = GPT(GPTConfig(vocab_size=27), random.Random(0))
    assert len(model.params) == 4192
    shapes = {name: (len(m), len(m[0])) for name, m in model.state_dict.items()}
    assert shapes == {
        "wte": (27, 16),
        "wpe": (16, 16),
        "lm_head": (27, 16),
        "layer0.attn_wq": (16, 16),
        "layer0.attn_wk": (16, 16),
        "layer0.attn_wv": (16, 16),
        "layer0.attn_wo": (16, 16),
        "layer0.mlp_fc1": (64, 16),
        "layer0.mlp_fc2": (16, 64),
    }
    assert len({id(p) for p in model.params}) == 4192  # each a distinct leaf


@pytest.mark.parametrize("settings", [{}, {"n_layer": 2, **SMALL}])
def test_initial_weights_are_the_originals_random_draws(settings: dict[str, Any]) -> None:
    # random.seed(42); shuffle(docs); one gauss(0, 0.08) per parameter, matrix by
    # matrix in the documented order, row by row (../shared/parity/README.md)
    docs = load_documents()
    run = Run.start(docs, TrainConfig(seed=42), **settings)
    rng = random.Random(42)
    shuffled = list(docs)
    rng.shuffle(shuffled)
    assert run.docs == shuffled
    names = ["wte", "wpe", "lm_head"]
    for i in range(run.model.config.n_layer):
        names += [f"layer{i}.{m}" for m in ("attn_wq", "attn_wk", "attn_wv", "attn_wo")]
        names += [f"layer{i}.mlp_fc1", f"layer{i}.mlp_fc2"]
    assert list(run.model.state_dict) == names
    expected = [rng.gauss(0, 0.08) for _ in run.model.params]
    got = [p.data for name in names for row in run.model.state_dict[name] for p in row]
    assert got == expected
    assert [p.data for p in run.model.params] == expected
    assert all(p.grad == 0.0 and p.children == () for p in run.model.params)
    assert run.rng.getstate() == rng.getstate()  # nothing else was drawn


# --- attention is causal ------------------------------------------------------------


def test_attention_rows_see_only_the_past_and_sum_to_one() -> None:
    config = GPTConfig(vocab_size=5, n_layer=2, **SMALL)
    model = GPT(config, random.Random(3))
    tokens = [4, 0, 1, 2, 3, 1, 0, 2]
    rows = model.attention_weights(tokens)
    assert len(rows) == 2 and all(len(heads) == 2 for heads in rows)
    for heads in rows:
        for per_query in heads:
            assert [len(r) for r in per_query] == [t + 1 for t in range(len(tokens))]
            for r in per_query:
                assert all(w > 0.0 for w in r)
                assert math.isclose(math.fsum(r), 1.0, rel_tol=0, abs_tol=1e-12)
    assert rows[0][0][0] == [1.0]  # the first position can only see itself


def _logits_per_position(model: GPT, tokens: list[int]) -> list[list[float]]:
    keys, values = model.new_cache()
    return [[v.data for v in model(t, pos, keys, values)] for pos, t in enumerate(tokens)]


@pytest.mark.parametrize("changed", [1, 4, 7])
def test_a_later_token_does_not_change_earlier_logits(changed: int) -> None:
    config = GPTConfig(vocab_size=6, n_layer=2, **SMALL)
    model = GPT(config, random.Random(5))
    tokens = [5, 0, 1, 2, 3, 4, 0, 1]
    other = list(tokens)
    other[changed] = (tokens[changed] + 2) % 6
    a, b = _logits_per_position(model, tokens), _logits_per_position(model, other)
    assert a[:changed] == b[:changed]  # exactly the same floats
    assert a[changed] != b[changed]


def test_the_forward_pass_without_rng_is_deterministic_even_with_dropout() -> None:
    config = GPTConfig(vocab_size=6, dropout=0.5, **SMALL)
    model = GPT(config, random.Random(5))
    tokens = [5, 0, 1, 2]
    assert _logits_per_position(model, tokens) == _logits_per_position(model, tokens)


# --- the building blocks against direct float formulas ---------------------------------

X = [0.3, -1.2, 2.5, 0.0, -0.7, 1.1]


def test_softmax() -> None:
    logits = [Value(v) for v in X]
    probs = softmax(logits)
    m = max(X)
    exps = [math.exp(v - m) for v in X]
    want = [e / sum(exps) for e in exps]
    for p, w in zip(probs, want):
        assert math.isclose(p.data, w, rel_tol=1e-14)
    assert math.isclose(math.fsum(p.data for p in probs), 1.0, rel_tol=1e-15)
    # d p_i / d l_j = p_i (delta_ij - p_j)
    i = 2
    probs[i].backward()
    for j, logit in enumerate(logits):
        want_grad = want[i] * ((i == j) - want[j])
        assert math.isclose(logit.grad, want_grad, rel_tol=1e-12, abs_tol=1e-16)


@pytest.mark.parametrize("target", range(len(X)))
def test_cross_entropy_is_minus_log_of_the_softmax_probability_bit_for_bit(target: int) -> None:
    # the loss builds only the target's probability: the same value and the
    # same gradients as taking it from the full softmax, as the original does
    results = []
    for loss_of in (cross_entropy, lambda ls, t: -softmax(ls)[t].log()):
        logits = [Value(v) * 1.5 for v in X]  # nodes, so they pass gradient on
        loss = loss_of(logits, target)
        loss.backward()
        results.append([loss.data] + [logit.grad for logit in logits])
    assert results[0] == results[1]
    assert results[0][0] > 0 and math.isclose(sum(results[0][1:]), 0.0, abs_tol=1e-12)


def test_softmax_of_large_logits_does_not_overflow() -> None:
    probs = softmax([Value(1000.0), Value(999.0)])
    assert math.isclose(probs[0].data, 1 / (1 + math.exp(-1)), rel_tol=1e-15)


def test_rmsnorm() -> None:
    out = rmsnorm([Value(v) for v in X])
    scale = (sum(v * v for v in X) / len(X) + 1e-5) ** -0.5
    for o, v in zip(out, X):
        assert math.isclose(o.data, v * scale, rel_tol=1e-14, abs_tol=1e-300)
    assert math.isclose(sum(o.data**2 for o in out) / len(X), 1.0, rel_tol=1e-4)


def test_layernorm() -> None:
    out = layernorm([Value(v) for v in X])
    mean = sum(X) / len(X)
    var = sum((v - mean) ** 2 for v in X) / len(X)
    for o, v in zip(out, X):
        assert math.isclose(o.data, (v - mean) / math.sqrt(var + 1e-5), rel_tol=1e-13)
    assert abs(sum(o.data for o in out)) < 1e-12
    assert math.isclose(sum(o.data**2 for o in out) / len(X), 1.0, rel_tol=1e-4)


@pytest.mark.parametrize("norm", [rmsnorm, layernorm, softmax])
def test_norm_gradients_match_finite_differences(norm: Any) -> None:
    weights = [0.5, -1.0, 2.0, 0.25, -0.3, 1.5]

    def f(xs: list[float]) -> Any:
        return sum(w * o for w, o in zip(weights, norm([Value(v) for v in xs])))

    leaves = [Value(v) for v in X]
    out = sum(w * o for w, o in zip(weights, norm(leaves)))
    out.backward()
    eps = 1e-6
    for k in range(len(X)):
        up, down = list(X), list(X)
        up[k] += eps
        down[k] -= eps
        numeric = (f(up).data - f(down).data) / (2 * eps)
        assert math.isclose(leaves[k].grad, numeric, rel_tol=1e-6, abs_tol=1e-8)


# --- options run and train --------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"norm": "layernorm"},
        {"activation": "gelu"},
        {"dropout": 0.1},
        {"norm": "layernorm", "activation": "gelu", "dropout": 0.2, "n_layer": 2},
    ],
    ids=["default", "layernorm", "gelu", "dropout", "all"],
)
def test_every_option_trains(settings: dict[str, Any]) -> None:
    steps = 30
    run = Run.start(TINY_DOCS, TrainConfig(steps=steps, lr=0.02, seed=1), **SMALL, **settings)
    losses = [run.train_step() for _ in range(steps)]
    assert all(math.isfinite(loss) for loss in losses)
    # the first 8 and the last 8 steps each see all 8 documents once
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < first - 0.5, (first, last)


def test_no_dropout_draws_nothing_from_the_random_stream() -> None:
    run = Run.start(TINY_DOCS, TrainConfig(steps=5, seed=3), dropout=0.0, **SMALL)
    state = run.rng.getstate()
    for _ in range(5):
        run.train_step()
    assert run.rng.getstate() == state
    # while dropout does draw, so the check above can fail
    run = Run.start(TINY_DOCS, TrainConfig(steps=5, seed=3), dropout=0.1, **SMALL)
    state = run.rng.getstate()
    run.train_step()
    assert run.rng.getstate() != state


# --- the same numbers as the original design --------------------------------------------


def test_training_matches_the_original_design_on_a_non_default_config() -> None:
    docs = load_documents()  # the bundled names
    settings = {"n_layer": 2, "n_embd": 8, "n_head": 2, "block_size": 8}
    steps = 10
    run = Run.start(docs, TrainConfig(steps=steps, seed=42), **settings)
    original = OriginalGPT(docs, seed=42, num_steps=steps, **settings)
    assert run.docs == original.docs
    assert [p.data for p in run.model.params] == [p.data for p in original.params]
    for step in range(1, steps + 1):
        ours, theirs = run.train_step(), original.train_step()
        assert ours == theirs, f"step {step}: {ours.hex()} != {theirs.hex()}"
    mismatched = [
        i for i, (p, q) in enumerate(zip(run.model.params, original.params)) if p.data != q.data
    ]
    assert len(run.model.params) == len(original.params)
    assert not mismatched, f"{len(mismatched)} final weights differ, first at index {mismatched[0]}"


def test_dropout_zeroes_about_p_and_scales_the_rest() -> None:
    from microgpt.nn import dropout

    out = dropout([Value(1.0) for _ in range(4000)], 0.25, random.Random(0))
    assert {o.data for o in out} <= {0.0, 1 / 0.75}
    dropped = sum(1 for o in out if o.data == 0.0) / len(out)
    assert 0.23 < dropped < 0.27
