"""Limits: how much microgpt reads, downloads and builds before it refuses.

Every read is capped (a data file, a download, a checkpoint), a download has
an overall deadline, and a model's memory is estimated from its settings
before anything is built. The defaults are generous for what a scalar-autograd
GPT can train; each is a setting, and so a flag, to raise.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from microgpt.backend import COMPILED
from microgpt.errors import Name, Part, Text, UsageError
from microgpt.nn import GPTConfig, parameter_count
from microgpt.settings import Rule, Settings, format_size, setting

MiB = 2**20
SIZE = Rule("size", low=1)

# The node size: what one Value takes, its size (sys.getsizeof) rounded up to
# the 16-byte blocks of CPython's allocator (tests/test_limits.py checks it).
NODE_BYTES = 112 if COMPILED else 144
# Bytes per weight while training: the Value (and interpreted, the float
# objects of its value and gradient), its slot in the parameter list, Adam's
# two moments (C doubles), and the copies a checkpoint save makes (the
# numbers and their JSON text).
BYTES_PER_PARAMETER = 400
# A step's graph: a dot term keeps its weight's value (a C double compiled; a
# float object and its list slot interpreted) and references to its w and x
# (tuples that a linear's rows share, copies for a single dot); any other
# node is one Value (and interpreted, the float objects of its value,
# gradient and local gradients) and its place in the backward schedule.
# Over seven shapes of model, from 1 to 16 heads and context 8 to 64, the
# estimate came to 2.6-3.7 times (compiled) and 2.5-4.8 times (interpreted)
# the measured peak of a step (tracemalloc); 7.4-7.9 times at n_embd 128,
# context 8, where the weights, which are there before a step, are most.
BYTES_PER_TERM = 24 if COMPILED else 48
BYTES_PER_NODE = NODE_BYTES + (16 if COMPILED else 112)
BASELINE_BYTES = 64 * MiB  # the interpreter, the data and the rest
# A download deadline beyond a day is no deadline (and beyond ~292 years no
# timeout a thread can wait for).
MAX_DOWNLOAD_SECONDS = 86400.0


@dataclass(frozen=True)
class Limits(Settings):
    """Caps on what a command reads and builds."""

    max_data_size: int = setting(
        64 * MiB, "largest data file or download to read (e.g. 64M, 1G)", SIZE
    )
    max_checkpoint_size: int = setting(64 * MiB, "largest checkpoint file to read", SIZE)
    download_timeout: float = setting(
        60.0,
        "seconds a whole download may take (at most a day)",
        Rule("float", low=0.0, high=MAX_DOWNLOAD_SECONDS, low_open=True),
    )
    max_memory: int | None = setting(
        None,
        "largest estimated memory a model may need (off: this machine's memory)",
        Rule("size", low=1, optional=True),
    )

    def memory_limit(self) -> tuple[int | None, tuple[Part, ...]]:
        """The memory cap in bytes (None: there is none, as this machine's
        memory is unknown), and where it comes from."""
        if self.max_memory is not None:
            return self.max_memory, (MAX_MEMORY,)
        return physical_memory(), ("this machine's memory; ", MAX_MEMORY, " raises it")

    def memory_note(self) -> Text:
        """A note when no memory cap applies (empty otherwise)."""
        if self.memory_limit()[0] is not None:
            return Text()
        return Text(
            "note: this machine's memory is unknown, so models are not checked against it; ",
            MAX_MEMORY,
            " SIZE sets a cap",
        )


MAX_MEMORY = Name("max_memory")


def physical_memory() -> int | None:
    """The machine's memory in bytes; None where the system will not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # Windows has no sysconf
        return _windows_memory()


if sys.platform == "win32":
    import ctypes

    class _MemoryStatus(ctypes.Structure):
        """GlobalMemoryStatusEx's MEMORYSTATUSEX (Windows API)."""

        _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong)] + [
            (name, ctypes.c_ulonglong)
            for name in ("ullTotalPhys", "ullAvailPhys", "ullTotalPageFile", "ullAvailPageFile")
            + ("ullTotalVirtual", "ullAvailVirtual", "ullAvailExtendedVirtual")
        ]

    def _windows_memory() -> int | None:
        status = _MemoryStatus()
        status.dwLength = ctypes.sizeof(status)
        if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
            return None
        return int(status.ullTotalPhys)

else:

    def _windows_memory() -> int | None:
        return None


def graph_size(config: GPTConfig, positions: int) -> tuple[int, int]:
    """An upper estimate of one step's graph over `positions` tokens: the
    terms of its dot and sum nodes, and its other nodes.

    Each weight is one term per position. Attention (`engine.attend`) keeps,
    per pair of positions and head dimension, a key's and a value's value
    and references to them, counted as two terms; and per pair and head five
    numbers of its softmax, counted as four terms. The other nodes are about
    14 per width per layer and position (norms, residuals, the MLP's
    activations, attention's outputs, one node per dot) and for the output
    about 3 per token of the vocabulary; the estimate allows about twice as
    many.
    """
    c, n = config, positions
    terms = n * (c.n_layer * 12 * c.n_embd * c.n_embd + c.vocab_size * c.n_embd)
    pairs_twice = n * (n + 1)  # pairs of positions (a query and a key at or before it), x2
    terms += c.n_layer * (c.n_embd + 2 * c.n_head) * pairs_twice
    per_position = c.n_layer * (32 * c.n_embd + 16 * c.n_head) + 4 * c.n_embd + 8 * c.vocab_size
    nodes = n * (per_position + 32)
    return terms, nodes


def estimated_memory(config: GPTConfig, positions: int | None = None, batch: int = 1) -> int:
    """Bytes a training run of this model needs, estimated from the settings
    alone. `positions` is the longest sequence a step sees (default: the
    whole context); a step's graph holds `batch` such sequences."""
    n = config.block_size if positions is None else min(positions, config.block_size)
    terms, nodes = (batch * count for count in graph_size(config, n))
    return (
        BASELINE_BYTES
        + BYTES_PER_PARAMETER * parameter_count(config)
        + BYTES_PER_TERM * terms
        + BYTES_PER_NODE * nodes
    )


def check_fits(
    config: GPTConfig, limits: Limits, where: str, positions: int | None = None, batch: int = 1
) -> None:
    """Refuse a model whose estimated memory exceeds the limit, before building it.

    Called with `vocab_size=1` before the data is read, the estimate is a
    lower bound ("at least"); with the data's vocabulary, it is the estimate."""
    need = estimated_memory(config, positions, batch)
    cap, source = limits.memory_limit()
    if cap is not None and need > cap:
        tokens = f" and {config.vocab_size} tokens" if config.vocab_size > 1 else ""
        about = "about" if tokens else "at least"
        tokens += f", a batch of {batch}" if batch > 1 else ""
        raise UsageError(
            f"{where}: a model with n_layer {config.n_layer}, n_embd {config.n_embd}, "
            f"block_size {config.block_size}{tokens} has {about} "
            f"{parameter_count(config):,} parameters and needs {about} {format_size(need)} "
            f"of memory to train, more than the {format_size(cap)} allowed (",
            *source,
            ")",
        )
