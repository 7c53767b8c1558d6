"""`dinokit classify`: top-k labels of images (the job is `dinokit.classify.classify`)."""
from __future__ import annotations

import json

from ..errors import EXIT_OK, UsageError
from .options import add_interpolate_mode, positive_int


def run(args) -> int:
    from ..pretrained import is_dinotxt

    labels = _labels(args)
    if labels or args.template or is_dinotxt(args.model):
        from ..zeroshot import zero_shot_classify

        results = zero_shot_classify(args.images, args.model, labels=labels, templates=args.template, top_k=args.top_k)
    else:
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


def _labels(args) -> list[str] | None:
    if args.labels and args.labels_file:
        raise UsageError("give --labels or --labels-file, not both")
    if args.labels:
        return [label.strip() for label in args.labels.split(",") if label.strip()]
    if args.labels_file:
        try:
            with open(args.labels_file, encoding="utf-8") as f:
                return [line.strip() for line in f if line.strip() and not line.startswith("#")]
        except OSError as e:
            raise UsageError(f"--labels-file {args.labels_file}: {e.strerror or e}") from None
    return None


def register(sub) -> None:
    p = sub.add_parser("classify", help="top-k labels of images: a classifier (ImageNet `_lc` or your own), or "
                                        "zero-shot with dino.txt and your labels")
    p.add_argument("images", nargs="+", help="images to classify")
    p.add_argument("--model", default="dinov2_vits14_lc",
                   help="a classifier (an `_lc` name, a *-imagenet1k-1-layer repo or a `finetune` folder) or dinotxt")
    p.add_argument("--labels", help="zero-shot (dino.txt): comma-separated class names (default: ImageNet's 1000)")
    p.add_argument("--labels-file", help="zero-shot (dino.txt): a text file of class names, one per line")
    p.add_argument("--template", action="append",
                   help="zero-shot: a prompt with {} for the class name, repeatable (default: CLIP's 80 ImageNet templates)")
    p.add_argument("--layers", type=int, choices=[1, 4],
                   help="official linear head over 1 or 4 blocks (default: 4, as torch.hub)")
    p.add_argument("--top-k", type=positive_int, default=5, help="labels per image")
    add_interpolate_mode(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
