"""`dinokit search`: the nearest images of query images (or of a text, with dino.txt) in an index."""
from __future__ import annotations

import json

from ..errors import EXIT_OK, UsageError
from .options import positive_int


def run(args) -> int:
    from ..data import list_images
    from ..features import search

    if bool(args.query) == bool(args.text):
        raise UsageError("give query images or --text (not both)")
    if args.text:
        queries = list(args.text)
        results = search(index=args.index, k=args.k, text=queries, device=args.device, nprobe=args.nprobe)
    else:
        queries = [str(p) for p in list_images(args.query)]
        results = search(args.query, args.index, k=args.k, device=args.device, nprobe=args.nprobe)
    if args.json:
        print(json.dumps([{"query": q, "hits": [{"path": h.path, "score": round(h.score, 6)} for h in hits]}
                          for q, hits in zip(queries, results)], indent=2))
    else:
        for q, hits in zip(queries, results):
            print(q)
            for rank, h in enumerate(hits, 1):
                print(f"  {rank:3d}  {h.score:.4f}  {h.path}")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("search", help="nearest images of a query image, or of a text with a dino.txt index")
    p.add_argument("query", nargs="*", help="query images, folders or text files of paths")
    p.add_argument("--text", action="append", help="a text query (an index of dino.txt embeddings); repeat for several")
    p.add_argument("--index", required=True, help="index folder (`dinokit index`)")
    p.add_argument("-k", type=positive_int, default=10, help="hits per query")
    p.add_argument("--nprobe", type=positive_int, help="IVF indexes: inverted lists visited per query (default: the build's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
