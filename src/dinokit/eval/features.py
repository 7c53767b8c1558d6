"""Frozen features for evaluation, computed once and cached.

One pass stores what every protocol needs: the normalised CLS tokens of the last 4 blocks ([N, 4, D],
the last one is the final CLS) and the mean of the last block's normalised patch tokens ([N, D]).
Images go through the official evaluation transform (torchvision Resize 256 bicubic + CenterCrop 224).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import ImageFiles, official_eval_transform
from ..data.folders import labelled_images
from ..distributed import ensure_process_group, rank_and_world
from ..io import atomic_write
from ..runtime.cpu import fast_path
from ..runtime.images import run_over_images
from ..weights import weights_fingerprint

CACHE_VERSION = 1


@dataclass
class FeatureSet:
    cls: torch.Tensor  # [N, B, D] normalised CLS of the last B blocks (B = 1 for Parquet embeddings)
    patch_mean: torch.Tensor | None  # [N, D] mean of the last block's patch tokens, or None
    labels: torch.Tensor  # [N] int64
    classes: list[str]
    paths: list[str]

    def final_cls(self) -> torch.Tensor:
        return self.cls[:, -1]

    def linear_input(self, n_blocks: int, avgpool: bool) -> torch.Tensor:
        """The official linear-probe input: cat(CLS of the last n blocks[, mean patch token])."""
        parts = [self.cls[:, -n_blocks:].flatten(1)]
        if avgpool:
            parts.append(self.patch_mean)
        return torch.cat(parts, dim=1)


def extract(model, paths, transform, *, batch_size=64, num_workers=2, device="cpu", blocks=4,
            progress=True, desc="features") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cls [N, blocks, D], patch_mean [N, D], ok [N] bool) for the given images; unreadable ones are
    zero with ok False. Under torchrun each rank computes every WORLD_SIZE-th image and all gather."""
    from tqdm import tqdm

    rank, world = rank_and_world()
    vit = fast_path(model.dinov2 if hasattr(model, "dinov2") else model)
    # a ConvNeXt's stages differ in width: its last stage alone, as the official ConvNeXt evaluation takes it
    blocks = min(blocks, len(vit.blocks)) if hasattr(vit, "blocks") else 1
    n, dim = len(paths), vit.config.hidden_size
    cls, mean, ok = torch.zeros(n, blocks, dim), torch.zeros(n, dim), torch.zeros(n, dtype=torch.bool)
    mine = list(range(rank, n, world))
    bar = tqdm(total=len(mine), desc=desc, disable=not progress or rank != 0, unit="img")

    def keep(batch, outs):
        bar.update(len(batch.paths) + len(batch.failures))
        if outs is not None:
            idx = torch.tensor(mine)[batch.indices]
            cls[idx] = torch.stack([c for _, c in outs], dim=1).float().cpu()
            mean[idx] = outs[-1][0].mean(dim=1).float().cpu()
            ok[idx] = True

    run_over_images(ImageFiles.from_paths([paths[i] for i in mine], transform),
                    lambda x: vit.get_intermediate_layers(x, n=blocks, return_class_token=True, norm=True), keep,
                    batch_size=batch_size, num_workers=num_workers, device=device)
    bar.close()
    if world > 1:
        dist = ensure_process_group()
        for t in (cls, mean):
            dist.all_reduce(t)  # each image was computed by one rank, the others hold zeros
        flags = ok.to(torch.int32)
        dist.all_reduce(flags)
        ok = flags > 0
    return cls, mean, ok


def _all_ranks_agree(flag: bool) -> bool:
    """True only if every rank says so (ranks must take the same branch around collectives)."""
    if rank_and_world()[1] == 1:
        return flag
    t = torch.tensor([int(flag)])
    ensure_process_group().all_reduce(t, op=torch.distributed.ReduceOp.MIN)
    return bool(t.item())


def _cache_key(vit, paths: list[str], transform, view: str, blocks: int) -> str:
    """What the features depend on: the weights (a fingerprint of the state, not the name as typed), the
    interpolation mode, dtype, every image (absolute path, size, modification time), the transform and
    the view (each augmented view of a linear probe is cached apart)."""
    h = hashlib.sha256()
    dtype = next(vit.parameters()).dtype
    h.update(json.dumps([CACHE_VERSION, weights_fingerprint(vit), vit.interpolate_mode, str(dtype), repr(transform), view,
                         blocks]).encode())
    for p in paths:
        p = os.path.abspath(p)
        st = os.stat(p) if os.path.exists(p) else None
        h.update(f"{p}\0{st.st_size if st else -1}\0{st.st_mtime_ns if st else -1}\n".encode())
    return h.hexdigest()[:24]


def folder_features(model, model_name: str, root, *, cache_dir=None, image_size: int = 224, batch_size=64,
                    num_workers=2, device="cpu", progress=True, transform=None, tag="center") -> FeatureSet:
    """Features of an ImageFolder, from the cache when the weights, files and transform are unchanged
    (`model_name` only labels the progress bar's run; the cache never trusts it)."""
    paths, labels, classes = labelled_images(root)
    transform = transform or official_eval_transform(resize=image_size * 256 // 224, crop=image_size)
    desc = f"{tag}:{image_size}"
    cache_file = None
    if cache_dir is not None:
        vit = model.dinov2 if hasattr(model, "dinov2") else model
        cache_file = Path(cache_dir) / f"{_cache_key(vit, paths, transform, desc, 4)}.pt"
        if _all_ranks_agree(cache_file.is_file()):
            d = torch.load(cache_file, weights_only=True)
            return FeatureSet(d["cls"], d["patch_mean"], d["labels"], classes, paths)
    cls, mean, ok = extract(model, paths, transform, batch_size=batch_size, num_workers=num_workers,
                            device=device, progress=progress, desc=f"features {Path(root).name}")
    keep = ok.nonzero().flatten()
    fs = FeatureSet(cls[keep], mean[keep], torch.tensor(labels)[keep], classes, [paths[i] for i in keep])
    if cache_file is not None and rank_and_world()[0] == 0:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(cache_file) as tmp:
            torch.save({"cls": fs.cls, "patch_mean": fs.patch_mean, "labels": fs.labels}, tmp)
    return fs


def parquet_features(source, labels_file=None, classes: list[str] | None = None) -> FeatureSet:
    """Embeddings from `dinokit embed` with labels from a `label` column, a CSV file (path,label), or the
    name of each image's parent folder (ImageFolder layout)."""
    import pyarrow.dataset as pads

    from ..embeddings import read_embeddings

    paths, emb, _ = read_embeddings(source)
    names = pads.dataset(str(source), format="parquet").schema.names
    if "label" in names:
        raw = pads.dataset(str(source), format="parquet").to_table(columns=["label"]).column("label").to_pylist()
    elif labels_file:
        table = dict(line.rsplit(",", 1) for line in Path(labels_file).read_text().splitlines() if "," in line)
        raw = [table.get(p, table.get(Path(p).name)) for p in paths]
    else:
        raw = [Path(p).parent.name for p in paths]
    classes = classes or sorted({str(r) for r in raw if r is not None})
    index = {c: i for i, c in enumerate(classes)}
    keep = [i for i, r in enumerate(raw) if r is not None and str(r) in index]
    x = torch.nn.functional.normalize(torch.from_numpy(np.asarray(emb)[keep]), dim=-1)
    return FeatureSet(x[:, None], None, torch.tensor([index[str(raw[i])] for i in keep]), classes,
                      [paths[i] for i in keep])
