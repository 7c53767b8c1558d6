"""Arguments several commands share, with their choices taken from the library's own constants."""
from __future__ import annotations

import argparse
import os
import sys

from ..models.config import INTERPOLATE_MODES


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


positive_int = _int_at_least(1)  # counts and sizes: -k, --batch-size, --shard-size, --target ...
non_negative_int = _int_at_least(0)  # --num-workers, --augment, --short-side (0: off)


def positive_float(text: str) -> float:
    """Durations and rates: --flush-seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


positive_float.__name__ = "float"


def report_unusable(count: int, example: str) -> None:
    """The line index, dedup and curate print when they left out embeddings no similarity can use."""
    if count:
        print(f"left out {count} embeddings that are NaN, infinite or all zeros (e.g. {example})", file=sys.stderr)


def add_interpolate_mode(parser) -> None:
    parser.add_argument("--interpolate-mode", choices=INTERPOLATE_MODES,
                        help="how position embeddings are resized: as the official code (default), transformers or timm")


def is_main_process() -> bool:
    """Under torchrun only rank 0 prints results; the one place the CLI reads RANK."""
    return int(os.environ.get("RANK", 0)) == 0
