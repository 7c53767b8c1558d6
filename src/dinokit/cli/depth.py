"""`dinokit depth`: depth maps with the official or transformers heads."""
from __future__ import annotations

import os

from ..errors import EXIT_OK
from .options import non_negative_int


def run(args) -> int:
    from ..dense import write_depth

    written = write_depth(args.images, args.output, args.model, backbone=args.backbone, raw_format=args.raw,
                          short_side=args.short_side or None, device=args.device)
    folder = os.path.join(os.path.normpath(args.output), "")  # one trailing separator, however it was typed
    print(f"{len(written)} depth pictures → {folder} (<name>_depth.png, raw: <name>_depth"
          + (".npy, metres)" if args.raw == "npy" else "16.png, metres × 256)"))
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("depth", help="depth maps: coloured picture + raw depth (16-bit PNG or .npy)")
    p.add_argument("images", nargs="+", help="images")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--model", default="dinov2_vits14_nyu_dpt",
                   help="official name (dinov2_vits14_{nyu,kitti}_{linear,linear4,dpt}), transformers DPT repo or "
                        "folder, or an official head file with --backbone")
    p.add_argument("--backbone", help="the backbone of a head file (name or path)")
    p.add_argument("--raw", choices=["png16", "npy"], default="png16",
                   help="raw depth: 16-bit PNG (metres × 256) or float32 .npy")
    p.add_argument("--short-side", type=non_negative_int, default=448, help="resize the shorter side first (0: keep the size)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.set_defaults(func=run)
