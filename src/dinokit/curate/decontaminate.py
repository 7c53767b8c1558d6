"""Relative deduplication: drop from the pool every near-duplicate of an image in a protected set
(evaluation and test sets), so that benchmark numbers measured after pretraining stay honest."""
from __future__ import annotations

import numpy as np

from ..embeddings import knn
from .dedup import DEFAULT_THRESHOLD
from .pool import Pool
from .result import StepResult


def decontaminate(pool: Pool, protected: list[Pool] | Pool, threshold: float = DEFAULT_THRESHOLD, *,
                  index: str = "auto", progress: bool = False) -> StepResult:
    """Removed rows gain contaminated_by (the most similar protected image) and contamination_score."""
    protected = [protected] if isinstance(protected, Pool) else list(protected)
    paths = [p for s in protected for p in s.paths]
    vectors = np.concatenate([s.vectors for s in protected]) if protected else np.zeros((0, pool.vectors.shape[1]), np.float32)
    if not len(paths) or not len(pool):
        return StepResult(pool, pool.take([]).with_columns(contaminated_by=np.array([], object),
                                                         contamination_score=np.array([], np.float32)),
                          {"step": "decontaminate", "input": len(pool), "kept": len(pool), "removed": 0,
                           "protected": len(paths), "threshold": threshold})
    if vectors.shape[1] != pool.vectors.shape[1]:
        raise ValueError(f"protected embeddings have dimension {vectors.shape[1]}, the pool {pool.vectors.shape[1]}: "
                         "embed both with the same model")
    scores, ids = knn(vectors, pool.vectors, 1, kind=index, progress=progress)
    hit = scores[:, 0] >= threshold
    removed = pool.take(np.flatnonzero(hit)).with_columns(
        contaminated_by=np.array([paths[i] for i in ids[hit, 0]], dtype=object),
        contamination_score=scores[hit, 0])
    return StepResult(pool.take(np.flatnonzero(~hit)), removed, {
        "step": "decontaminate", "threshold": threshold, "protected": len(paths), "input": len(pool),
        "kept": int((~hit).sum()), "removed": int(hit.sum()),
        "protected_images_with_copies": int(len(np.unique(ids[hit, 0])))})
