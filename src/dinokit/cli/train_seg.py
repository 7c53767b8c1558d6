"""`dinokit train-seg`: a linear segmentation head trained on (image, mask) pairs."""
from __future__ import annotations

import json

from ..errors import EXIT_OK
from .options import positive_int


def run(args) -> int:
    from dataclasses import asdict

    from ..dense import train_segmentation

    r = train_segmentation(args.images, args.masks, args.output, args.model, layers=args.layers,
                           image_size=args.image_size, epochs=args.epochs, lr=args.lr, holdout=args.holdout,
                           num_classes=args.num_classes, device=args.device, progress=not args.json)
    if args.json:
        print(json.dumps(asdict(r), indent=2))
    else:
        print(f"trained on {r.train_images} images, {r.classes} classes in {r.seconds}s; held-out mIoU "
              f"{100 * r.miou:.1f}% (majority-class baseline {100 * r.chance_miou:.1f}%) → {r.output}")
        for name, iou in r.per_class_iou.items():
            print(f"  {name}: {100 * iou:.1f}%")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("train-seg", help="train a linear segmentation head on your (image, mask) pairs")
    p.add_argument("--images", required=True, help="folder of training images")
    p.add_argument("--masks", required=True, help="PNG class-index masks named like the images; 255 = ignore")
    p.add_argument("-o", "--output", required=True, help="head folder (load it with `segment --head`)")
    p.add_argument("--model", default="dinov2_vits14",
                   help="backbone: published name, Hugging Face id, folder or checkpoint file")
    p.add_argument("--layers", type=int, choices=[1, 4], default=1, help="last block, or last four blocks")
    p.add_argument("--image-size", type=positive_int, default=448, help="input size in pixels")
    p.add_argument("--epochs", type=positive_int, default=40, help="passes over the training set")
    p.add_argument("--lr", type=float, default=1e-2, help="peak of the one-cycle schedule (AdamW)")
    p.add_argument("--holdout", type=float, default=0.2, help="share of pairs held out for the mIoU")
    p.add_argument("--num-classes", type=positive_int, help="classes (default: read from the masks)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
