"""`dinokit export`: ONNX, TorchScript or torch.export program, verified against PyTorch."""
from __future__ import annotations

from ..errors import EXIT_FATAL, EXIT_OK
from ..runtime import FORMATS
from .options import add_interpolate_mode, positive_int


def run(args) -> int:
    from .. import load_model
    from ..pretrained import DinoTxtModel, is_dinotxt
    from ..runtime.export import export_dinotxt, export_model

    if is_dinotxt(args.model):  # two files: the vision model and the text tower
        model = DinoTxtModel.from_pretrained(args.model, interpolate_mode=args.interpolate_mode)
        reports = export_dinotxt(model, args.format, args.output, image_size=args.image_size)
    else:
        model = load_model(args.model, interpolate_mode=args.interpolate_mode)
        reports = [export_model(model, args.format, args.output, image_size=args.image_size)]
    for r in reports:
        print(f"wrote {r.path} ({r.format}, {r.image_size}x{r.image_size}, dynamic batch); "
              f"max abs difference from eager PyTorch: {r.max_abs_diff:.2e}")
    return EXIT_OK if all(r.max_abs_diff <= 1e-4 for r in reports) else EXIT_FATAL


def register(sub) -> None:
    p = sub.add_parser("export", help="ONNX, TorchScript or torch.export program, verified against PyTorch")
    p.add_argument("model", help="published name, Hugging Face id, folder or checkpoint file")
    p.add_argument("--format", required=True, choices=FORMATS, help="file format")
    p.add_argument("-o", "--output", required=True,
                   help="output file (dino.txt: two files, OUTPUT's stem + .vision and + .text)")
    p.add_argument("--image-size", type=positive_int, default=224, help="square input size (batch stays dynamic)")
    add_interpolate_mode(p)
    p.set_defaults(func=run)
