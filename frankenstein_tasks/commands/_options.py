"""Options shared by several commands, defined once so they read and behave the same everywhere."""

from __future__ import annotations

import argparse
from typing import Any

CUTS_HELP = "block cuts: early [0,C1), mid [C1,C2), late [C2,n) (default: thirds)"


def add_cuts(parser: Any, purpose: str = "") -> None:
    """`--cuts C1 C2` (two integers; None when absent). `purpose` says what the cuts are for."""
    parser.add_argument(
        "--cuts", type=int, nargs=2, metavar=("C1", "C2"), help=f"{purpose + ': ' if purpose else ''}{CUTS_HELP}"
    )


def cuts_of(args: argparse.Namespace) -> tuple[int, int] | None:
    return tuple(args.cuts) if args.cuts else None  # type: ignore[return-value]
