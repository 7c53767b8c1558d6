"""`dinokit curate`: data curation steps and the pipeline."""
from __future__ import annotations

import json
import os

from ..curate import KEEP, MODES, STRATEGIES
from ..embeddings import INDEX_KINDS
from ..errors import EXIT_OK
from .options import is_main_process, positive_int, report_unusable


def run(args) -> int:
    from .. import curate

    if args.step == "pipeline":
        report = curate.run_pipeline(curate.load_pipeline(args.config), args.output, progress=not args.json)
        _print_unusable(report, args.json)
        if args.json:
            print(json.dumps({k: v for k, v in report.items() if k != "duplicate_groups"}, indent=2, default=str))
        else:
            for s in report["steps"]:
                print(f"{s['step']:>13}: {s['input']} → {s['kept']} ({s['removed']} removed) in {s['seconds']}s"
                      + (" (reused)" if s.get("resumed") else ""))
            print(f"{report['output_count']} images → {report['paths']}; report: "
                  f"{os.path.join(os.path.dirname(report['paths']), 'report.md')}")
        return EXIT_OK
    options = {k: v for k, v in vars(args).items() if k in curate.step_settings(args.step) and v is not None}
    s = curate.run_step(args.step, args.embeddings, args.output, progress=not args.json, **options)
    if not is_main_process():
        return EXIT_OK
    _print_unusable(s, args.json)
    if args.json:
        print(json.dumps(s, indent=2, default=str))
    else:
        print(f"{args.step}: {s['input']} → {s['kept']} images ({s['removed']} removed) → {args.output}"
              + (f"; removed images with the reason: {s['removed_file']}" if "removed_file" in s else ""))
        for key in ("duplicate_groups", "nearest_neighbour_similarity", "entropy_before", "entropy_after"):
            if key in s:
                print(f"  {key}: {s[key]}")
    return EXIT_OK


def _print_unusable(summary: dict, as_json: bool) -> None:
    if not as_json:
        report_unusable(summary.get("unusable_embeddings", 0), (summary.get("unusable_examples") or [""])[0])


def register(sub) -> None:
    p = sub.add_parser("curate", help="data curation: dedup, decontaminate, retrieve, balance, pipeline")
    cu = p.add_subparsers(dest="step", required=True)
    q = cu.add_parser("pipeline", help="run the steps of a YAML file; writes paths.txt, curated.parquet, report")
    q.add_argument("config", help="YAML: pool, output, steps (see docs/curation.md)")
    q.add_argument("-o", "--output", help="output folder (default: the YAML's output)")
    q.add_argument("--json", action="store_true", help="print the result as JSON")
    q.set_defaults(func=run)
    for name, text in (("dedup", "keep one image per group of near-duplicates"),
                       ("decontaminate", "remove near-duplicates of protected (evaluation) images"),
                       ("retrieve", "keep the pool images nearest to seed images"),
                       ("balance", "hierarchical k-means, then a sample balanced across clusters")):
        q = cu.add_parser(name, help=text)
        q.add_argument("embeddings", nargs="+",
                       help="embeddings (`dinokit embed` output folder or Parquet)")
        q.add_argument("-o", "--output", required=True, help="Parquet file of the kept images")
        q.add_argument("--json", action="store_true", help="print the result as JSON")
        q.set_defaults(func=run)
        if name in ("dedup", "decontaminate"):
            q.add_argument("--threshold", type=float, help="cosine similarity of a near-duplicate (default 0.95)")
        if name != "balance":
            q.add_argument("--index", help=f"FAISS index: {', '.join(INDEX_KINDS[:3])} (auto: exact below 10⁴ vectors or 10¹⁰ "
                                           "pairs, IVF above; dedup builds IVF-PQ on disk beside the output from 4 GiB of "
                                           "vectors, or past 10¹⁰ pairs under torchrun), or the folder of an index of the "
                                           "same embeddings (`dinokit index --kind ivfpq`, searched on disk)")
    cu.choices["dedup"].add_argument("--nprobe", type=positive_int, help="with an index folder: lists visited per query")
    cu.choices["dedup"].add_argument("--k", type=positive_int, help="neighbours per image in the duplicate graph (64)")
    cu.choices["dedup"].add_argument("--keep", choices=KEEP,
                                     help="which image of a group stays: the most pixels (default), the one nearest "
                                          "the group's mean, or the first path")
    cu.choices["decontaminate"].add_argument("--protected", nargs="+", required=True, help="embeddings of protected sets")
    r = cu.choices["retrieve"]
    r.add_argument("--seeds", required=True, help="embeddings of the curated seed images")
    r.add_argument("--mode", choices=MODES,
                   help="sample: neighbours of each seed; cluster: clusters with seeds (default: sample)")
    r.add_argument("--per-seed", "--n", dest="n", type=positive_int,
                   help="sample mode: neighbours per seed (4); --n is refused under torchrun, whose options it abbreviates")
    r.add_argument("--clusters", type=positive_int, help="cluster mode: k-means clusters (default √N)")
    r.add_argument("--per-cluster", type=positive_int, help="cluster mode: images kept per cluster with seeds (100)")
    r.add_argument("--min-score", type=float, help="sample mode: least cosine similarity to the seed")
    r.add_argument("--seed", type=int, help="random seed (default 0)")
    b = cu.choices["balance"]
    b.add_argument("--target", type=positive_int, required=True, help="how many images to keep")
    b.add_argument("--levels", type=positive_int, nargs="+", help="clusters per level, fine to coarse (default: √N, then √N/3)")
    b.add_argument("--strategy", choices=STRATEGIES, help="which images inside a cluster (random)")
    b.add_argument("--iterations", type=positive_int, help="k-means iterations per level (default 20)")
    b.add_argument("--seed", type=int, help="random seed (default 0)")
