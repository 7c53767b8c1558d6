"""`dinokit segment`: semantic segmentation pictures and class-index masks."""
from __future__ import annotations

from ..errors import EXIT_OK


def run(args) -> int:
    from ..dense import write_segmentation

    written = write_segmentation(args.images, args.output, args.head, backbone=args.backbone, device=args.device)
    print(f"{len(written)} segmentations → {args.output}/ (<name>_seg.png with legend, <name>_mask.png class indices)")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("segment", help="semantic segmentation: coloured mask with legend + class-index PNG")
    p.add_argument("images", nargs="+", help="images")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--head", required=True, help="a train-seg folder, an official name "
                   "(dinov2_vits14_ade20k_linear, …_voc2012_ms) or an official head file with --backbone")
    p.add_argument("--backbone", help="the backbone of a head file (default: the head's own)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.set_defaults(func=run)
