"""The command line's parser: argparse, with each usage error one line,
blamed on the command it belongs to, so that it points to the right --help."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from microgpt.errors import one_line
from microgpt.status import EXIT_USAGE


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2) that
    points to the command's own --help; an unknown flag is reported by the
    (sub)command it was given to: `microgpt sample CKPT --bogus` points to
    `microgpt sample --help`, not to `microgpt --help`."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = super().parse_known_args(args, namespace)
        # A subcommand's parser returns first: the innermost command keeps its mark.
        parsed.__dict__.setdefault("_command_parser", self)
        return parsed, extras

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = self.parse_known_args(args, namespace)
        command: argparse.ArgumentParser = parsed.__dict__.pop("_command_parser")
        if extras:
            command.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def error(self, message: str) -> NoReturn:
        line = one_line(f"{self.prog}: error: {message} (see {self.prog} --help)")
        self.exit(EXIT_USAGE, line + "\n")
