"""The engine under test gives the original design's numbers on this machine, bit for bit.

The golden file (test_parity.py) holds the original's numbers as Linux with
glibc computes them; another C library may round exp, log or pow differently
in the last bit, and then the original itself gives other numbers. What must
hold on every platform a wheel is built for is that microgpt computes what the
original's arithmetic, run here, computes: bench/original_design.py (the
original's design, interpreted by this Python with this C library) is trained
side by side with microgpt, and every step's loss, every final weight and the
names sampled after training must be the same bits. Nothing from outside the
repository is needed (the bundled names are the data), so the wheels workflow
runs this on every runner.

Sizes: the original design is slow (about 150 ms a step at the default shape
on a quiet x86_64 core), so 100 steps at the default shape and 100 at a small
two-layer one, some 20 seconds of CPU. That is enough: every step runs every
compiled operation (dot and linear, exp, log, pow, relu, the Adam update), a
last-bit difference anywhere feeds the next step's weights and shows in a loss
within a few steps (a build with fused multiply-adds differs from step 12 of
the golden run), and the final weights are compared too.
"""

from __future__ import annotations

from typing import Any

import pytest
from original_design import OriginalGPT

from microgpt.data import load_documents
from microgpt.sample import sample_many
from microgpt.train import Run, TrainConfig

SAMPLES = 20
# name: (steps, seed, model settings); the original design has the default
# architecture (RMSNorm, ReLU) with any shape.
CASES: dict[str, tuple[int, int, dict[str, Any]]] = {
    "default": (100, 42, {}),
    "two-layer-small": (100, 7, {"n_layer": 2, "n_embd": 8, "n_head": 2, "block_size": 8}),
}


def differences(kind: str, ours: list[float], theirs: list[float]) -> str:
    """'' if the lists are the same bits, else where they first differ."""
    assert len(ours) == len(theirs), f"{kind}: {len(ours)} here, {len(theirs)} in the original"
    bad = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a.hex() != b.hex()]
    if not bad:
        return ""
    first = bad[0]
    here, there = ours[first].hex(), theirs[first].hex()
    return f"{len(bad)} of {len(ours)} {kind} differ, first #{first}: {here} != {there}"


@pytest.mark.parametrize("case", list(CASES))
def test_training_and_sampling_are_the_original_designs_bits(case: str) -> None:
    steps, seed, settings = CASES[case]
    docs = load_documents()
    run = Run.start(docs, TrainConfig(steps=steps, seed=seed), **settings)
    original = OriginalGPT(docs, seed=seed, num_steps=steps, **settings)
    assert run.docs == original.docs

    ours = [run.train_step() for _ in range(steps)]
    theirs = [original.train_step() for _ in range(steps)]
    assert not differences("losses (by step)", ours, theirs)
    weights = [p.data for p in run.model.params], [p.data for p in original.params]
    assert not differences("final weights", *weights)
    # drawn right after training from the run's own random stream, as the original does
    names = sample_many(run.model, run.tokenizer, run.rng, SAMPLES, temperature=0.5)
    assert names == [original.sample(original.rng) for _ in range(SAMPLES)]
