"""`dinokit embed`: images (folders, lists, files) → a Parquet dataset of embeddings."""
from __future__ import annotations

from ..errors import EXIT_OK, EXIT_PARTIAL
from ..features import ENGINES
from ..features.pooling import POOLINGS
from .options import add_interpolate_mode, is_main_process, non_negative_int, positive_float, positive_int


def run(args) -> int:
    from ..features import embed
    from ..features.embed import summary_json

    s = embed(args.inputs, args.output, args.model, pooling=args.pooling, normalize=args.normalize,
              image_size=args.image_size, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
              num_workers=args.num_workers, keep_patches=args.keep_patches, shard_size=args.shard_size,
              flush_seconds=args.flush_seconds, engine=args.engine, ray_address=args.address, ray_actors=args.actors,
              ray_gpus_per_actor=args.gpus_per_actor, ray_cpus_per_actor=args.cpus_per_actor,
              interpolate_mode=args.interpolate_mode, backend=args.backend, retry_failed=args.retry_failed,
              progress=not args.json)
    status = EXIT_PARTIAL if s.failed or s.failed_before else EXIT_OK  # 3 while any image remains failed
    if not is_main_process():
        return status
    if args.json:
        print(summary_json(s))
        return status
    if s.done == 0 and s.failed == 0:
        usable = s.total - s.failed_before
        print(f"nothing to do: all {usable} images of {' '.join(args.inputs)} are already in {s.output}" if not s.failed_before
              else f"nothing to do: the {usable} usable images of {' '.join(args.inputs)} are already in {s.output}")
    else:
        print(f"embedded {s.done} images in {s.seconds:.1f}s ({s.images_per_second:.1f} img/s); "
              f"skipped {s.skipped} already done; failed {s.failed} → {s.output}")
        for path, reason in s.failures[:20]:
            print(f"  failed: {path!r}: {reason}" if "\n" in path or "\t" in path else f"  failed: {path}: {reason}")
    if s.failed_before:
        print(f"  {s.failed_before} images failed in an earlier run and were not retried; --retry-failed tries them again")
    if s.failed or s.failed_before:
        print(f"  the list of failed images: {s.output}.failures.tsv")
    return status


def actor_range(text: str) -> tuple[int, int]:
    """N or MIN:MAX."""
    import argparse

    try:
        low, _, high = text.partition(":")
        low, high = int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN:MAX, got {text!r}") from None
    if not 1 <= low <= high:
        raise argparse.ArgumentTypeError(f"expected 1 <= MIN <= MAX, got {text!r}")
    return low, high


def register(sub) -> None:
    p = sub.add_parser("embed", help="embed images (folders, files of paths, images) into a Parquet dataset")
    p.add_argument("inputs", nargs="+", help="folders (recursive), text files with one path per line, or images")
    p.add_argument("-o", "--output", required=True, help="output folder of Parquet shards (e.g. photos.parquet)")
    p.add_argument("--model", default="dinov2_vits14", help="name, Hugging Face id, folder or checkpoint file")
    p.add_argument("--pooling", default="cls", choices=POOLINGS,
                   help="cls: the CLS token after the final norm; mean: the patch tokens' mean; cls+mean: both")
    p.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    p.add_argument("--image-size", type=positive_int, help="crop size (default 224; the short side is resized to 256/224 of it)")
    p.add_argument("--batch-size", type=positive_int,
                   help="images per forward pass (default: 4 per CPU thread, at least 8; 64 on GPU)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16 (GPU)")
    p.add_argument("--num-workers", type=non_negative_int, help="image decoding processes (default: min(4, cores))")
    p.add_argument("--keep-patches", action="store_true", help="also store the patch tokens (float16)")
    p.add_argument("--shard-size", type=positive_int, help="images per shard (default 4096; 128 with --keep-patches)")
    p.add_argument("--flush-seconds", type=positive_float, default=60.0,
                   help="also write a shard once its first image waited this long (default 60): a killed job keeps "
                        "all but the last minute's work")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local (default: this process, or each torchrun rank) or ray (Ray Data on a local Ray or the "
                        "cluster of --address; pip install 'dinokit[ray]')")
    p.add_argument("--address", help="--engine ray: the cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--actors", type=actor_range,
                   help="--engine ray: model actors, N or MIN:MAX to autoscale (default 1 to one per GPU, or per 4 CPUs)")
    p.add_argument("--gpus-per-actor", type=float,
                   help="--engine ray: GPUs per model actor (default 1 when the cluster has GPUs)")
    p.add_argument("--cpus-per-actor", type=positive_int, default=1, help="--engine ray: CPUs (torch threads) per model actor")
    add_interpolate_mode(p)
    p.add_argument("--backend", default="eager",
                   help="eager (default, exact); opt-in: compile, onnxruntime (exact), onnxruntime-int8 and int8 "
                        "(CPU, not exact), cuda-graphs (GPU): see docs/performance.md")
    p.add_argument("--retry-failed", action="store_true",
                   help="try again the images an earlier run could not use (e.g. after fixing them)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (no progress bar)")
    p.set_defaults(func=run)
