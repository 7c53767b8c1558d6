"""`dinokit embed`: a folder (or list) of images → a resumable, shard-per-N Parquet dataset of embeddings.

Resumption: finished shards and the failure log are the state; a re-run skips every path found there, so
a killed job continues where it stopped and never re-embeds a finished image (`retry_failed` tries the
failed ones again). One writer at a time: a second `embed` into the same output is refused while the
first holds its lock. Distributed: under torchrun
each rank takes every WORLD_SIZE-th image of the sorted list, less the finished ones, and writes its own
shards into the same folder.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data import AutoImageProcessor, Dinov2ImageProcessor, DINOv3ImageProcessor, ImageFiles, OfficialEvalProcessor, scan_images
from ..data.processor import dinov3_processor
from ..distributed import ensure_process_group, rank_and_world
from ..embeddings.store import ShardWriter, embedded_paths, exclusive_output, has_patch_tokens, read_metadata, remaining_failures
from ..errors import UsageError, refuse_changed_settings
from ..io import write_text_atomic
from ..models.dinotxt import DinoTxt
from ..pretrained import AutoModel, DinoTxtModel, is_dinotxt
from ..runtime.backends import BACKENDS, FIXED_SIZE_BACKENDS, INEXACT_BACKENDS, BackendError, accelerate, require_cpu_bf16
from ..runtime.cpu import fast_path
from ..runtime.images import run_over_images
from ..weights import model_identity, weights_fingerprint
from ..weights.pretrained import model_family
from . import ENGINES
from .pooling import POOLINGS, pool

DINOTXT_EMBEDDING = "dino.txt image embedding ([vision-head CLS, mean of vision-head patches]; search it with text)"
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


@dataclass
class EmbedSummary:
    output: str
    total: int
    done: int  # embedded in this run
    skipped: int  # already finished by an earlier run
    failed: int  # could not be used in this run
    seconds: float
    failures: list = field(default_factory=list)  # (path, reason) of this run, all ranks
    failed_before: int = 0  # failed in an earlier run and not retried (--retry-failed retries them)

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


def make_processor(model, image_size: int | None = None) -> Dinov2ImageProcessor | OfficialEvalProcessor:
    """The model's processor; `image_size` crops that size after resizing the short side by 256/224 of it.
    dino.txt: the official evaluation transform, as its reference notebook."""
    if model and is_dinotxt(model):
        return OfficialEvalProcessor(image_size or 224)
    processor = AutoImageProcessor.from_pretrained(model) if model else Dinov2ImageProcessor()
    if type(processor) is Dinov2ImageProcessor and model and model_family(model) != "dinov2":
        processor = dinov3_processor()  # a DINOv3 file or folder without preprocessor_config.json
    if isinstance(processor, DINOv3ImageProcessor):  # DINOv3: a square resize, no crop
        return processor if not image_size else DINOv3ImageProcessor(**{**processor.to_dict(), "size": image_size})
    if image_size:
        processor = Dinov2ImageProcessor(**{**processor.to_dict(), "size": image_size * 256 // 224,
                                            "crop_size": image_size})
    return processor


def default_batch_size(device: torch.device) -> int:
    """GPU: 64. CPU: 4 images per thread, at least 8. The fast path runs a CPU batch as one piece per thread,
    side by side, and 4 images at 224 px keep a piece's activations in cache (docs/performance.md); a batch
    smaller than the thread count would leave threads idle."""
    return 64 if device.type == "cuda" else max(8, 4 * torch.get_num_threads())


@dataclass(frozen=True)
class EmbedOptions:
    """How `embed` computes and stores the embeddings: the job's whole input besides the paths. `check()`
    refuses bad values with the option's CLI name; `metadata()` is what an output records and a rerun must
    match."""

    model: str = "dinov2_vits14"
    pooling: str = "cls"
    normalize: bool = False
    image_size: int | None = None
    batch_size: int | None = None
    device: str | None = None
    dtype: str = "float32"
    num_workers: int | None = None
    keep_patches: bool = False
    shard_size: int | None = None
    flush_seconds: float = 60.0  # a shard is also written once this much work is waiting (a kill loses at most that)
    interpolate_mode: str | None = None
    backend: str = "eager"
    retry_failed: bool = False  # try again the images an earlier run could not use
    engine: str = "local"  # local (this process, or each torchrun rank) or ray (Ray Data: features/ray_engine.py)
    ray_address: str | None = None  # a Ray cluster (default: RAY_ADDRESS, else a local Ray)
    ray_actors: tuple[int, int] | None = None  # (min, max) model actors (default: one per GPU, or per 4 CPUs)
    ray_gpus_per_actor: float | None = None  # default: 1 when the cluster has GPUs
    ray_cpus_per_actor: int = 1  # a model actor's CPUs (its torch threads)

    @property
    def rows_per_shard(self) -> int:
        """`shard_size`, or its default: 4096 images, 128 with patch tokens (hundreds of times the embedding each)."""
        return self.shard_size or (128 if self.keep_patches else 4096)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def check(self) -> None:
        if is_dinotxt(self.model):
            fixed = {f"--pooling {self.pooling}": self.pooling != "cls", "--keep-patches": self.keep_patches,
                     f"--backend {self.backend}": self.backend != "eager"}
            if any(fixed.values()):
                raise UsageError(f"{self.model} embeds an image as dino.txt's image embedding ([CLS, mean of patches] of "
                                 f"its vision head, eager): {', '.join(k for k, v in fixed.items() if v)} does not apply")
        if not self.flush_seconds > 0:
            raise UsageError(f"--flush-seconds must be positive, got {self.flush_seconds}")
        if self.engine not in ENGINES:
            raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine == "ray" and rank_and_world()[1] > 1:
            raise UsageError("--engine ray schedules the whole job itself: start it once, not under torchrun")
        if self.ray_actors and not 1 <= self.ray_actors[0] <= self.ray_actors[1]:
            raise UsageError(f"--actors must be MIN[:MAX] with 1 <= MIN <= MAX, got {self.ray_actors}")
        if self.pooling not in POOLINGS:
            raise UsageError(f"--pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.dtype not in DTYPES:
            raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.backend not in BACKENDS:
            raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.torch_device.type == "cpu" and self.torch_dtype != torch.float32:
            if self.backend != "eager":
                raise UsageError(f"--backend {self.backend} runs in float32 on CPU; drop --dtype {self.dtype}")
            if self.torch_dtype == torch.bfloat16:
                try:
                    require_cpu_bf16()
                except BackendError as e:
                    raise UsageError(str(e)) from e

    def metadata(self, crop: int | None) -> dict[str, str]:
        """The settings known before the model loads; `embed` adds the model's interpolation mode and
        weights fingerprint once it has loaded (`model_metadata`)."""
        exact = self.torch_dtype == torch.float32 and self.backend not in INEXACT_BACKENDS
        return {"dinokit.model": model_identity(self.model), "dinokit.pooling": self.pooling,
                "dinokit.normalize": str(self.normalize), "dinokit.image_size": str(crop),
                "dinokit.keep_patches": str(self.keep_patches),
                # reduced precision and int8 change the numbers: never mixed with exact ones in one output
                "dinokit.numerics": "exact" if exact else f"{self.dtype}+{self.backend}",
                **({"dinokit.embedding": DINOTXT_EMBEDDING} if is_dinotxt(self.model) else {})}


def model_metadata(net) -> dict[str, str]:
    """What the loaded model adds to an output's settings: the interpolation mode in effect (the default
    written out, so that giving it explicitly is the same setting) and a fingerprint of the weights (a
    folder whose checkpoint was replaced is another model)."""
    return {"dinokit.interpolate_mode": net.interpolate_mode, "dinokit.weights": weights_fingerprint(net)}


def embed(inputs, output: str | os.PathLike, model: str = "dinov2_vits14", *, progress: bool = True,
          **options) -> EmbedSummary:
    """Embed every image under `inputs` (folders, text files of paths, image files) into `output`; the
    keywords are `EmbedOptions`' fields (one that is not is a TypeError)."""
    return embed_with(inputs, output, EmbedOptions(model=model, **options), progress=progress)


def embed_with(inputs, output: str | os.PathLike, options: EmbedOptions, *, progress: bool = True) -> EmbedSummary:
    start = time.perf_counter()
    options.check()
    rank, world = rank_and_world()
    out = Path(output)
    processor = make_processor(options.model, options.image_size)
    crop = processor.crop_size["height"] if processor.do_center_crop else None
    if options.backend in FIXED_SIZE_BACKENDS and crop is None:
        raise UsageError(f"--backend {options.backend} needs images of one size: this processor does not center-crop")
    metadata = options.metadata(crop)
    paths, problems = _input_paths(inputs)
    with exclusive_output(out, rank):  # a second writer is refused; a kill releases it
        _check_matches_existing(out, metadata)
        net = load_embedder(options)
        metadata = {**metadata, **model_metadata(net)}
        _check_matches_existing(out, metadata)
        embedded = embedded_paths(out)
        failed = remaining_failures(out, embedded)
        skip = embedded if options.retry_failed else embedded | set(failed)
        # split the full list first, then drop finished work: ranks need not agree on when they looked
        mine = [p for p in paths[rank::world] if p not in skip]
        summary = EmbedSummary(str(out), total=len(paths), done=0, skipped=sum(p in skip for p in paths),
                               failed=0, seconds=0.0)
        writer = ShardWriter(out, rank, metadata)
        if problems and rank == 0:  # what the listing could not look at: reported like a bad image
            writer.record_failures(problems)
            summary.failures.extend(problems)
            summary.failed += len(problems)
        if mine and options.engine == "ray":
            from .ray_engine import embed_on_ray

            net = None  # the driver loaded it only for the settings' weight fingerprint: the actors load their own
            embed_on_ray(mine, out, options, processor, crop, metadata, summary, progress=progress)
        elif mine:
            _embed_paths(net, mine, processor, crop, options, writer, summary, progress=progress and rank == 0,
                         world=world)
    summary = _gather(summary, world)
    summary.seconds = time.perf_counter() - start
    if rank == 0:
        this_run = {p for p, _ in summary.failures}
        summary.failed_before = sum(p not in this_run for p in _write_failure_list(out))
    return summary


def _check_matches_existing(out: Path, metadata: dict) -> None:
    """Refuse to add to an output made with other settings, naming each; keys an older dinokit did not
    record are taken from what its shards show (or not compared)."""
    existing = read_metadata(out)
    if existing is None:
        return
    before = {"dinokit.numerics": "exact", **existing}
    before.setdefault("dinokit.keep_patches", str(has_patch_tokens(out)))
    if before.get("dinokit.model") is not None:
        before["dinokit.model"] = model_identity(before["dinokit.model"])
    if before.get("dinokit.interpolate_mode") == "":  # the default, before it was written out
        before.pop("dinokit.interpolate_mode")
    refuse_changed_settings(out, {k.removeprefix("dinokit."): v for k, v in before.items()},
                            {k.removeprefix("dinokit."): v for k, v in metadata.items()})


def _input_paths(inputs) -> tuple[list[str], list[tuple[str, str]]]:
    """Absolute paths, each file once (a file given twice, inside a folder and by name, or through a
    symbolic link, is the same file: kept under its resolved path), and what the listing could not read."""
    given = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    given = [os.path.expanduser(p) for p in given]  # "~/photos" from Python, as a shell would expand it
    missing = [str(p) for p in given if not Path(p).exists() and not Path(p).is_symlink()]
    if missing:
        raise UsageError(f"input not found: {', '.join(missing)}")
    scan = scan_images(given)
    paths = list(dict.fromkeys(os.path.realpath(p) if os.path.exists(p) else os.path.abspath(p) for p in scan.paths))
    if not paths and not scan.problems:
        raise UsageError(f"no images found in {', '.join(map(str, given))}")
    return paths, scan.problems


class _ShardSink:
    """Takes each batch of the loop: counts it in the summary, keeps its embeddings (and failures) until a
    shard's worth is waiting or the oldest waited `flush_seconds`, then writes them — the shard first, then
    the failures, so that a kill in between only retries the failed images."""

    def __init__(self, writer: ShardWriter, options: EmbedOptions, prefix: int, summary: EmbedSummary, bar):
        self.writer, self.options, self.prefix, self.summary, self.bar = writer, options, prefix, summary, bar
        self.shard_size = options.rows_per_shard
        self.paths, self.embeddings, self.patches, self.failures = [], [], [], []
        self.since = time.monotonic()

    def __call__(self, batch, tokens) -> None:
        o = self.options
        self.failures.extend(batch.failures)
        self.summary.failures.extend(batch.failures)
        if tokens is not None:
            self.embeddings.append(pool(tokens, self.prefix, o.pooling, o.normalize).float().cpu().numpy())
            if o.keep_patches:
                self.patches.append(tokens[:, self.prefix:].to(torch.float16).cpu().numpy())
            self.paths.extend(batch.paths)
        self.summary.done += len(batch.paths)
        self.summary.failed += len(batch.failures)
        self.bar.update(len(batch.paths) + len(batch.failures))
        if len(self.paths) + len(self.failures) >= self.shard_size or \
                time.monotonic() - self.since >= self.options.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self.paths:
            self.writer.write(self.paths, np.concatenate(self.embeddings),
                              np.concatenate(self.patches) if self.options.keep_patches else None)
        self.writer.record_failures(self.failures)
        self.paths, self.embeddings, self.patches, self.failures = [], [], [], []
        self.since = time.monotonic()


def load_embedder(options: EmbedOptions):
    """The model `embed` runs: a DINOv2 backbone, or dino.txt (whose embedding is its image embedding)."""
    if is_dinotxt(options.model):
        return DinoTxtModel.from_pretrained(options.model, interpolate_mode=options.interpolate_mode,
                                            device=options.torch_device, dtype=options.torch_dtype)
    return AutoModel.from_pretrained(options.model, interpolate_mode=options.interpolate_mode,
                                     device=options.torch_device, dtype=options.torch_dtype)


def token_forward(net, options: EmbedOptions, crop: int | None):
    """pixels → the tokens `pool` reads, computed as `embed` computes them (search and the service use it
    too): the model on its backend, or only the CLS token when that is all the options keep; for dino.txt
    its image embedding (`encode_image`) as the one token."""
    if isinstance(net, DinoTxt):
        fast_path(net)
        return lambda pixels: net.encode_image(pixels)[:, None]
    try:
        forward = accelerate(net, options.backend, image_size=crop)
    except BackendError as e:
        raise UsageError(str(e)) from e
    if options.backend == "eager" and options.pooling == "cls" and not options.keep_patches:
        return lambda pixels: net.forward_class_token(pixels)[:, None]
    return forward


def _embed_paths(net, paths: list[str], processor, crop, options: EmbedOptions, writer: ShardWriter,
                 summary: EmbedSummary, *, progress: bool, world: int) -> None:
    dev, dtype = options.torch_device, options.torch_dtype
    forward = token_forward(net, options, crop)
    workers = options.num_workers if options.num_workers is not None else min(4, os.cpu_count() or 1)
    bar = _progress(len(paths), progress, world)
    sink = _ShardSink(writer, options, net.num_prefix_tokens, summary, bar)
    run_over_images(ImageFiles.from_paths(paths, processor), forward, sink,
                    batch_size=options.batch_size or default_batch_size(dev), num_workers=workers, device=dev, dtype=dtype)
    sink.flush()
    bar.close()


def _progress(total: int, enabled: bool, world: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc=f"embed (rank 0 of {world})" if world > 1 else "embed",
                disable=not enabled, dynamic_ncols=True)


def _gather(summary: EmbedSummary, world: int) -> EmbedSummary:
    """Add up the counts of every rank (torchrun), and wait until all ranks finished their shards."""
    if world == 1:
        return summary
    dist = ensure_process_group()
    counts = torch.tensor([summary.done, summary.failed], dtype=torch.int64)
    dist.all_reduce(counts)
    failures = [None] * world
    dist.all_gather_object(failures, summary.failures)
    dist.barrier()
    summary.done, summary.failed = int(counts[0]), int(counts[1])
    summary.failures = [f for part in failures for f in part]
    return summary


def _write_failure_list(out: Path) -> dict[str, str]:
    """Every image that failed, in any run or rank, and is not embedded since, as `OUT.failures.tsv` beside
    the output: a header, then path and reason, tab-separated with the csv module's quoting (a path with a
    tab, a newline or a quote stays one field). Returns them (path → reason)."""
    failures = remaining_failures(out)
    target = out.with_name(out.name + ".failures.tsv")
    if not failures:
        target.unlink(missing_ok=True)
        return failures
    text = io.StringIO()
    writer = csv.writer(text, delimiter="\t", lineterminator="\n")
    writer.writerow(["path", "reason"])
    writer.writerows(sorted(failures.items()))
    write_text_atomic(target, text.getvalue())
    return failures


def read_failure_list(path) -> list[tuple[str, str]]:
    """The (path, reason) rows of an `OUT.failures.tsv`."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    return [(p, r) for p, r in rows[1:]]


def summary_json(summary: EmbedSummary) -> str:
    d = asdict(summary)
    d["images_per_second"] = round(summary.images_per_second, 2)
    d["failures"] = [{"path": p, "reason": r} for p, r in summary.failures]
    return json.dumps(d, indent=2)


