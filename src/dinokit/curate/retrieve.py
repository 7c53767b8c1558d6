"""Seed-based curation, as the paper builds LVD-142M: keep the pool images that resemble a curated seed set.

sample: the n nearest pool images of each seed (the paper: 4 for most seed sets).
cluster: k-means on the pool; from every cluster that contains a seed, m images (for large seed sets, where
the neighbours of individual seeds would cover too little of the pool)."""
from __future__ import annotations

import numpy as np

from ..embeddings import knn
from . import MODES
from .kmeans import assign, kmeans
from .pool import Pool
from .result import StepResult


def retrieve(pool: Pool, seeds: Pool, *, mode: str = "sample", n: int = 4, clusters: int | None = None,
             per_cluster: int = 100, min_score: float = -1.0, index: str = "auto", seed: int = 0,
             progress: bool = False) -> StepResult:
    """Selected rows gain seed (the seed image that caused the selection: the most similar one when several
    did) and seed_score (cosine similarity to it); cluster mode adds cluster."""
    if mode not in MODES:
        raise ValueError(f"retrieval mode must be one of {MODES}, got {mode!r}")
    if seeds.vectors.shape[1] != pool.vectors.shape[1]:
        raise ValueError(f"seed embeddings have dimension {seeds.vectors.shape[1]}, the pool "
                         f"{pool.vectors.shape[1]}: embed both with the same model")
    summary = {"step": "retrieve", "mode": mode, "seeds": len(seeds), "input": len(pool)}
    if mode == "sample":
        scores, ids = knn(pool.vectors, seeds.vectors, n, kind=index, progress=progress)
        best_score = np.full(len(pool), -np.inf, np.float32)
        best_seed = np.full(len(pool), -1, np.int64)
        for s in range(len(seeds)):  # the most similar seed wins an image that several seeds retrieved
            ok = (ids[s] >= 0) & (scores[s] >= min_score)
            rows, sc = ids[s][ok], scores[s][ok]
            better = sc > best_score[rows]
            best_score[rows[better]], best_seed[rows[better]] = sc[better], s
        rows = np.flatnonzero(best_seed >= 0)
        kept = pool.take(rows).with_columns(
            seed=np.array([seeds.paths[s] for s in best_seed[rows]], dtype=object), seed_score=best_score[rows])
        summary.update(n=n, min_score=min_score)
    else:
        clusters = clusters or max(2, int(round(np.sqrt(len(pool)))))
        centroids, labels = kmeans(pool.vectors, clusters, seed=seed, progress=progress)
        seed_cluster = assign(seeds.vectors, centroids)
        rng = np.random.default_rng(seed)
        rows, row_seed = [], []
        for c in np.unique(seed_cluster):
            members = np.flatnonzero(labels == c)
            members = members if len(members) <= per_cluster else np.sort(rng.choice(members, per_cluster, replace=False))
            cluster_seeds = np.flatnonzero(seed_cluster == c)
            sims = pool.vectors[members] @ seeds.vectors[cluster_seeds].T
            rows.append(members)
            row_seed.append(cluster_seeds[sims.argmax(1)])
        rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        row_seed = np.concatenate(row_seed) if row_seed else np.zeros(0, np.int64)
        order = np.argsort(rows)
        rows, row_seed = rows[order], row_seed[order]
        kept = pool.take(rows).with_columns(
            seed=np.array([seeds.paths[s] for s in row_seed], dtype=object),
            seed_score=np.einsum("ij,ij->i", pool.vectors[rows], seeds.vectors[row_seed]), cluster=labels[rows])
        summary.update(clusters=int(len(centroids)), per_cluster=per_cluster,
                       clusters_with_seeds=int(len(np.unique(seed_cluster))))
    summary.update(kept=len(kept), removed=len(pool) - len(kept))
    return StepResult(kept, None, summary)
