"""`dinokit dedup`: groups of near-duplicate images in an embeddings file."""
from __future__ import annotations

import json

from ..errors import EXIT_OK


def run(args) -> int:
    from ..features import dedup

    groups = dedup(args.embeddings, threshold=args.threshold)
    if args.json:
        print(json.dumps({"threshold": args.threshold, "groups": groups}, indent=2))
    else:
        for i, g in enumerate(groups, 1):
            print(f"group {i} ({len(g)} images):")
            for p in g:
                print(f"  {p}")
        print(f"{len(groups)} groups of near-duplicates (cosine >= {args.threshold})")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("dedup", help="groups of near-duplicate images in an embeddings file")
    p.add_argument("embeddings")
    p.add_argument("--threshold", type=float, default=0.95, help="cosine similarity (default 0.95)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
