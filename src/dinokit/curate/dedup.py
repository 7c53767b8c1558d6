"""Near-duplicate removal inside a pool, as the paper's self-deduplication: the k-NN graph of the pool, an
edge wherever cosine similarity ≥ threshold, connected components, one representative per component."""
from __future__ import annotations

import numpy as np

from ..distributed import gather_objects, gather_varying
from ..embeddings import DUPLICATE_NEIGHBOURS, components, duplicate_edges, duplicate_labels
from ..embeddings.index import beyond_memory
from ..embeddings.ivfpq import MIN_ROWS
from ..embeddings.neighbors import EXACT_PAIRS, sharded_duplicate_labels, sharded_knn
from . import KEEP
from .pool import Pool, pool_size
from .result import StepResult

DEFAULT_THRESHOLD = 0.95


def wants_on_disk_index(rows: int, dim: int, *, sharded: bool) -> bool:
    """Whether dedup's `auto` searches an IVF-PQ index on disk: from 4 GiB of vectors (as `dinokit index`),
    and, for a pool split across processes (which have no in-memory IVF), once an exact search would compare
    more than 10¹⁰ pairs."""
    return beyond_memory(rows, dim) or (sharded and rows * rows > EXACT_PAIRS and rows >= MIN_ROWS)


def representatives(pool: Pool, labels: np.ndarray, keep: str) -> np.ndarray:
    """The row kept for each component. largest: the most pixels (as a rule the original rather than its
    resized or cropped copies; unreadable files count as empty), ties to the first path; centroid: the
    member nearest the component's mean embedding (the most typical version); first: the member whose path
    sorts first (stable across runs). Ties go to the first path."""
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {KEEP}, got {keep!r}")
    order = np.lexsort((np.asarray(pool.paths, dtype=object).astype(str), labels))
    starts = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1]])
    groups = np.split(order, starts[1:])
    if keep == "first":
        return np.array([g[0] for g in groups], dtype=np.int64)
    if keep == "largest":
        return np.array([g[0] if len(g) == 1 else g[max(range(len(g)), key=lambda j: _size(pool.paths[g[j]]))]
                         for g in groups], dtype=np.int64)
    chosen = []
    for g in groups:
        if len(g) == 1:
            chosen.append(g[0])
            continue
        mean = pool.vectors[g].mean(0)
        chosen.append(g[int(np.argmax(pool.vectors[g] @ mean))])
    return np.array(chosen, dtype=np.int64)


def _size(path: str) -> int:
    """Pixels of an image file, from its header; -1 when it cannot be read. (Bytes would favour a PNG
    re-encoding of a JPEG over the JPEG itself.)"""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.width * image.height
    except (OSError, ValueError):
        return -1


def dedup(pool: Pool, threshold: float = DEFAULT_THRESHOLD, *, k: int = DUPLICATE_NEIGHBOURS, keep: str = "largest",
          index: str = "auto", nprobe: int | None = None, progress: bool = False) -> StepResult:
    """Keeps one image per group of near-duplicates. Kept rows gain dup_group (the group's first row in the
    embeddings) and dup_count
    (its size); removed rows gain duplicate_of (the path kept in their place). `index`: a kind (auto, flat,
    ivf) or the folder of an index of the same embeddings (`dinokit index --kind ivfpq`: searched on disk,
    `nprobe` lists per query; its scores are the quantised estimates)."""
    on_disk = open_pool_index(pool, index, nprobe)
    if pool.sharded:
        return _dedup_sharded(pool, threshold, k=k, keep=keep, index=on_disk, progress=progress)
    if on_disk is not None:
        scores, ids = sharded_knn(pool.vectors, pool.rows, k, index=on_disk, progress=progress)
        ids = np.where(ids >= 0, np.searchsorted(pool.rows, np.maximum(ids, 0)), -1)  # index rows → pool rows
        labels = components(len(pool), *duplicate_edges(scores, ids, threshold))
    else:
        labels, scores, ids = duplicate_labels(pool.vectors, threshold, k=k, kind=index, progress=progress)
    sizes = np.bincount(labels)
    kept_rows = np.sort(representatives(pool, labels, keep))
    kept_by_label = np.full(len(sizes), -1, dtype=np.int64)
    kept_by_label[labels[kept_rows]] = kept_rows
    removed_rows = np.setdiff1d(np.arange(len(pool)), kept_rows)
    nearest = np.where(ids[:, 1:2] >= 0, scores[:, 1:2], np.nan)[:, 0] if ids.shape[1] > 1 else np.full(len(pool), np.nan)
    group = first_row(labels, pool.rows if pool.rows is not None else np.arange(len(pool)))
    removed = pool.take(removed_rows).with_columns(
        duplicate_of=np.array([pool.paths[kept_by_label[labels[i]]] for i in removed_rows], dtype=object))
    kept = pool.take(kept_rows, last=True).with_columns(dup_group=group[labels[kept_rows]], dup_count=sizes[labels[kept_rows]])
    groups = int((sizes > 1).sum())
    return StepResult(kept, removed, {
        "step": "dedup", "threshold": threshold, "keep": keep, "k": k, "input": len(pool), "kept": len(kept),
        "removed": len(removed), "duplicate_groups": groups, "largest_group": int(sizes.max(initial=0)),
        "nearest_neighbour_similarity": similarity_quantiles(nearest)})


def similarity_quantiles(values: np.ndarray) -> dict[str, float]:
    """Quantiles of each image's similarity to its nearest other image: where the threshold falls in them."""
    values = values[np.isfinite(values)]
    if not len(values):
        return {}
    qs = (0.01, 0.1, 0.5, 0.9, 0.99, 0.999)
    return {f"p{q * 100:g}": round(float(v), 4) for q, v in zip(qs, np.quantile(values, qs))}


def first_row(labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """label → the first row (of the embeddings files) in it: a group's id that does not depend on how the
    pool was read or split."""
    first = np.full(labels.max(initial=0) + 1, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first, labels, rows)
    return first


def open_pool_index(pool: Pool, index, nprobe: int | None):
    """The `EmbeddingIndex` when `index` names an index folder (checked to be of the pool's files), else None."""
    from pathlib import Path

    from ..embeddings import EmbeddingIndex
    from ..errors import UsageError

    if index in ("auto", "flat", "ivf"):
        return None
    if not Path(index).is_dir():
        raise UsageError(f"--index must be auto, flat, ivf or an index folder (`dinokit index --kind ivfpq`), got {index!r}")
    opened = EmbeddingIndex(index, nprobe=nprobe)
    if pool.total is None or opened.meta.get("rows", len(opened.paths)) != pool.total:
        raise UsageError(f"the index {index} holds {opened.meta.get('rows', len(opened.paths))} rows, the pool "
                         f"{pool.total}: build it from the same embeddings")
    return opened


def _dedup_sharded(pool: Pool, threshold: float, *, k: int, keep: str, index, progress: bool) -> StepResult:
    """`dedup` with the pool split across torchrun processes: the k-NN and the labels as in
    `sharded_duplicate_labels`; then only the members of duplicate groups (paths, and vectors for
    keep=centroid) are gathered, every process chooses the same representatives, and each keeps or removes
    its own rows. One process gives the same result."""
    labels, scores, ids = sharded_duplicate_labels(pool.vectors, pool.rows, pool.total, threshold, k=k, index=index,
                                                   progress=progress)
    sizes = np.bincount(labels, minlength=1)
    local = labels[pool.rows]
    grouped = np.flatnonzero(sizes[local] > 1)
    members_rows = gather_varying(pool.rows[grouped])
    paths = [p for part in gather_objects([pool.paths[i] for i in grouped]) for p in part]
    vectors = gather_varying(pool.vectors[grouped]) if keep == "centroid" else np.zeros((len(members_rows), 1), np.float32)
    members = Pool(paths, vectors)
    member_labels = labels[members_rows]
    chosen = representatives(members, member_labels, keep) if len(members) else np.zeros(0, np.int64)
    kept_path = dict(zip(member_labels[chosen].tolist(), [paths[i] for i in chosen]))
    chosen_rows = set(members_rows[chosen].tolist())
    is_kept = (sizes[local] == 1) | np.isin(pool.rows, list(chosen_rows))
    kept_rows, removed_rows = np.flatnonzero(is_kept), np.flatnonzero(~is_kept)
    group = first_row(labels, np.arange(len(labels)))
    removed = pool.take(removed_rows).with_columns(
        duplicate_of=np.array([kept_path[int(local[i])] for i in removed_rows], dtype=object))
    kept = pool.take(kept_rows, last=True).with_columns(dup_group=group[local[kept_rows]], dup_count=sizes[local[kept_rows]])
    nearest = gather_varying(np.where(ids[:, 1:2] >= 0, scores[:, 1:2], np.nan)[:, 0] if ids.shape[1] > 1
                             else np.full(len(pool), np.nan, np.float32))
    total_in, total_kept = pool_size(pool), pool_size(pool, len(kept))
    return StepResult(kept, removed, {
        "step": "dedup", "threshold": threshold, "keep": keep, "k": k, "input": total_in, "kept": total_kept,
        "removed": total_in - total_kept, "duplicate_groups": int((sizes > 1).sum()), "largest_group": int(sizes.max(initial=0)),
        "nearest_neighbour_similarity": similarity_quantiles(nearest)})
