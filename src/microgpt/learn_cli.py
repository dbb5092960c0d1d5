"""Subcommands for the learning tools (`microgpt gradcheck`, `microgpt lesson`)."""

from __future__ import annotations

import argparse
from typing import Any

from microgpt import lessons
from microgpt.data import load_documents
from microgpt.errors import UsageError
from microgpt.gradcheck import DEFAULT_EPS, DEFAULT_TOLERANCE, gradcheck_model
from microgpt.train import Run, TrainConfig

# A small model, so the check is quick; the maths is the same at any size.
GRADCHECK_MODEL = {"n_embd": 8, "n_head": 2, "block_size": 8}
GRADCHECK_NAMES = 4


def register(subparsers: Any) -> None:
    """Add the learning-tool subcommands to the `microgpt` parser."""
    g = subparsers.add_parser(
        "gradcheck",
        help="check the GPT's gradients against finite differences",
        description="Compare backward() with finite differences on sampled weights of a small "
        "GPT's loss on a few names. Prints a table and PASS or FAIL (exit status 0 or 1).",
    )
    g.add_argument(
        "--per-matrix", type=int, default=2, help="weights checked per weight matrix (2)"
    )
    g.add_argument("--seed", type=int, default=0, help="seed of the model and the sample (0)")
    g.add_argument("--eps", type=float, default=DEFAULT_EPS, help=f"nudge size ({DEFAULT_EPS:g})")
    g.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help=f"largest relative error that passes ({DEFAULT_TOLERANCE:g})",
    )
    g.set_defaults(func=cmd_gradcheck)

    lesson = subparsers.add_parser(
        "lesson",
        help="run a lesson (without a name: list them)",
        description="Run a lesson; arguments after its name go to the lesson "
        "(see: microgpt lesson NAME --help).",
    )
    lesson.add_argument("name", nargs="?", help="the lesson (leave out to list them)")
    lesson.add_argument("args", nargs=argparse.REMAINDER, help="the lesson's own arguments")
    lesson.set_defaults(func=cmd_lesson)


def cmd_gradcheck(args: argparse.Namespace) -> int:
    for flag, value in (("--per-matrix", args.per_matrix), ("--eps", args.eps)):
        if not value > 0:
            raise UsageError(f"{flag} must be positive, got {value}")
    if not args.tolerance >= 0:
        raise UsageError(f"--tolerance must be 0 or more, got {args.tolerance}")
    run = Run.start(load_documents(), TrainConfig(seed=args.seed), **GRADCHECK_MODEL)
    names = run.docs[:GRADCHECK_NAMES]

    def loss() -> Any:
        # the mean of the names' losses, as a batch of them would be trained
        return sum((run.loss(name) for name in names[1:]), run.loss(names[0])) / len(names)

    print(
        f"gradcheck: GPT {GRADCHECK_MODEL}, loss on {', '.join(names)}; "
        f"{args.per_matrix} weight(s) per matrix, eps {args.eps:g}"
    )
    result = gradcheck_model(
        run.model.state_dict, loss, args.per_matrix, args.seed, args.eps, args.tolerance
    )
    print(result.table("parameter"))
    return 0 if result.passed else 1


def cmd_lesson(args: argparse.Namespace) -> int:
    if args.name is None:
        print(lessons.listing())
        return 0
    return lessons.run(args.name, args.args)
