"""The compiled and the interpreted engine train to the same bits.

Each engine trains in its own process (MICROGPT_PURE=1 or not), prints every
step's loss and every final weight as `float.hex`, and the two are compared.
Both engines run in either suite run; the test is skipped only when the
compiled extension is not installed in a MICROGPT_PURE=1 run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from conftest import PURE_REQUESTED

CHILD = textwrap.dedent(
    """
    import json, sys
    import microgpt
    from microgpt.data import load_documents
    from microgpt.train import Run, TrainConfig

    train, model = json.loads(sys.argv[1])
    run = Run.start(load_documents(), TrainConfig(**train), **model)
    losses = [run.train_step().hex() for _ in range(train["steps"])]
    print(json.dumps({
        "compiled": microgpt.COMPILED,
        "engine": type(microgpt.Value(0.0)).__module__,
        "losses": losses,
        "weights": [p.data.hex() for p in run.model.params],
        "rng": run.rng.random().hex(),
    }))
    """
)

SMALL: dict[str, Any] = {"n_layer": 2, "n_embd": 8, "n_head": 2, "block_size": 8}
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "rmsnorm-relu": ({"steps": 15, "seed": 7}, SMALL),
    "layernorm-gelu-clip-dropout": (
        {"steps": 15, "seed": 11, "grad_clip": 0.5, "lr": 0.02},
        {**SMALL, "norm": "layernorm", "activation": "gelu", "dropout": 0.1},
    ),
}


def train_in_child(pure: bool, train: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "MICROGPT_PURE"}
    if pure:
        env["MICROGPT_PURE"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([train, model])],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"child (pure={pure}) exited {proc.returncode}:\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.mark.parametrize("case", CASES)
def test_pure_and_compiled_train_to_identical_bits(case: str) -> None:
    if PURE_REQUESTED and importlib.util.find_spec("microgpt._engine") is None:
        pytest.skip("the compiled extension is not installed (MICROGPT_PURE=1 run)")
    train, model = CASES[case]
    pure = train_in_child(True, train, model)
    compiled = train_in_child(False, train, model)
    # each child ran the engine it was asked for (no silent fallback)
    assert (pure["compiled"], pure["engine"]) == (False, "microgpt.engine")
    assert (compiled["compiled"], compiled["engine"]) == (True, "microgpt._engine")

    assert len(pure["losses"]) == train["steps"]
    for step, (p, c) in enumerate(zip(pure["losses"], compiled["losses"]), start=1):
        assert p == c, f"step {step}: pure {p} != compiled {c}"
    assert len(pure["weights"]) == len(compiled["weights"])
    differ = [i for i, (p, c) in enumerate(zip(pure["weights"], compiled["weights"])) if p != c]
    assert not differ, f"{len(differ)} final weights differ, first at index {differ[0]}"
    assert pure["rng"] == compiled["rng"]  # the same draws from the random stream
