"""Any change to a valid checkpoint is either refused cleanly (a one-line
UsageError naming the file) or loads into a checkpoint that works: hypothesis
mutates the JSON (values, keys, nesting) and the bytes (cuts, flips)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microgpt import checkpoint
from microgpt.errors import UsageError
from microgpt.sample import SamplingFailed, sample_many
from microgpt.train import NonFiniteLoss, Run, TrainConfig, documents_fingerprint

DOCS = ["anna", "bob", "carl", "dora", "eve"]
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, 2, 3, 4, 16, 27, 625, 2**32, 10**9, -1])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run = Run.start(DOCS, TrainConfig(steps=3), n_embd=4, n_head=2, block_size=4)
    run.train_step()
    path = tmp_path_factory.mktemp("valid") / "c.json"
    checkpoint.save(run, path, "names.txt", documents_fingerprint(DOCS))
    raw: dict[str, Any] = json.loads(path.read_text())
    return raw


def containers(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every list and object in the tree."""
    found = [path]
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, child in items:
        if isinstance(child, (dict, list)):
            found += containers(child, (*path, key))
    return found


def mutate(raw: Any, draw: Any) -> Any:
    raw = json.loads(json.dumps(raw))  # a copy
    where = draw(st.sampled_from(containers(raw)))
    node = raw
    for key in where:
        node = node[key]
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    action = draw(st.sampled_from(["replace", "delete", "insert"] if keys else ["insert"]))
    if action == "replace":
        node[draw(st.sampled_from(keys))] = draw(json_values)
    elif action == "delete":
        del node[draw(st.sampled_from(keys))]
    elif isinstance(node, dict):
        node[draw(st.text(max_size=6))] = draw(json_values)
    else:
        node.insert(draw(st.integers(0, len(node))), draw(json_values))
    return raw


def assert_clean(path: Path) -> None:
    """Loads and works, or is refused with one line naming the file."""
    try:
        ckpt = checkpoint.load(path)
    except UsageError as exc:
        message = str(exc)
        assert str(path) in message and "\n" not in message and len(message) < 1000, message
        return
    run = ckpt.run(DOCS)
    assert run.step == ckpt.step and len(run.model.params) == len(ckpt.adam_m)
    try:
        names = sample_many(run.model, run.tokenizer, ckpt.rng(), 2)
        assert len(names) == 2
    except SamplingFailed:
        pass  # finite but absurd weights: a clean failure
    if not run.done:
        try:
            loss = run.train_step()
            assert math.isfinite(loss)
        except NonFiniteLoss:
            pass


@SETTINGS
@given(data=st.data())
def test_mutated_json_is_refused_or_loads(valid: dict[str, Any], tmp_path: Path, data: Any) -> None:
    path = tmp_path / "mutated.json"
    mutated = mutate(valid, data.draw)
    path.write_text(json.dumps(mutated), encoding="utf-8")  # NaN/Infinity written as such
    assert_clean(path)


@SETTINGS
@given(data=st.data())
def test_mutated_bytes_are_refused_or_load(
    valid: dict[str, Any], tmp_path: Path, data: Any
) -> None:
    text = json.dumps(valid, separators=(",", ":")).encode()
    cut = data.draw(st.integers(0, len(text)))
    flips = data.draw(
        st.lists(st.tuples(st.integers(0, len(text) - 1), st.integers(0, 255)), max_size=3)
    )
    raw = bytearray(text[:cut] if data.draw(st.booleans()) else text)
    for position, byte in flips:
        if position < len(raw):
            raw[position] = byte
    path = tmp_path / "bytes.json"
    path.write_bytes(bytes(raw))
    assert_clean(path)


def test_the_unmutated_checkpoint_loads(valid: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "same.json"
    path.write_text(json.dumps(valid), encoding="utf-8")
    ckpt = checkpoint.load(path)
    assert ckpt.step == 1
    assert sample_many(ckpt.model(), ckpt.tokenizer, random.Random(0), 2)
