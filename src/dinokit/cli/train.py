"""`dinokit train`: self-supervised pretraining / distillation with the DINOv2 recipe."""
from __future__ import annotations

import json

from ..errors import EXIT_OK


def run(args) -> int:
    import yaml

    from ..train import load_config, train

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(cfg, sort_keys=False))
        return EXIT_OK
    r = train(cfg, args.output, resume=args.resume, progress=not args.json)  # TrainingDiverged: exit status 1
    if args.json:
        print(json.dumps({"output": r.output, "steps": r.steps, "losses": r.last_losses, "seconds": r.seconds,
                          "knn": r.knn}, indent=2))
    else:
        print(f"trained {r.steps} steps in {r.seconds}s; last loss {r.last_losses.get('loss', float('nan')):.4f}; "
              f"model → {r.output}/model (use it with --model {r.output}/model)")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("train", help="self-supervised pretraining / distillation with the DINOv2 recipe")
    p.add_argument("--config", help="a YAML file or a preset: vitl16_short, vitl14, vitg14, distill_vit{s,b,l}14, smoke")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE, e.g. train.dataset_path=~/images train.batch_size_per_gpu=32")
    p.add_argument("-o", "--output", help="output folder (default: train.output_dir)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pth")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
