"""`dinokit index`: a FAISS index (cosine) from embeddings."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..embeddings import INDEX_FILE, INDEX_KINDS
from ..errors import EXIT_OK
from .options import is_main_process, positive_int, report_unusable


def run(args) -> int:
    from ..features import build_index

    replaced = (Path(args.output) / INDEX_FILE).is_file()
    ivfpq = {"nlist": args.nlist, "m": args.m, "opq": args.opq, "nprobe": args.nprobe, "progress": not args.json}
    meta = build_index(args.embeddings, args.output, kind=args.kind, **ivfpq)
    if not is_main_process():
        return EXIT_OK
    report_unusable(meta["unusable"], (meta["unusable_examples"] or [""])[0])
    if replaced:
        print(f"replaced the index that was at {args.output}", file=sys.stderr)
    recall = f", recall@10 {meta['recall@10']} at nprobe {meta['nprobe']}" if meta.get("recall@10") is not None else ""
    line = f"indexed {meta['count']} embeddings ({meta['kind']}{recall}) → {args.output}"
    print(json.dumps(meta, indent=2) if args.json else line)
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("index", help="build a FAISS index (cosine) from embeddings")
    p.add_argument("embeddings", help="embeddings folder or Parquet file (`dinokit embed`)")
    p.add_argument("-o", "--output", required=True, help="index folder")
    p.add_argument("--kind", default="auto", choices=INDEX_KINDS,
                   help="auto: exact below 100k vectors, IVF up to 4 GiB of vectors, ivfpq beyond; ivfpq: larger than "
                        "memory (built file by file, merged on disk, memory-mapped; under torchrun each rank fills its share)")
    p.add_argument("--nlist", type=positive_int, help="ivfpq: inverted lists (default: the power of two nearest √N)")
    p.add_argument("--subquantizers", "--m", dest="m", type=positive_int,
                   help="ivfpq: sub-quantizers m, a byte per vector each, a divisor of the dimension (default D/8); "
                        "--m is refused under torchrun, whose options it abbreviates")
    p.add_argument("--opq", action="store_true", help="ivfpq: rotate the vectors first (OPQ): better recall, slower build")
    p.add_argument("--nprobe", type=positive_int, default=16, help="ivfpq: lists visited per query (default 16)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
