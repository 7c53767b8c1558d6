"""`dinokit match`: dense correspondences between two images."""
from __future__ import annotations

from ..errors import EXIT_OK
from .options import non_negative_int, positive_int


def run(args) -> int:
    from ..dense import write_match

    m = write_match(args.image_a, args.image_b, args.output, args.model, max_matches=args.max_matches,
                    short_side=args.short_side, device=args.device)
    print(f"{len(m.scores)} mutual nearest-neighbour matches (cosine {m.scores.min() if len(m.scores) else 0:.2f}–"
          f"{m.scores.max() if len(m.scores) else 0:.2f}) → {args.output}")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("match", help="dense correspondences: mutual nearest-neighbour patch matches as lines")
    p.add_argument("image_a")
    p.add_argument("image_b")
    p.add_argument("-o", "--output", required=True, help="output picture (PNG)")
    p.add_argument("--model", default="dinov2_vits14")
    p.add_argument("--max-matches", type=positive_int, default=100)
    p.add_argument("--short-side", type=non_negative_int, default=448)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)
