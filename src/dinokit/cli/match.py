"""`dinokit match`: dense correspondences between two images."""
from __future__ import annotations

import math

from ..errors import EXIT_OK
from .options import non_negative_int, positive_int


def run(args) -> int:
    from ..dense import write_match

    m = write_match(args.image_a, args.image_b, args.output, args.model, max_matches=args.max_matches,
                    short_side=args.short_side, device=args.device)
    print(f"{len(m.scores)} mutual nearest-neighbour matches ({score_range(m.scores)}) → {args.output}")
    return EXIT_OK


def score_range(scores) -> str:
    """'cosine 0.9960–0.9996': as many decimals as it takes for the two ends to differ (at least 2)."""
    if len(scores) == 0:
        return "no matches"
    low, high = float(min(scores)), float(max(scores))
    digits = 2 if high - low >= 0.01 else min(8, 1 + math.ceil(-math.log10(max(high - low, 1e-9))))
    return f"cosine {low:.{digits}f}–{high:.{digits}f}"


def register(sub) -> None:
    p = sub.add_parser("match", help="dense correspondences: mutual nearest-neighbour patch matches as lines")
    p.add_argument("image_a", help="first image")
    p.add_argument("image_b", help="second image")
    p.add_argument("-o", "--output", required=True, help="output picture (PNG)")
    p.add_argument("--model", default="dinov2_vits14",
                   help="backbone: published name, Hugging Face id, folder or checkpoint file")
    p.add_argument("--max-matches", type=positive_int, default=100, help="best mutual matches drawn")
    p.add_argument("--short-side", type=non_negative_int, default=448, help="resize the shorter side first (0: keep the size)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.set_defaults(func=run)
