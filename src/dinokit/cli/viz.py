"""`dinokit viz pca|attention`: pictures of what the features see."""
from __future__ import annotations

from ..errors import EXIT_OK
from .options import add_interpolate_mode, positive_int


def run_pca(args) -> int:
    from .. import AutoModel
    from ..features import pca_figure

    model = AutoModel.from_pretrained(args.model, interpolate_mode=args.interpolate_mode)
    figure = pca_figure(model, args.images, size=args.image_size, threshold=args.threshold,
                        remove_background=not args.keep_background)
    figure.save(args.output)
    print(f"wrote {args.output}")
    return EXIT_OK


def run_attention(args) -> int:
    from .. import AutoModel
    from ..features.attention import attention_figure

    model = AutoModel.from_pretrained(args.model, interpolate_mode=args.interpolate_mode)
    attention_figure(model, args.image, size=args.image_size).save(args.output)
    print(f"wrote {args.output}")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("viz", help="pictures of what the features see")
    viz = p.add_subparsers(dest="picture", required=True)
    q = viz.add_parser("pca", help="first three PCA components of the patch features as RGB")
    q.add_argument("images", nargs="+", help="images (the components are fitted over all of them)")
    q.add_argument("-o", "--output", required=True, help="output file")
    q.add_argument("--model", default="dinov2_vits14",
                   help="backbone: published name, Hugging Face id, folder or checkpoint file")
    q.add_argument("--image-size", type=positive_int, default=448, help="input size in pixels")
    q.add_argument("--threshold", type=float, default=0.0, help="on the first component, for the foreground")
    q.add_argument("--keep-background", action="store_true", help="colour every patch (no foreground threshold)")
    add_interpolate_mode(q)
    q.set_defaults(func=run_pca)
    q = viz.add_parser("attention", help="the last layer's CLS attention, one map per head")
    q.add_argument("image", help="the image")
    q.add_argument("-o", "--output", required=True, help="output file")
    q.add_argument("--model", default="dinov2_vits14",
                   help="backbone: published name, Hugging Face id, folder or checkpoint file")
    q.add_argument("--image-size", type=positive_int, default=448, help="input size in pixels")
    add_interpolate_mode(q)
    q.set_defaults(func=run_attention)
