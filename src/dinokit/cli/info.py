"""`dinokit info`: load a model (name, folder or file) and print its configuration."""
from __future__ import annotations

import json

from ..errors import EXIT_OK
from .options import add_interpolate_mode


def run(args) -> int:
    from .. import load_model
    from ..pretrained import DinoTxtModel, is_dinotxt

    if is_dinotxt(args.model):
        model = DinoTxtModel.from_pretrained(args.model, interpolate_mode=args.interpolate_mode)
        info = {**model.config.to_dict(), "model": args.model,
                "parameters": sum(p.numel() for p in model.parameters()), "interpolate_mode": model.interpolate_mode}
    else:
        model = load_model(args.model, interpolate_mode=args.interpolate_mode)
        info = {**model.config.to_dict(), "model": args.model, "parameters": model.num_parameters(),
                "interpolate_mode": model.interpolate_mode}
    print(json.dumps(info, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in info.items()))
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("info", help="load a model (name, folder or file) and print its configuration")
    p.add_argument("model", help="published name, Hugging Face id, folder or checkpoint file")
    add_interpolate_mode(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
