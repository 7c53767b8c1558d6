"""Relative deduplication: drop from the pool every near-duplicate of an image in a protected set
(evaluation and test sets), so that benchmark numbers measured after pretraining stay honest."""
from __future__ import annotations

import numpy as np

from ..distributed import gather_varying
from ..embeddings.neighbors import knn, pair_scores, search_kind
from .dedup import DEFAULT_THRESHOLD
from .pool import Pool, pool_size
from .result import StepResult


def decontaminate(pool: Pool, protected: list[Pool] | Pool, threshold: float = DEFAULT_THRESHOLD, *,
                  index: str = "auto", progress: bool = False) -> StepResult:
    """Removed rows gain contaminated_by (the most similar protected image) and contamination_score. The
    score is recomputed elementwise, so the threshold cuts the same whether the pool is split or not. A
    sharded pool (torchrun): every process compares its own rows with the whole protected set (small), and
    the summary counts over all processes."""
    protected = [protected] if isinstance(protected, Pool) else list(protected)
    paths = [p for s in protected for p in s.paths]
    vectors = np.concatenate([s.vectors for s in protected]) if protected else np.zeros((0, pool.vectors.shape[1]), np.float32)
    total = pool_size(pool)
    summary = {"step": "decontaminate", "threshold": threshold, "protected": len(paths), "input": total}
    if not len(paths) or not total:
        return StepResult(pool, pool.take([]).with_columns(contaminated_by=np.array([], object),
                                                         contamination_score=np.array([], np.float32)),
                          {**summary, "kept": total, "removed": 0, "protected_images_with_copies": 0})
    if vectors.shape[1] != pool.vectors.shape[1]:
        raise ValueError(f"protected embeddings have dimension {vectors.shape[1]}, the pool {pool.vectors.shape[1]}: "
                         "embed both with the same model")
    kind = search_kind(index, len(vectors), total)  # the whole pool's pairs: every split makes the same choice
    _, ids = knn(vectors, pool.vectors, 1, kind=kind, split=not pool.sharded, progress=progress)
    nearest = np.maximum(ids[:, 0], 0)
    scores = pair_scores(pool.vectors, vectors[nearest])
    hit = (ids[:, 0] >= 0) & (scores >= threshold)
    removed = pool.take(np.flatnonzero(hit)).with_columns(
        contaminated_by=np.array([paths[i] for i in nearest[hit]], dtype=object), contamination_score=scores[hit])
    copied = np.unique(nearest[hit])
    copied = np.unique(gather_varying(copied)) if pool.sharded else copied
    removed_count = pool_size(pool, int(hit.sum()))
    return StepResult(pool.take(np.flatnonzero(~hit), last=True), removed, {
        **summary, "kept": total - removed_count, "removed": removed_count, "protected_images_with_copies": len(copied)})
