"""The pyperf benchmarks of microgpt, of the original design and of PyTorch.

    MICROGPT_PURE=1 python bench/benchmarks.py --engine pure -o pure.json
    python bench/benchmarks.py --engine compiled -o compiled.json
    python bench/benchmarks.py --engine original -o original.json
    python bench/benchmarks.py --engine torch -o torch.json
    python -m pyperf compare_to original.json pure.json compiled.json torch.json --table

`--engine` says which engine the results are for; the script stops with an
error if another one would run (MICROGPT_PURE decides between pure and
compiled, as for any use of microgpt), or if torch is asked for and does not
import. `--group` picks a subset; every other
option is pyperf's (`--fast`, `-p`, `-n`, `-l`, `--append`, ...). `bench/run.py`
runs all of it with settings that fit the slow engines in a few minutes.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import pyperf
import workloads

GROUPS = {
    "graph": (
        "graph_add_chain",
        "graph_mul_chain",
        "graph_dot_engine",
        "graph_dot_sum",
        "backward_step_default",
    ),
    "step": ("train_step_default",),
    "large": ("train_step_large",),
    "long": ("train_step_long",),
    "sample": ("sample_20_names",),
}

_docs: list[str] | None = None  # read once per process, when a benchmark first needs it
_data_path = ""


def docs() -> list[str]:
    global _docs
    if _docs is None:
        _docs = workloads.read_documents(_data_path)
    return _docs


# --- timed functions: pyperf calls each with a loop count and gets seconds back.
# Each worker process runs one benchmark, so what a function sets up on its
# first call is built once per process and kept for its later calls.


def time_graph_build(
    make_inputs: Callable[[], Any], build: Callable[[Any], Any]
) -> Callable[[int], float]:
    """Times building the graph only: its inputs are made before, and it is
    freed after, the timed part."""
    state: dict[str, Any] = {}

    def run(loops: int) -> float:
        if "inputs" not in state:
            state["inputs"] = make_inputs()
        inputs = state["inputs"]
        total = 0.0
        for _ in range(loops):
            t0 = time.perf_counter()
            graph = build(inputs)
            total += time.perf_counter() - t0
            del graph
        return total

    return run


def time_backward(engine: str) -> Callable[[int], float]:
    """Times `backward()` over the loss graph of one default training step,
    built once, before the timed part (a backward pass only adds into the
    gradients, so it can be repeated on the same graph)."""
    state: dict[str, Any] = {}

    def run(loops: int) -> float:
        if "loss" not in state:
            trainer = workloads.make_trainer(engine, docs(), "default")
            state["trainer"] = trainer
            state["loss"] = trainer.loss_graph()
        backward = state["trainer"].backward
        loss = state["loss"]
        t0 = time.perf_counter()
        for _ in range(loops):
            backward(loss)
        return time.perf_counter() - t0

    return run


def time_repeated(make: Callable[[], Callable[[], object]]) -> Callable[[int], float]:
    """Times `loops` calls of the function `make()` returns (made once, untimed)."""
    state: dict[str, Callable[[], object]] = {}

    def run(loops: int) -> float:
        if "call" not in state:
            state["call"] = make()
        call = state["call"]
        t0 = time.perf_counter()
        for _ in range(loops):
            call()
        return time.perf_counter() - t0

    return run


def time_train_step(engine: str, config: str) -> Callable[[int], float]:
    """Times whole training steps: forward, backward, Adam, freeing the graph."""
    return time_repeated(lambda: workloads.make_trainer(engine, docs(), config).step)


def time_sampling(engine: str) -> Callable[[int], float]:
    return time_repeated(lambda: workloads.make_sampler(engine, docs()))


def benchmarks(engine: str) -> dict[str, tuple[Callable[[int], float], dict[str, Any]]]:
    """name -> (timed function, metadata) of every benchmark this engine has."""
    found: dict[str, tuple[Callable[[int], float], dict[str, Any]]] = {}
    for name, (make_inputs, build) in workloads.graph_builders(engine).items():
        metadata = {"graph_op_nodes": workloads.GRAPH_NODES}
        found[name] = (time_graph_build(make_inputs, build), metadata)
    found["backward_step_default"] = (time_backward(engine), {"model_config": "default"})
    for config in workloads.CONFIGS:
        found[f"train_step_{config}"] = (
            time_train_step(engine, config),
            {"model_config": config, **{k: v for k, v in workloads.CONFIGS[config].items()}},
        )
    found["sample_20_names"] = (time_sampling(engine), {"model_config": "default"})
    return found


def main() -> None:
    global _data_path
    parser = argparse.ArgumentParser(add_help=True)
    runner = pyperf.Runner(
        _argparser=parser,
        add_cmdline_args=lambda cmd, args: cmd.extend(
            ["--engine", args.engine, "--group", ",".join(args.group), "--data", args.data]
        ),
    )
    parser.add_argument(
        "--engine",
        choices=workloads.ENGINES,
        default=workloads.engine_from_environment(),
        help="the engine these results are for (default: the one MICROGPT_PURE selects); "
        "the run stops if another engine would run",
    )
    parser.add_argument(
        "--group",
        type=lambda text: [g for g in text.split(",") if g],
        default=list(GROUPS),
        help=f"comma-separated benchmark groups to run (default: all of {', '.join(GROUPS)})",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="the names file, one document per line (default: $MICROGPT_BENCH_DATA, else "
        "the original's names file if found, else microgpt's bundled dataset)",
    )
    args = runner.parse_args()
    unknown = sorted(set(args.group) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group(s): {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    args.data = args.data or workloads.default_data_path()
    if not os.path.isfile(args.data):
        parser.error(f"data file not found: {args.data} (pass --data PATH)")
    _data_path = args.data = os.path.abspath(args.data)

    # Workers get only the environment variables pyperf lets through: the
    # engine choice must be one of them.
    args.inherit_environ = sorted(set(args.inherit_environ or []) | {"MICROGPT_PURE"})
    facts = workloads.require_engine(args.engine)  # in the parent and in every worker
    runner.metadata.update(facts)
    runner.metadata["bench_data_sha256"] = workloads.file_sha256(args.data)
    runner.metadata["bench_document"] = workloads.pinned_document(docs())

    available = benchmarks(args.engine)
    for group in GROUPS:
        if group not in args.group:
            continue
        for name in GROUPS[group]:
            if name in available:
                func, metadata = available[name]
                runner.bench_time_func(name, func, metadata=metadata)


if __name__ == "__main__":
    main()
