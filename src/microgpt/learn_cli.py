"""Subcommands for the learning tools (`microgpt gradcheck`, `microgpt lesson`)."""

from __future__ import annotations

from typing import Any


def register(subparsers: Any) -> None:
    """Add the learning-tool subcommands to the `microgpt` parser."""
