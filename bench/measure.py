"""Graph size and peak memory of one training step, for one engine and config.

    python bench/measure.py --engine original --config default
    MICROGPT_PURE=1 python bench/measure.py --engine pure --config large
    python bench/measure.py --engine torch --config default

Prints one JSON object. Run it in a fresh process per engine and config (as
`run.py` does): the resident-memory figure is only meaningful there.

- `nodes`: the nodes of the loss graph of one step (microgpt: the length of
  `loss.topological_order()`; the original design: every distinct node
  reachable from the loss, found the same way), `constant_leaves` of which
  are numbers wrapped in leaf nodes (the original design only); both None
  for torch, whose graph is of tensor operations, not scalar nodes;
- `rss_delta_bytes`: how much the peak resident memory of the process grew
  during its first training step, and `first_step_gc_seconds`: how much of
  that step the cyclic garbage collector ran;
- `tracemalloc_peak_bytes`: the most memory allocated at once, beyond what
  was allocated before, during a later training step (under tracemalloc,
  which also slows the step down; its own bookkeeping is not counted). Not
  for torch: tracemalloc sees only Python's allocator, not PyTorch's;
- `first_loss`: the loss of the first step, and with `--samples` the names
  the sampling benchmark draws, so that the engines can be checked to
  compute the same numbers.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
import tracemalloc

import workloads


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class GCTimer:
    """Adds up the time the cyclic garbage collector runs while in use."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start

    def __enter__(self) -> GCTimer:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def measure(
    engine: str, config: str, data: str, use_tracemalloc: bool, samples: bool
) -> dict[str, object]:
    docs = workloads.read_documents(data)
    trainer = workloads.make_trainer(engine, docs, config)
    result: dict[str, object] = {"engine": engine, "config": config}
    result["document"] = workloads.pinned_document(docs)

    gc.collect()
    gc_timer = GCTimer()
    rss_before = max_rss_bytes()
    t0 = time.perf_counter()
    with gc_timer:
        result["first_loss"] = repr(trainer.step())
    result["first_step_seconds"] = time.perf_counter() - t0
    result["rss_delta_bytes"] = max_rss_bytes() - rss_before
    result["first_step_gc_seconds"] = gc_timer.seconds

    if use_tracemalloc and engine != "torch":
        gc.collect()  # the original design leaves each step's graph to the collector
        tracemalloc.start()
        trainer.step()
        result["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

    result["nodes"] = result["constant_leaves"] = None
    if trainer.count_nodes is not None:
        gc.collect()
        loss = trainer.loss_graph()
        result["nodes"], result["constant_leaves"] = trainer.count_nodes(loss)
        del loss
        gc.collect()

    if samples:
        result["samples"] = workloads.make_sampler(engine, docs)()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=workloads.ENGINES, required=True)
    parser.add_argument("--config", choices=list(workloads.CONFIGS), default="default")
    parser.add_argument("--data", default=None, help="the names file (default: as benchmarks.py)")
    parser.add_argument(
        "--no-tracemalloc",
        action="store_true",
        help="skip the (slow) tracemalloc step; measure resident memory only",
    )
    parser.add_argument(
        "--samples", action="store_true", help="also draw the sampling benchmark's names"
    )
    args = parser.parse_args()
    facts = workloads.require_engine(args.engine)
    data = args.data or workloads.default_data_path()
    result = measure(args.engine, args.config, data, not args.no_tracemalloc, args.samples)
    result.update(facts)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
