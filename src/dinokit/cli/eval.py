"""`dinokit eval knn|linear`: the paper's k-NN and linear-probe protocols."""
from __future__ import annotations

import json
import sys

from ..errors import EXIT_OK
from .options import add_interpolate_mode, non_negative_int, positive_int


def run_zeroshot(args) -> int:
    from ..eval import eval_zeroshot

    r = eval_zeroshot(args.val, args.model, classes_file=args.classes, templates=args.template, image_size=args.image_size,
                      batch_size=args.batch_size, num_workers=args.num_workers, device=args.device)
    if args.json:
        print(json.dumps(r, indent=2))
        return EXIT_OK
    print(f"zero-shot ({r['val_images']} images, {r['classes']} classes named by {r['class_names_from']}, "
          f"{r['templates']} templates, model {r['model']})")
    print(f"top-1 {100 * r['top1']:6.2f}%  top-5 {100 * r['top5']:6.2f}%")
    if r["failed"]:
        print(f"warning: {r['failed']} images could not be used (e.g. {r['failures'][0]['path']}: "
              f"{r['failures'][0]['reason']})", file=sys.stderr)
    return EXIT_OK


def run(args) -> int:
    from ..eval import eval_knn, eval_linear

    common = dict(image_size=args.image_size, num_workers=args.num_workers, device=args.device,
                  cache_dir=None if args.no_cache else args.cache_dir, interpolate_mode=args.interpolate_mode,
                  progress=not args.json)
    if args.protocol == "knn":
        r = eval_knn(args.train, args.val, args.model, ks=tuple(args.ks), temperature=args.temperature,
                     train_labels=args.train_labels, val_labels=args.val_labels, **common)
        if args.json:
            print(json.dumps(r, indent=2))
        else:
            print(f"k-NN ({r['train_images']} train / {r['val_images']} val images, {r['classes']} classes, "
                  f"T={r['temperature']}, model {r['model']})")
            print(f"{'k':>5}  {'top-1':>7}  {'top-5':>7}")
            for row in r["results"]:
                top5 = f"{100 * row['top5']:6.2f}%" if row["top5"] is not None else f"{'—':>7}"
                print(f"{row['k']:>5}  {100 * row['top1']:6.2f}%  {top5}")
        _warn(r["warnings"])
        return EXIT_OK
    r = eval_linear(args.train, args.val, args.model, augment=args.augment, epochs=args.epochs,
                    batch_size=args.batch_size, logreg=args.logreg, seed=args.seed, **common)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        b = r["best"]
        print(f"linear probe ({r['train_images']} train + {r['holdout_images']} held-out images, {r['augmentation']}, "
              f"{r['epochs']} epochs, model {r['model']})")
        print(f"{'blocks':>6}  {'avgpool':>7}  {'best lr':>8}  {'held-out':>8}  {'val':>7}")
        for blocks in sorted({g['blocks'] for g in r['grid']}):
            for avg in (False, True):
                rows = [g for g in r["grid"] if g["blocks"] == blocks and g["avgpool"] == avg]
                if rows:
                    g = max(rows, key=lambda x: x["holdout_accuracy"])
                    print(f"{blocks:>6}  {str(avg):>7}  {g['lr']:>8.0e}  {100 * g['holdout_accuracy']:7.2f}%  "
                          f"{100 * g['val_accuracy']:6.2f}%")
        print(f"best (chosen on the held-out split): blocks={b['blocks']} avgpool={b['avgpool']} lr={b['lr']:.0e} "
              f"→ validation accuracy {100 * b['val_accuracy']:.2f}%")
        if "logistic_regression" in r:
            lr = r["logistic_regression"]
            print(f"logistic regression: C={lr['best_C']:.2e} → validation accuracy {100 * lr['val_accuracy']:.2f}%")
        _warn(r["warnings"])
    return EXIT_OK


def _warn(warnings: list[str]) -> None:
    for text in warnings:
        print(f"warning: {text}", file=sys.stderr)


def register(sub) -> None:
    from ..eval import DEFAULT_CACHE

    p = sub.add_parser("eval", help="the paper's k-NN and linear-probe protocols, and dino.txt's zero-shot, on an image folder")
    ev = p.add_subparsers(dest="protocol", required=True)
    for name, text in (("knn", "k-NN classification (cosine, top 200, softmax(sim/T))"),
                       ("linear", "linear probe over a grid of blocks, avgpool and learning rates")):
        q = ev.add_parser(name, help=text)
        q.add_argument("--train", required=True, help="ImageFolder (ROOT/<class>/<image>) or embeddings Parquet")
        q.add_argument("--val", required=True, help="same layout and classes as --train")
        q.add_argument("--model", default="dinov2_vits14",
                       help="backbone: published name, Hugging Face id, folder or checkpoint file")
        q.add_argument("--image-size", type=positive_int, default=224, help="crop size of the evaluation transform")
        q.add_argument("--num-workers", type=non_negative_int, default=2, help="image decoding processes (0: in this process)")
        q.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
        q.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="where features are cached")
        q.add_argument("--no-cache", action="store_true", help="compute the features without reading or writing the cache")
        add_interpolate_mode(q)
        q.add_argument("--json", action="store_true", help="print the result as JSON")
        q.set_defaults(func=run)
    zs = ev.add_parser("zeroshot", help="zero-shot classification with dino.txt (class names → text classifiers)")
    zs.add_argument("--val", required=True, help="ImageFolder (ROOT/<class>/<image>), optionally with ROOT/classes.txt")
    zs.add_argument("--model", default="dinotxt", help="a dino.txt name or folder")
    zs.add_argument("--classes", help="class names, one per line in the sorted order of the class folders "
                                      "(default: ROOT/classes.txt, CLIP's ImageNet names for 1000 classes, or the folder names)")
    zs.add_argument("--template", action="append", help="a prompt with {} for the class name, repeatable "
                                                        "(default: CLIP's 80 ImageNet templates)")
    zs.add_argument("--image-size", type=positive_int, default=224, help="crop size of the evaluation transform")
    zs.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass")
    zs.add_argument("--num-workers", type=non_negative_int, default=2, help="image decoding processes (0: in this process)")
    zs.add_argument("--device", help="cpu, cuda or cuda:N (default: cpu)")
    zs.add_argument("--json", action="store_true", help="print the result as JSON")
    zs.set_defaults(func=run_zeroshot)
    knn = ev.choices["knn"]
    knn.add_argument("--ks", type=positive_int, nargs="+", default=[10, 20, 100, 200], help="neighbours that vote")
    knn.add_argument("--temperature", type=float, default=0.07, help="softmax temperature of the votes")
    knn.add_argument("--train-labels", help="CSV path,label for Parquet input without a label column")
    knn.add_argument("--val-labels", help="CSV path,label for Parquet input")
    lin = ev.choices["linear"]
    lin.add_argument("--augment", type=non_negative_int, default=0, help="cache K augmented views per training image")
    lin.add_argument("--epochs", type=positive_int, default=100, help="passes over the training set")
    lin.add_argument("--batch-size", type=positive_int, default=256, help="images per step")
    lin.add_argument("--logreg", action="store_true", help="also logistic regression with a sweep of C")
    lin.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same result)")
