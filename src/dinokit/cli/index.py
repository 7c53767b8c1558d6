"""`dinokit index`: a FAISS index (cosine) from embeddings."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..embeddings import INDEX_FILE, INDEX_KINDS
from ..errors import EXIT_OK
from .options import report_unusable


def run(args) -> int:
    from ..features import build_index

    replaced = (Path(args.output) / INDEX_FILE).is_file()
    meta = build_index(args.embeddings, args.output, kind=args.kind)
    report_unusable(meta["unusable"], (meta["unusable_examples"] or [""])[0])
    if replaced:
        print(f"replaced the index that was at {args.output}", file=sys.stderr)
    print(json.dumps(meta, indent=2) if args.json else f"indexed {meta['count']} embeddings ({meta['kind']}) → {args.output}")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("index", help="build a FAISS index (cosine) from embeddings")
    p.add_argument("embeddings", help="embeddings folder or Parquet file (`dinokit embed`)")
    p.add_argument("-o", "--output", required=True, help="index folder")
    p.add_argument("--kind", default="auto", choices=INDEX_KINDS, help="auto: exact below 100k vectors")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
