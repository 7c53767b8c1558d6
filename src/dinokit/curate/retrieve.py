"""Seed-based curation, as the paper builds LVD-142M: keep the pool images that resemble a curated seed set.

sample: the n nearest pool images of each seed (the paper: 4 for most seed sets).
cluster: k-means on the pool; from every cluster that contains a seed, m images (for large seed sets, where
the neighbours of individual seeds would cover too little of the pool).

A sharded pool (torchrun, each process its slice of the rows) gives the one-process selection: in sample
mode every process finds each seed's n best among its rows and the n best of all are kept; in cluster mode
k-means is split (`kmeans`), the cluster labels (8 bytes an image) are gathered and every process draws the
same members. Scores are recomputed elementwise (`pair_scores`), so no split changes a ranking."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..distributed import gather_varying, rank_and_world
from ..embeddings.neighbors import knn, pair_scores, search_kind
from . import MODES
from .kmeans import assign, kmeans
from .pool import Pool, pool_offset, pool_size
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
    size, offset = pool_size(pool), pool_offset(pool)
    summary = {"step": "retrieve", "mode": mode, "seeds": len(seeds), "input": size}
    if mode == "sample":
        rows, row_seed, row_score = _nearest_of_each_seed(pool, seeds, n, min_score, size, offset, kind=index,
                                                          progress=progress)
        kept = pool.take(rows, last=True).with_columns(
            seed=np.array([seeds.paths[s] for s in row_seed], dtype=object), seed_score=row_score)
        summary.update(n=n, min_score=min_score)
    else:
        clusters = clusters or max(2, int(round(np.sqrt(size))))
        shard = {"rows": offset + np.arange(len(pool)), "total": size} if pool.sharded else {}
        centroids, local = kmeans(pool.vectors, clusters, seed=seed, progress=progress, **shard)
        labels = gather_varying(local) if pool.sharded else local
        seed_cluster = assign(seeds.vectors, centroids)
        chosen = _cluster_members(labels, np.unique(seed_cluster), per_cluster, seed)
        rows = chosen[(chosen >= offset) & (chosen < offset + len(pool))] - offset
        row_seed = np.zeros(len(rows), np.int64)
        seeds_of = dict(_members(seed_cluster, np.unique(seed_cluster)))
        for c, at in _members(local[rows], np.unique(local[rows])):  # each row's most similar seed of its cluster
            sims = np.einsum("id,jd->ij", pool.vectors[rows[at]], seeds.vectors[seeds_of[c]])
            row_seed[at] = seeds_of[c][sims.argmax(1)]
        kept = pool.take(rows).with_columns(
            seed=np.array([seeds.paths[s] for s in row_seed], dtype=object),
            seed_score=pair_scores(pool.vectors[rows], seeds.vectors[row_seed]), cluster=local[rows])
        summary.update(clusters=int(len(centroids)), per_cluster=per_cluster,
                       clusters_with_seeds=int(len(np.unique(seed_cluster))))
    count = pool_size(pool, len(kept))
    summary.update(kept=count, removed=size - count)
    return StepResult(kept, None, summary)


def _nearest_of_each_seed(pool: Pool, seeds: Pool, n: int, min_score: float, size: int, offset: int, *, kind: str,
                          progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(local rows, their seed, its score) of the rows among some seed's n nearest (ties: the lower row) with
    a score ≥ min_score; a row that several seeds retrieved goes to the most similar one (ties: the first).
    `size`, `offset`: the whole pool's images and where this process's slice starts."""
    kind = search_kind(kind, size, len(seeds))
    found = np.full((len(seeds), n), -1, np.int64)
    if len(pool):
        found[:, : min(n, len(pool))] = knn(pool.vectors, seeds.vectors, n, kind=kind, split=not pool.sharded,
                                            progress=progress)[1]
    valid = found >= 0
    scores = np.full(found.shape, -np.inf, np.float32)
    pairs = np.flatnonzero(valid)
    scores.flat[pairs] = pair_scores(pool.vectors[found.flat[pairs]], seeds.vectors[pairs // n])
    rows = np.where(valid, found + offset, np.iinfo(np.int64).max)
    if pool.sharded:  # every process's n best of each seed, side by side: [seeds, world · n]
        rows, scores = (np.concatenate(np.split(gather_varying(a), rank_and_world()[1]), axis=1)
                        for a in (rows, scores))
    best = np.lexsort((rows, -scores), axis=1)[:, :n]
    rows, scores = np.take_along_axis(rows, best, 1), np.take_along_axis(scores, best, 1)
    take = (rows >= offset) & (rows < offset + len(pool)) & (scores >= min_score)
    seed_of = np.broadcast_to(np.arange(len(seeds))[:, None], rows.shape)[take]
    rows, scores = rows[take] - offset, scores[take]
    order = np.lexsort((seed_of, -scores, rows))  # by row, then the best score, then the first seed
    rows, scores, seed_of = rows[order], scores[order], seed_of[order]
    first = np.r_[True, rows[1:] != rows[:-1]]
    return rows[first], seed_of[first], scores[first]


def _cluster_members(labels: np.ndarray, clusters: np.ndarray, per_cluster: int, seed: int) -> np.ndarray:
    """The pool rows drawn from each given cluster (all of them up to per_cluster), ascending."""
    rng = np.random.default_rng(seed)
    chosen = [members if len(members) <= per_cluster else np.sort(rng.choice(members, per_cluster, replace=False))
              for _, members in _members(labels, clusters)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def _members(labels: np.ndarray, wanted: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(label, the positions holding it, ascending) for each wanted label, from one sort of the labels rather
    than a pass over all of them per label (millions of images, thousands of clusters with seeds)."""
    order = np.argsort(labels, kind="stable")
    ordered = labels[order]
    for label, lo, hi in zip(wanted, np.searchsorted(ordered, wanted, "left"), np.searchsorted(ordered, wanted, "right")):
        yield int(label), order[lo:hi]
