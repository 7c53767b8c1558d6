"""Near-duplicate removal inside a pool, as the paper's self-deduplication: the k-NN graph of the pool, an
edge wherever cosine similarity ≥ threshold, connected components, one representative per component."""
from __future__ import annotations

import numpy as np

from ..embeddings import DUPLICATE_NEIGHBOURS, duplicate_labels
from . import KEEP
from .pool import Pool
from .result import StepResult

DEFAULT_THRESHOLD = 0.95


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
          index: str = "auto", progress: bool = False) -> StepResult:
    """Keeps one image per group of near-duplicates. Kept rows gain dup_group (component id) and dup_count
    (its size); removed rows gain duplicate_of (the path kept in their place)."""
    labels, scores, ids = duplicate_labels(pool.vectors, threshold, k=k, kind=index, progress=progress)
    sizes = np.bincount(labels)
    kept_rows = np.sort(representatives(pool, labels, keep))
    kept_by_label = np.full(len(sizes), -1, dtype=np.int64)
    kept_by_label[labels[kept_rows]] = kept_rows
    removed_rows = np.setdiff1d(np.arange(len(pool)), kept_rows)
    nearest = np.where(ids[:, 1:2] >= 0, scores[:, 1:2], np.nan)[:, 0] if ids.shape[1] > 1 else np.full(len(pool), np.nan)
    kept = pool.take(kept_rows).with_columns(dup_group=labels[kept_rows], dup_count=sizes[labels[kept_rows]])
    removed = pool.take(removed_rows).with_columns(
        duplicate_of=np.array([pool.paths[kept_by_label[labels[i]]] for i in removed_rows], dtype=object))
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
