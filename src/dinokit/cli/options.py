"""Arguments several commands share, with their choices taken from the library's own constants."""
from __future__ import annotations

import os

from ..models.pos_embed import INTERPOLATE_MODES


def add_interpolate_mode(parser) -> None:
    parser.add_argument("--interpolate-mode", choices=INTERPOLATE_MODES,
                        help="how position embeddings are resized: as the official code (default), transformers or timm")


def is_main_process() -> bool:
    """Under torchrun only rank 0 prints results; the one place the CLI reads RANK."""
    return int(os.environ.get("RANK", 0)) == 0
