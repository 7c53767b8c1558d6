"""`dinokit dedup`: groups of near-duplicate images in an embeddings file."""
from __future__ import annotations

import json

from ..errors import EXIT_OK
from .options import report_unusable


def run(args) -> int:
    from ..features import dedup

    unusable: list[str] = []
    groups = dedup(args.embeddings, threshold=args.threshold, unusable=unusable)
    report_unusable(len(unusable), (unusable or [""])[0])
    if args.json:
        print(json.dumps({"threshold": args.threshold, "groups": groups, "unusable": unusable}, indent=2))
    else:
        for i, g in enumerate(groups, 1):
            print(f"group {i} ({len(g)} images):")
            for p in g:
                print(f"  {p}")
        print(f"{len(groups)} groups of near-duplicates (cosine >= {args.threshold})")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("dedup", help="groups of near-duplicate images in an embeddings file")
    p.add_argument("embeddings", help="embeddings folder or Parquet file (`dinokit embed`)")
    p.add_argument("--threshold", type=float, default=0.95, help="least cosine similarity of two copies")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
