"""Memory stays flat over training: no step's graph outlives the step.

Measured with tracemalloc, which sees the nodes of both engines (the compiled
Value is allocated through Python's object allocator, so it is traced too;
it has no `__weakref__` and is not GC-tracked, so weakrefs and
`gc.get_objects()` cannot count it). The cyclic garbage collector stays off
while measuring: a step's graph has no reference cycles, so reference counting
alone must free it, and a cycle would show up as growth.
"""

from __future__ import annotations

import gc
import tracemalloc
from array import array
from dataclasses import dataclass, field

import pytest

import microgpt
from microgpt.train import Run, TrainConfig

# of different lengths, so that consecutive graphs differ in size: a run that
# kept the last step's graph alive would show as retained memory too
DOCS = ["anna", "bob", "emma", "otto", "ava", "eve", "hannah", "ada", "christopher", "maximilian"]
WARM_UP = 10
STEPS = 200 if microgpt.COMPILED else 60  # the interpreted engine is ~20x slower
FLAT_BOUND = 64 * 1024  # bytes; one step's graph is over 500 KB here


@dataclass
class Measured:
    after_warm_up: int = 0
    at_end: int = 0
    # per measured step: (bytes still allocated after it, bytes allocated at its peak)
    steps: list[tuple[int, int]] = field(default_factory=list)


@pytest.fixture(scope="module")
def measured() -> Measured:
    run = Run.start(DOCS, TrainConfig(steps=STEPS, seed=1), n_embd=8, n_head=2, block_size=8)
    result = Measured()
    # preallocated C arrays, so that recording a number allocates nothing traced
    retained, peaks = array("q", [0]) * (STEPS - WARM_UP), array("q", [0]) * (STEPS - WARM_UP)
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        for _ in range(WARM_UP):
            run.train_step()
        result.after_warm_up = tracemalloc.get_traced_memory()[0]
        for i in range(STEPS - WARM_UP):
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            run.train_step()
            current, peak = tracemalloc.get_traced_memory()
            retained[i] = current - before
            peaks[i] = peak - before
        result.at_end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        if gc_was_enabled:
            gc.enable()
    result.steps = list(zip(retained, peaks))
    return result


def test_memory_is_flat_over_training(measured: Measured) -> None:
    growth = measured.at_end - measured.after_warm_up
    assert growth < FLAT_BOUND, (
        f"traced memory grew by {growth} bytes over {STEPS - WARM_UP} steps "
        f"({measured.after_warm_up} after the warm-up, {measured.at_end} at the end)"
    )


def test_no_value_of_a_step_outlives_it(measured: Measured) -> None:
    smallest_graph = min(peak for _, peak in measured.steps)
    # a step's graph takes about 280 KB at the least (a short name)
    assert smallest_graph > 100_000, "the measurement did not see the step's graph"
    for i, (retained, peak) in enumerate(measured.steps, start=WARM_UP + 1):
        # what a step leaves behind is a tiny fraction of what its graph took
        assert retained < peak / 100, f"step {i} kept {retained} of {peak} bytes"
