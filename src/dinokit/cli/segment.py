"""`dinokit segment`: semantic segmentation pictures and class-index masks."""
from __future__ import annotations

from ..errors import EXIT_OK, UsageError


def run(args) -> int:
    if args.labels:
        from ..dense.text_segment import write_text_segmentation

        if args.head:
            raise UsageError("give --head (a trained segmentation head) or --labels (dino.txt), not both")
        labels = [label.strip() for label in args.labels.split(",") if label.strip()]
        written = write_text_segmentation(args.images, args.output, labels, args.model, templates=args.template,
                                          device=args.device)
        print(f"{len(written)} segmentations → {args.output}/ (<name>_seg.png with legend, <name>_mask.png label "
              "indices, <name>_heat_<label>.png per label)")
        return EXIT_OK
    from ..dense import write_segmentation

    if not args.head:
        raise UsageError("give --head (a segmentation head) or --labels with --model dinotxt (open vocabulary)")
    written = write_segmentation(args.images, args.output, args.head, backbone=args.backbone, device=args.device)
    print(f"{len(written)} segmentations → {args.output}/ (<name>_seg.png with legend, <name>_mask.png class indices)")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("segment", help="semantic segmentation (a head, or open vocabulary with dino.txt): coloured "
                                       "mask with legend + class-index PNG")
    p.add_argument("images", nargs="+", help="images")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--head", help="a train-seg folder, an official name "
                   "(dinov2_vits14_ade20k_linear, …_voc2012_ms) or an official head file with --backbone")
    p.add_argument("--labels", help="open vocabulary with dino.txt: comma-separated labels (e.g. sky,road,car,person)")
    p.add_argument("--model", default="dinotxt", help="the dino.txt model of --labels")
    p.add_argument("--template", action="append", help="--labels: prompts with {} for the label (default: the label alone)")
    p.add_argument("--backbone", help="the backbone of a head file (default: the head's own)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.set_defaults(func=run)
