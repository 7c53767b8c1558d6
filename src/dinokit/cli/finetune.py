"""`dinokit finetune`: a classifier trained on an ImageFolder dataset (linear probe or full)."""
from __future__ import annotations

import json

from ..errors import EXIT_OK
from .options import non_negative_int, positive_int


def run(args) -> int:
    from ..finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(train=args.train, val=args.val, model=args.model, output=args.output, mode=args.mode,
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, layer_decay=args.layer_decay,
                         image_size=args.image_size, min_crop_scale=args.min_crop_scale, flip=not args.no_flip,
                         num_workers=args.num_workers, device=args.device, seed=args.seed)
    result = finetune(cfg, progress=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        acc = result.get("val_accuracy")
        if result["epochs_run"] == 0:
            print(f"nothing new to train: {args.output} holds these settings trained for {args.epochs} epochs "
                  "(more --epochs continue it)")
        print(f"trained on {result['train_images']} images of {len(result['classes'])} classes in {result['seconds']}s"
              + (f"; validation accuracy {100 * acc:.2f}% (chance {100 * result['chance']:.2f}%)" if acc is not None else "")
              + f" → {args.output}")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("finetune", help="train a classifier on an ImageFolder dataset (linear probe or full)")
    p.add_argument("--train", required=True, help="ROOT/<class>/<image>")
    p.add_argument("--val", help="same layout, same classes; evaluated at the end")
    p.add_argument("--model", default="dinov2_vits14",
                   help="backbone: published name, Hugging Face id, folder or checkpoint file")
    p.add_argument("-o", "--output", required=True, help="folder: the classifier, its checkpoint (for resuming)")
    p.add_argument("--mode", default="linear", choices=["linear", "full"],
                   help="linear: frozen backbone; full: everything, layer-wise decay")
    p.add_argument("--epochs", type=positive_int, default=10, help="passes over the training set")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per step")
    p.add_argument("--lr", type=float, help="default 1e-3 (linear) or 5e-5 (full) × batch/32")
    p.add_argument("--layer-decay", type=float, default=0.75, help="layer-wise lr decay (full mode)")
    p.add_argument("--image-size", type=positive_int, default=224, help="input size in pixels")
    p.add_argument("--min-crop-scale", type=float, default=0.08, help="RandomResizedCrop's smallest area fraction")
    p.add_argument("--no-flip", action="store_true", help="no horizontal flips (text, digits)")
    p.add_argument("--num-workers", type=non_negative_int, default=2, help="image decoding processes (0: in this process)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same result)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
