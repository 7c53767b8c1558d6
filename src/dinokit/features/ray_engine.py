"""`dinokit embed --engine ray`: the same shards, scheduled by Ray Data on a local Ray or a cluster.

The unit of work stays dinokit's shard. `OUT/_shards.json` lists the shards by stable id (the sorted paths
still to embed when it was made, `shard_size` each; later runs append new ids for new images); shard `id` is
written once, as `part-s{id}.parquet` by the same atomic write as the local engine's, after its failures
(`_failures-s{id}.jsonl`). A shard is finished when its file holds its images less its failures, so a rerun
(after a kill of the driver) schedules only the others. Ray only schedules: CPU tasks decode and preprocess,
an autoscaling pool of model actors (`num_gpus` each on GPUs) embeds, and the driver writes each shard as
soon as all its rows came back. A lost task or actor is retried by Ray (its shard is not written until it
is complete, and a row that arrives twice counts once).
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..embeddings.store import failure_lines, write_shard
from ..errors import UsageError
from ..io import atomic_write, read_json, write_text_atomic

MANIFEST = "_shards.json"


def shard_file(out: Path, shard: int) -> Path:
    return out / f"part-s{shard:06d}.parquet"


def failure_file(out: Path, shard: int) -> Path:
    return out / f"_failures-s{shard:06d}.jsonl"


def plan_shards(out: Path, todo: list[str], shard_size: int) -> tuple[list[list[str]], list[int]]:
    """(every shard of the manifest, the ids still to do). `todo` are the paths not yet embedded nor failed
    (sorted); those no shard of the manifest holds become new shards, appended with the next ids."""
    manifest = read_json(out / MANIFEST)["shards"] if (out / MANIFEST).is_file() else []
    pending = [i for i, paths in enumerate(manifest) if not shard_finished(out, i, len(paths))]
    waiting = {p for i in pending for p in manifest[i]}
    new = [p for p in todo if p not in waiting]  # a failed image of a finished shard is here only when retried
    fresh = [new[i:i + shard_size] for i in range(0, len(new), shard_size)]
    if fresh:
        manifest = manifest + fresh
        write_text_atomic(out / MANIFEST, json.dumps({"shard_size": shard_size, "shards": manifest}))
    return manifest, pending + list(range(len(manifest) - len(fresh), len(manifest)))


def shard_finished(out: Path, shard: int, size: int) -> bool:
    """Its file exists and holds its images less those that failed (a file cut short, or a stray one, is redone)."""
    import pyarrow.parquet as pq

    part, failed = shard_file(out, shard), failure_file(out, shard)
    failures = len(failed.read_text().splitlines()) if failed.is_file() else 0
    if failures == size:
        return True
    try:
        return part.is_file() and pq.read_metadata(part).num_rows + failures == size
    except OSError:
        return False


def ray_resources(options) -> tuple[dict, tuple[int, int]]:
    """(the remote arguments of a model actor, (min, max) actors). Defaults: a GPU per actor and up to one
    actor per GPU of the cluster when it has GPUs; otherwise one CPU actor per 4 of its CPUs, at least one."""
    import ray

    cluster = ray.cluster_resources()
    gpus = options.ray_gpus_per_actor if options.ray_gpus_per_actor is not None else (1.0 if cluster.get("GPU") else 0.0)
    cpus = options.ray_cpus_per_actor
    if options.ray_actors:
        low, high = options.ray_actors
    else:
        high = int(cluster.get("GPU", 0) // gpus) if gpus else int(cluster.get("CPU", 1) // (cpus + 3))
        low, high = 1, max(1, high)
    return {"num_cpus": cpus, "num_gpus": gpus}, (low, high)  # Ray Data restarts a lost actor and retries its tasks


def connect(address: str | None) -> None:
    """Joins the Ray of `address` (or RAY_ADDRESS); without either, starts a local one. A Ray this process
    already joined is used as it is."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except ConnectionError as e:
        raise UsageError(f"cannot reach the Ray cluster at {address}: {e}") from None


def decode(batch: dict, processor) -> dict:
    """A Ray task: image files → pixels (failed images: a 1×1 stand-in and the reason, never an exception)."""
    from ..data import ImageFiles

    files = ImageFiles.from_paths(list(batch["path"]), processor)
    items = [files[i] for i in range(len(files))]
    pixels = [it.tensor.numpy() if it.error is None else np.zeros((3, 1, 1), np.float32) for it in items]
    return {"shard": batch["shard"], "path": batch["path"], "error": np.array([it.error or "" for it in items], object),
            "pixels": pixels}


class ModelActor:
    """A Ray actor holding the model: pixels → embeddings (and patch tokens), as the local engine computes them."""

    def __init__(self, options, crop, threads: int):
        import torch

        from .embed import load_embedder, token_forward

        torch.set_num_threads(max(1, threads))
        self.options = options
        self.net = load_embedder(options)
        self.forward = token_forward(self.net, options, crop)

    def __call__(self, batch: dict) -> dict:
        import torch

        from .pooling import pool

        o = self.options
        good = np.flatnonzero(batch["error"] == "")
        out = {"shard": batch["shard"], "path": batch["path"], "error": batch["error"]}
        embeddings, patches = None, None
        if len(good):
            pixels = torch.from_numpy(np.stack([batch["pixels"][i] for i in good]))
            with torch.inference_mode():
                tokens = self.forward(pixels.to(o.torch_device, o.torch_dtype))
                prefix = self.net.num_prefix_tokens
                embeddings = pool(tokens, prefix, o.pooling, o.normalize).float().cpu().numpy()
                if o.keep_patches:
                    patches = tokens[:, prefix:].to(torch.float16).cpu().numpy()
        width = embeddings.shape[1] if embeddings is not None else 1
        rows = np.zeros((len(batch["path"]), width), np.float32)
        if embeddings is not None:
            rows[good] = embeddings
        out["embedding"] = rows
        if o.keep_patches:
            shape = patches.shape[1:] if patches is not None else (1, 1)
            full = np.zeros((len(batch["path"]), *shape), np.float16)
            if patches is not None:
                full[good] = patches
            out["patch_tokens"] = full
        return out


class _Shards:
    """The driver's side: rows of unfinished shards until each is whole, then its failures and its file."""

    def __init__(self, out: Path, manifest: list[list[str]], metadata: dict, keep_patches: bool, summary, bar):
        self.out, self.manifest, self.metadata, self.keep_patches = out, manifest, metadata, keep_patches
        self.summary, self.bar, self.rows = summary, bar, {}

    def add(self, batch: dict) -> None:
        for i, shard in enumerate(batch["shard"]):
            shard = int(shard)
            rows = self.rows.setdefault(shard, {})
            path = str(batch["path"][i])
            if path in rows:  # a retried task's row, already here
                continue
            rows[path] = (str(batch["error"][i]), batch["embedding"][i],
                          batch["patch_tokens"][i] if self.keep_patches else None)
            self.bar.update(1)
            if len(rows) == len(self.manifest[shard]):
                self.write(shard)

    def write(self, shard: int) -> None:
        rows = self.rows.pop(shard)
        order = [p for p in self.manifest[shard] if p in rows]
        failures = [(p, rows[p][0]) for p in order if rows[p][0]]
        good = [p for p in order if not rows[p][0]]
        if failures:
            with atomic_write(failure_file(self.out, shard), fsync=True) as tmp:
                tmp.write_text(failure_lines(failures))
        if good:
            write_shard(shard_file(self.out, shard), self.metadata, good, np.stack([rows[p][1] for p in good]),
                        np.stack([rows[p][2] for p in good]) if self.keep_patches else None)
        elif shard_file(self.out, shard).exists():
            shard_file(self.out, shard).unlink()
        self.summary.done += len(good)
        self.summary.failed += len(failures)
        self.summary.failures.extend(failures)


def embed_on_ray(todo: list[str], out: Path, options, processor, crop, metadata: dict, summary, *, progress: bool) -> None:
    """Embeds `todo` (paths, sorted) into `out` as Ray shards; adds to `summary`."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise UsageError("--engine ray needs Ray Data: pip install 'dinokit[ray]'") from None
    from tqdm import tqdm

    connect(options.ray_address)
    manifest, pending = plan_shards(out, sorted(todo), options.rows_per_shard)
    for shard in pending:  # an unfinished shard's failures from a killed run: it is done again whole
        failure_file(out, shard).unlink(missing_ok=True)
    items = [{"shard": s, "path": p} for s in pending for p in manifest[s]]
    if not items:
        return
    remote_args, (low, high) = ray_resources(options)
    batch_size = options.batch_size or (64 if remote_args["num_gpus"] else 8)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    actor_options = replace(options, device="cuda" if remote_args["num_gpus"] else options.device or "cpu")
    data = (ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // batch_size)))
            .map_batches(decode, fn_kwargs={"processor": processor}, batch_size=batch_size, batch_format="numpy", num_cpus=1)
            .map_batches(ModelActor, fn_constructor_kwargs={"options": actor_options, "crop": crop,
                                                           "threads": int(remote_args["num_cpus"])},
                         batch_size=batch_size, batch_format="numpy",
                         compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high), **remote_args))
    bar = tqdm(total=len(items), unit="img", desc="embed (ray)", disable=not progress, dynamic_ncols=True)
    shards = _Shards(out, manifest, metadata, options.keep_patches, summary, bar)
    for batch in data.iter_batches(batch_size=None, batch_format="numpy"):
        shards.add(batch)
    bar.close()
    missing = sorted(shards.rows)
    if missing:
        raise RuntimeError(f"Ray returned shards {missing[:5]} incomplete; rerun to finish them")
