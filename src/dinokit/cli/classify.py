"""`dinokit classify`: top-k labels of images (the job is `dinokit.classify.classify`)."""
from __future__ import annotations

import json

from ..errors import EXIT_OK
from .options import add_interpolate_mode, positive_int


def run(args) -> int:
    from ..classify import classify

    results = classify(args.images, args.model, top_k=args.top_k, layers=args.layers,
                       interpolate_mode=args.interpolate_mode)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(r["image"])
            for p in r["predictions"]:
                print(f"  {p['probability']:.4f}  {p['label']}")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("classify", help="top-k labels of images with a classifier (ImageNet `_lc` or your own)")
    p.add_argument("images", nargs="+", help="images to classify")
    p.add_argument("--model", default="dinov2_vits14_lc",
                   help="a classifier: an `_lc` name, a *-imagenet1k-1-layer repo or a `finetune` folder")
    p.add_argument("--layers", type=int, choices=[1, 4],
                   help="official linear head over 1 or 4 blocks (default: 4, as torch.hub)")
    p.add_argument("--top-k", type=positive_int, default=5, help="labels per image")
    add_interpolate_mode(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
