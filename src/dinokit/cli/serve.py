"""`dinokit serve`: the HTTP service and its page (the job is `dinokit.serve`)."""
from __future__ import annotations

import os
import sys

from ..errors import EXIT_OK, UsageError
from ..features.pooling import POOLINGS
from .options import add_interpolate_mode, non_negative_int, positive_int

TOKEN_VARIABLE = "DINOKIT_SERVE_TOKEN"


def run(args) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise UsageError(f"dinokit serve needs its extra: pip install 'dinokit[serve]' ({e.name} is missing)") from None
    from ..serve import ServeLimits, Service, create_app, run_server
    from ..serve.server import is_loopback

    if args.port > 65535:
        raise UsageError(f"--port must be at most 65535, got {args.port}")
    token = args.token or os.environ.get(TOKEN_VARIABLE) or None
    if not is_loopback(args.host) and token is None:
        print(f"warning: serving on {args.host} without a token: anyone who reaches it can use it "
              f"(set --token or {TOKEN_VARIABLE})", file=sys.stderr)
    limits = ServeLimits(max_batch_size=args.max_batch_size, batch_window_ms=args.batch_window_ms,
                         max_queue=args.max_queue, max_request_bytes=int(args.max_request_mb * (1 << 20)),
                         max_pixels=args.max_pixels, max_images_per_request=args.max_images_per_request)
    service = Service(args.model, index=args.index, duplicates=args.duplicates, classifier=args.classifier,
                      pooling=args.pooling, normalize=args.normalize, image_size=args.image_size,
                      interpolate_mode=args.interpolate_mode, device=args.device, limits=limits)
    run_server(create_app(service, token=token), args.host, args.port)
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("serve", help="an HTTP service (embed, search, classify) with dynamic batching, and a page")
    p.add_argument("--model", help="backbone (default: the index's model, else dinov2_vits14)")
    p.add_argument("--index", help="index folder (`dinokit index`): enables /v1/search, thumbnails and the page's search")
    p.add_argument("--duplicates", help="a `dinokit dedup --json` result for the page's duplicates view")
    p.add_argument("--classifier", help="a classifier for /v1/classify (an `_lc` name or a `finetune` folder)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (other than loopback: set a token)")
    p.add_argument("--port", type=non_negative_int, default=8000, help="port (0: a free one, printed)")
    p.add_argument("--token", help=f"require 'Authorization: Bearer TOKEN' (or set {TOKEN_VARIABLE})")
    p.add_argument("--pooling", choices=POOLINGS, help="as in `embed` (default: the index's, else cls)")
    p.add_argument("--normalize", action="store_const", const=True, help="L2-normalise embeddings, as in `embed`")
    p.add_argument("--image-size", type=positive_int, help="center-crop size, as in `embed`")
    add_interpolate_mode(p)
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--max-batch-size", type=positive_int, default=32, help="images in one forward pass")
    p.add_argument("--batch-window-ms", type=float, default=5.0,
                   help="how long a request waits for others to share its forward pass")
    p.add_argument("--max-queue", type=positive_int, default=256, help="images waiting for the model; more get a 503")
    p.add_argument("--max-request-mb", type=float, default=32.0, help="largest request body, in MiB (413 above)")
    p.add_argument("--max-pixels", type=positive_int, default=50_000_000, help="largest decoded image (413 above)")
    p.add_argument("--max-images-per-request", type=positive_int, default=64, help="images in one request")
    p.set_defaults(func=run)
