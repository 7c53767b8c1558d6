"""`dinokit export`: ONNX, TorchScript or torch.export program, verified against PyTorch."""
from __future__ import annotations

from ..errors import EXIT_FATAL, EXIT_OK
from ..runtime import FORMATS
from .options import add_interpolate_mode, positive_int


def run(args) -> int:
    from .. import load_model
    from ..runtime.export import export_model

    model = load_model(args.model, interpolate_mode=args.interpolate_mode)
    report = export_model(model, args.format, args.output, image_size=args.image_size)
    print(f"wrote {report.path} ({report.format}, {report.image_size}x{report.image_size}, dynamic batch); "
          f"max abs difference from eager PyTorch: {report.max_abs_diff:.2e}")
    return EXIT_OK if report.max_abs_diff <= 1e-4 else EXIT_FATAL


def register(sub) -> None:
    p = sub.add_parser("export", help="ONNX, TorchScript or torch.export program, verified against PyTorch")
    p.add_argument("model", help="published name, Hugging Face id, folder or checkpoint file")
    p.add_argument("--format", required=True, choices=FORMATS, help="file format")
    p.add_argument("-o", "--output", required=True, help="output file")
    p.add_argument("--image-size", type=positive_int, default=224, help="square input size (batch stays dynamic)")
    add_interpolate_mode(p)
    p.set_defaults(func=run)
