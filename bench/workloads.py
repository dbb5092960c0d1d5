"""What the benchmarks run, for each of the four engines.

An engine is one of:

- "original": `original_design.py`, the original microgpt's design (interpreted);
- "pure": microgpt with the interpreted `engine.py` (`MICROGPT_PURE=1`);
- "compiled": microgpt with the Cython-compiled engine (the default);
- "torch": `torch_design.py`, the same model in PyTorch (float64, one thread),
  if torch is installed. It has the training steps, the backward pass and
  the sampling, but no scalar graphs.

The pure and compiled engines are chosen by the environment, as in any use of
microgpt; `require_engine()` checks that the one that actually runs is the one
asked for, so a missing extension can never make "compiled" figures that were
measured on the pure engine.

Both benchmark scripts (`benchmarks.py`, `measure.py`) import this module, so
they time and measure exactly the same work.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENGINES = ("original", "pure", "compiled", "torch")
TORCH_INSTALL = "pip install --group bench (or pip install torch==2.13.0)"

# The model shapes of the training-step benchmarks.
CONFIGS: dict[str, dict[str, int]] = {
    "default": {"n_layer": 1, "n_embd": 16, "n_head": 4, "block_size": 16},
    "large": {"n_layer": 2, "n_embd": 64, "n_head": 4, "block_size": 32},
    "long": {"n_layer": 2, "n_embd": 32, "n_head": 4, "block_size": 64},
}
# Configs that train on documents of at least this many characters (the
# data's documents joined by spaces, see `joined_documents`), so that a
# step's document fills the context: a long context's cost is attention's.
MIN_DOCUMENT_LENGTH: dict[str, int] = {"long": 64}
SEED = 42
# Training runs this long in the benchmarks, so that the learning rate, which
# decays linearly to zero at the last step, stays positive however many steps
# pyperf times. The cost of a step does not depend on it.
BENCH_STEPS = 10**9

# Graph benchmarks: every graph has this many op nodes.
GRAPH_NODES = 10_000
DOT_LEN = 100  # a dot product of two length-100 vectors has 200 op nodes
DOT_ROWS = GRAPH_NODES // (2 * DOT_LEN)

# Sampling benchmark: names drawn from a model trained for a few steps.
SAMPLE_NAMES = 20
SAMPLE_TRAIN_STEPS = 5
SAMPLE_SEED = 7

# The original design sorts the graph with a recursive function. The graph of
# the large config is about 1,100 calls deep, past Python's default limit of
# 1,000, so the original design cannot train it without this.
ORIGINAL_RECURSION_LIMIT = 20_000


class EngineMismatch(SystemExit):
    """The engine that would run is not the one asked for."""


def pure_requested() -> bool:
    """What `microgpt.backend` reads: MICROGPT_PURE set to anything but '' or '0'."""
    return os.environ.get("MICROGPT_PURE", "").strip() not in ("", "0")


def engine_from_environment() -> str:
    return "pure" if pure_requested() else "compiled"


def require_engine(requested: str) -> dict[str, str]:
    """Check that `requested` is the engine that runs; returns facts about it
    (for pyperf metadata). Raises `EngineMismatch` with the reason otherwise."""
    if requested not in ENGINES:
        raise EngineMismatch(f"unknown engine {requested!r}; expected one of {', '.join(ENGINES)}")
    facts = {"bench_engine": requested}
    if requested == "original":
        facts["bench_engine_detail"] = "original design (bench/original_design.py, interpreted)"
        return facts
    if requested == "torch":
        return facts | torch_facts()
    if requested == "pure" and not pure_requested():
        raise EngineMismatch(
            "the pure engine was requested but MICROGPT_PURE is not set: "
            "run with MICROGPT_PURE=1 in the environment"
        )
    if requested == "compiled" and pure_requested():
        raise EngineMismatch(
            f"the compiled engine was requested but MICROGPT_PURE="
            f"{os.environ['MICROGPT_PURE']!r} selects the pure one: unset it"
        )
    import microgpt
    from microgpt import backend

    if requested == "compiled" and not microgpt.COMPILED:
        try:
            importlib.import_module("microgpt._engine")
            reason = "it imports, but microgpt did not select it"
        except ImportError as exc:
            reason = f"importing microgpt._engine fails: {exc}"
        raise EngineMismatch(
            "the compiled engine was requested but microgpt runs the pure-Python one "
            f"({reason}); reinstall with MICROGPT_REQUIRE_EXTENSIONS=1 pip install ."
        )
    if requested == "pure" and microgpt.COMPILED:
        raise EngineMismatch("the pure engine was requested but microgpt runs the compiled one")
    facts["bench_engine_detail"] = f"microgpt {microgpt.ENGINE_NAME} engine"
    facts["microgpt_compiled"] = str(microgpt.COMPILED)
    facts["microgpt_version"] = microgpt.__version__
    facts["microgpt_engine_module"] = backend.engine.__name__
    cython_version = getattr(backend.engine, "CYTHON_VERSION", None)
    if cython_version:
        facts["cython_version"] = str(cython_version)
    return facts


def torch_facts() -> dict[str, str]:
    """What runs as the torch engine; `EngineMismatch` if torch does not import."""
    try:
        import torch_design
    except ImportError as exc:
        raise EngineMismatch(
            f"the torch engine was requested but torch does not import ({exc}): {TORCH_INSTALL}"
        ) from None
    torch_design.single_thread()
    return {
        "bench_engine_detail": "PyTorch (bench/torch_design.py): float64, "
        f"{torch_design.torch.get_num_threads()} thread, whole sequence per step",
        "torch_version": torch_design.torch.__version__,
    }


# --- data --------------------------------------------------------------------


# The original microgpt's names file, where docs/reproducing.md expects it.
ORIGINAL_NAMES = Path(__file__).resolve().parent.parent.parent / "shared" / "parity" / "names.txt"


def default_data_path() -> str:
    """$MICROGPT_BENCH_DATA, else the original's names file if it is there,
    else microgpt's bundled dataset."""
    if os.environ.get("MICROGPT_BENCH_DATA"):
        return os.environ["MICROGPT_BENCH_DATA"]
    if ORIGINAL_NAMES.is_file():
        return str(ORIGINAL_NAMES)
    spec = importlib.util.find_spec("microgpt")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("no names file: pass --data PATH (microgpt is not installed)")
    return str(Path(list(spec.submodule_search_locations)[0]) / "data" / "names.txt")


def read_documents(path: str) -> list[str]:
    """One document per line, read exactly as the original microgpt reads its file."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f.read().strip().split("\n") if line.strip()]


def file_sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def joined_documents(docs: list[str], min_length: int) -> list[str]:
    """The documents, in order, joined by spaces into documents of at least
    `min_length` characters (what is left at the end is dropped)."""
    joined: list[str] = []
    current = ""
    for doc in docs:
        current = f"{current} {doc}" if current else doc
        if len(current) >= min_length:
            joined.append(current)
            current = ""
    return joined


def config_documents(docs: list[str], config: str) -> list[str]:
    """The documents a config trains on."""
    if config in MIN_DOCUMENT_LENGTH:
        return joined_documents(docs, MIN_DOCUMENT_LENGTH[config])
    return docs


def pinned_document(docs: list[str], seed: int = SEED) -> str:
    """The document every timed training step trains on.

    Timing steps on consecutive documents would mix in the spread of document
    lengths; instead every step trains on one typical document: the first, in
    the seeded training order that both designs use, whose length is the
    median length.
    """
    order = list(docs)
    random.Random(seed).shuffle(order)
    median = round(statistics.median(len(d) for d in docs))
    return next(d for d in order if len(d) == median)


# --- the training step -------------------------------------------------------


@dataclass
class Trainer:
    """A model that trains on the pinned document at every step."""

    step: Callable[[], float]  # one step: forward, backward, Adam
    loss_graph: Callable[[], Any]  # the loss of the pinned document (forward only)
    # (nodes, constant leaves) of a loss graph; None where there are no scalar nodes
    count_nodes: Callable[[Any], tuple[int, int]] | None
    backward: Callable[[Any], None]


def make_trainer(engine: str, docs: list[str], config: str) -> Trainer:
    settings = CONFIGS[config]
    docs = config_documents(docs, config)
    doc = pinned_document(docs)
    if engine == "original":
        return _original_trainer(docs, doc, settings)
    if engine == "torch":
        return _torch_trainer(docs, doc, settings)
    return _microgpt_trainer(docs, doc, settings)


def _microgpt_trainer(docs: list[str], doc: str, settings: dict[str, int]) -> Trainer:
    from microgpt.train import Run, TrainConfig

    run = Run.start(docs, TrainConfig(steps=BENCH_STEPS, seed=SEED), **settings)
    run.docs = [doc]  # every step trains on the pinned document

    def count_nodes(loss: Any) -> tuple[int, int]:
        return len(loss.topological_order()), 0  # a number operand makes no node

    return Trainer(
        step=run.train_step,
        loss_graph=lambda: run.loss(doc),
        count_nodes=count_nodes,
        backward=lambda loss: loss.backward(),
    )


def _original_trainer(docs: list[str], doc: str, settings: dict[str, int]) -> Trainer:
    from original_design import OriginalGPT

    sys.setrecursionlimit(max(sys.getrecursionlimit(), ORIGINAL_RECURSION_LIMIT))
    model = OriginalGPT(docs, seed=SEED, num_steps=BENCH_STEPS, **settings)
    model.docs = [doc]

    def count_nodes(loss: Any) -> tuple[int, int]:
        params = {id(p) for p in model.params}
        seen = {id(loss)}
        stack = [loss]
        constants = 0
        while stack:
            node = stack.pop()
            if not node._children and id(node) not in params:
                constants += 1  # a number operand wrapped in a leaf node
            for child in node._children:
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append(child)
        return len(seen), constants

    return Trainer(
        step=model.train_step,
        loss_graph=lambda: original_loss(model, doc),
        count_nodes=count_nodes,
        backward=lambda loss: loss.backward(),
    )


def _torch_trainer(docs: list[str], doc: str, settings: dict[str, int]) -> Trainer:
    from torch_design import TorchGPT

    from microgpt.train import Run, TrainConfig

    # microgpt's run gives the initial weights and the training settings
    model = TorchGPT(Run.start(docs, TrainConfig(steps=BENCH_STEPS, seed=SEED), **settings))
    model.docs = [doc]
    return Trainer(
        step=model.train_step,
        loss_graph=lambda: model.loss(doc),
        count_nodes=None,
        # the graph is kept so that the benchmark can run backward over it again
        backward=lambda loss: loss.backward(retain_graph=True),
    )


def original_loss(model: Any, doc: str) -> Any:
    """The loss graph that `OriginalGPT.train_step` builds for `doc`."""
    return model.loss(doc)


# --- graphs of scalar nodes --------------------------------------------------


def leaf_class(engine: str) -> Any:
    if engine == "original":
        from original_design import Node

        return Node
    import microgpt

    return microgpt.Value


def leaves(engine: str, n: int, low: float, high: float, seed: int = 0) -> list[Any]:
    rng = random.Random(seed)
    make = leaf_class(engine)
    return [make(rng.uniform(low, high)) for _ in range(n)]


def add_chain(xs: list[Any]) -> Any:
    """x0 + x1 + ... : one op node per addition, each on top of the last."""
    acc = xs[0]
    for x in xs[1:]:
        acc = acc + x
    return acc


def mul_chain(xs: list[Any]) -> Any:
    acc = xs[0]
    for x in xs[1:]:
        acc = acc * x
    return acc


def dots_with_sum(rows: list[list[Any]], xs: list[Any]) -> list[Any]:
    """Each row's dot product with xs, written as the original writes it."""
    return [sum(w * x for w, x in zip(row, xs)) for row in rows]


def dots_with_engine_dot(rows: list[list[Any]], xs: list[Any]) -> list[Any]:
    """The same dot products (the same nodes) with `engine.dot`."""
    from microgpt.backend import engine

    dot = engine.dot
    return [dot(row, xs) for row in rows]


def graph_builders(engine: str) -> dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]]:
    """name -> (make the inputs, build the graph from them): each build makes
    GRAPH_NODES op nodes. The torch engine has none: it has no scalar nodes."""
    if engine == "torch":
        return {}

    def chain_inputs(low: float, high: float) -> Callable[[], Any]:
        # GRAPH_NODES + 1 leaves make GRAPH_NODES ops; factors near 1 keep the
        # product of a long chain a normal float
        return lambda: leaves(engine, GRAPH_NODES + 1, low, high)

    def dot_inputs() -> tuple[list[list[Any]], list[Any]]:
        flat = leaves(engine, DOT_ROWS * DOT_LEN, -1.0, 1.0, seed=1)
        rows = [flat[i * DOT_LEN : (i + 1) * DOT_LEN] for i in range(DOT_ROWS)]
        return rows, leaves(engine, DOT_LEN, -1.0, 1.0, seed=2)

    builders: dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]] = {
        "graph_add_chain": (chain_inputs(-1.0, 1.0), add_chain),
        "graph_mul_chain": (chain_inputs(0.99, 1.01), mul_chain),
        "graph_dot_sum": (dot_inputs, lambda args: dots_with_sum(*args)),
    }
    if engine != "original":  # the original design has no dot(): it only uses sum()
        builders["graph_dot_engine"] = (dot_inputs, lambda args: dots_with_engine_dot(*args))
    return builders


# --- sampling ----------------------------------------------------------------


def make_sampler(engine: str, docs: list[str]) -> Callable[[], list[str]]:
    """Draws SAMPLE_NAMES names, the same ones at every call, from the default
    model trained for SAMPLE_TRAIN_STEPS steps (on the usual document order)."""
    if engine == "original":
        return _original_sampler(docs)
    if engine == "torch":
        return _torch_sampler(docs)
    from microgpt.sample import sample_many
    from microgpt.train import Run, TrainConfig

    run = Run.start(docs, TrainConfig(seed=SEED))
    for _ in range(SAMPLE_TRAIN_STEPS):
        run.train_step()
    model, tokenizer = run.model, run.tokenizer

    def draw() -> list[str]:
        return sample_many(model, tokenizer, random.Random(SAMPLE_SEED), SAMPLE_NAMES)

    return draw


def _original_sampler(docs: list[str]) -> Callable[[], list[str]]:
    """The original's sampling loop, over the original design's model: the
    same draws as microgpt's `sample_many`, so the same names."""
    from original_design import OriginalGPT

    model = OriginalGPT(docs, seed=SEED)  # 1000 steps, as TrainConfig's default
    for _ in range(SAMPLE_TRAIN_STEPS):
        model.train_step()

    def draw() -> list[str]:
        rng = random.Random(SAMPLE_SEED)
        return [model.sample(rng) for _ in range(SAMPLE_NAMES)]  # temperature 0.5, as microgpt's

    return draw


def _torch_sampler(docs: list[str]) -> Callable[[], list[str]]:
    """The same draws from the same model, trained and run by PyTorch."""
    from torch_design import TorchGPT

    from microgpt.train import Run, TrainConfig

    model = TorchGPT(Run.start(docs, TrainConfig(seed=SEED)))
    for _ in range(SAMPLE_TRAIN_STEPS):
        model.train_step()

    def draw() -> list[str]:
        rng = random.Random(SAMPLE_SEED)
        return [model.sample(rng) for _ in range(SAMPLE_NAMES)]

    return draw
