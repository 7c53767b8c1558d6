"""Balancing without seeds (Vo et al., 2024, "Automatic data curation for self-supervised learning"):
hierarchical k-means finds the concepts of the pool at several scales, then a target number of images is
sampled evenly across the hierarchy, top-down, so that frequent concepts stop drowning rare ones."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..distributed import gather_varying, rank_and_world
from ..io import atomic_write
from . import STRATEGIES
from .kmeans import assign, kmeans
from .pool import Pool, pool_offset, pool_size
from .result import StepResult


def auto_levels(n: int) -> list[int]:
    """Cluster counts, fine to coarse: √n, then √n / 3 (1M images: 1000 → 333). Balancing evens out the
    coarsest level, so it must not have fewer clusters than the concepts to keep apart: set levels yourself
    when you know more (the paper's 4 levels for 1B images: 10M → 500k → 50k → 10k)."""
    fine = max(2, int(round(np.sqrt(n))))
    return [fine, fine // 3] if fine // 3 >= 2 else [fine]


def hierarchical_kmeans(vectors: np.ndarray, levels: list[int], *, iterations: int = 20, seed: int = 0,
                        progress: bool = False, rows: np.ndarray | None = None, total: int | None = None,
                        checkpoint: Path | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """(labels [N, L], centroids per level): column 0 the finest cluster of each point; level l + 1 clusters
    the centroids of level l, and a point belongs to the parent of its cluster. `rows`/`total`: `vectors` are
    this process's rows of a pool split across processes (`kmeans`); labels are of the local rows.
    `checkpoint`: a folder where each finished level's centroids are kept, so that a rerun after a kill
    assigns the points to them instead of training the level again."""
    labels = np.zeros((len(vectors), len(levels)), dtype=np.int64)
    points, all_centroids = vectors, []
    for level, k in enumerate(levels):
        saved = checkpoint / f"level-{level + 1}.npy" if checkpoint else None
        local = {"rows": rows, "total": total} if level == 0 else {}
        if saved is not None and saved.is_file():
            centroids = np.load(saved)
            assignment = assign(points, centroids)
        else:
            centroids, assignment = kmeans(points, k, iterations=iterations, seed=seed + level, progress=progress,
                                           desc=f"k-means level {level + 1} ({k})", **local)
            if saved is not None and rank_and_world()[0] == 0:
                saved.parent.mkdir(parents=True, exist_ok=True)
                with atomic_write(saved) as tmp, open(tmp, "wb") as f:
                    np.save(f, centroids)
        labels[:, level] = assignment if level == 0 else assignment[labels[:, level - 1]]
        all_centroids.append(centroids)
        points = centroids
    return labels, all_centroids


def allocate(sizes: np.ndarray, target: int) -> np.ndarray:
    """Split target among groups as evenly as their sizes allow (water filling): small groups give all they
    have, the rest is shared by the larger ones."""
    alloc = np.zeros(len(sizes), dtype=np.int64)
    remaining = min(int(target), int(sizes.sum()))
    order = np.argsort(sizes, kind="stable")
    for i, g in enumerate(order):
        alloc[g] = min(int(sizes[g]), remaining // (len(order) - i))
        remaining -= alloc[g]
    return alloc


def balanced_sample(labels: np.ndarray, target: int, *, strategy: str = "random", distances: np.ndarray | None = None,
                    seed: int = 0) -> np.ndarray:
    """Rows chosen top-down: target split evenly over the coarsest clusters, each share split evenly over
    their sub-clusters, and so on; within a finest cluster, random rows or those closest to its centroid."""
    if strategy not in STRATEGIES:
        raise ValueError(f"sampling strategy must be one of {STRATEGIES}, got {strategy!r}")
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []

    def take(rows: np.ndarray, level: int, count: int) -> None:
        if level < 0:
            if strategy == "random":
                chosen.append(rng.choice(rows, count, replace=False))
            else:
                chosen.append(rows[np.argsort(distances[rows], kind="stable")[:count]])
            return
        groups, inverse = np.unique(labels[rows, level], return_inverse=True)
        members = [rows[inverse == g] for g in range(len(groups))]
        for part, share in zip(members, allocate(np.array([len(m) for m in members]), count)):
            if share:
                take(part, level - 1, int(share))

    take(np.arange(len(labels)), labels.shape[1] - 1, target)
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def entropy(labels: np.ndarray) -> float:
    """Shannon entropy (nats) of the cluster-size distribution."""
    p = np.bincount(labels).astype(np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


def balance(pool: Pool, target: int, *, levels: list[int] | None = None, strategy: str = "random",
            iterations: int = 20, seed: int = 0, progress: bool = False, checkpoint: Path | None = None) -> StepResult:
    """Kept rows gain cluster_l1 … cluster_lL (fine to coarse). The summary holds the finest-level cluster
    sizes before and after, and their entropies (higher: more even). A sharded pool (torchrun): each process
    clusters its rows (`hierarchical_kmeans`); the labels (8 bytes per image and level) are gathered, every
    process draws the same sample, and each keeps its own rows of it — the one-process selection."""
    size = pool_size(pool)
    levels = [min(k, size) for k in (levels or auto_levels(size))]
    offset = pool_offset(pool)
    # k-means samples by position among the usable rows, so that the split (and the unusable rows) changes nothing
    shard = {"rows": offset + np.arange(len(pool)), "total": size} if pool.sharded else {}
    local, centroids = hierarchical_kmeans(pool.vectors, levels, iterations=iterations, seed=seed, progress=progress,
                                           checkpoint=checkpoint, **shard)
    local_distances = np.concatenate([((pool.vectors[i:i + 65_536] - centroids[0][local[i:i + 65_536, 0]]) ** 2).sum(1)
                                      for i in range(0, len(pool), 65_536)] or [np.zeros(0, np.float32)])
    labels, distances = (gather_varying(local), gather_varying(local_distances)) if pool.sharded else (local, local_distances)
    chosen = balanced_sample(labels, target, strategy=strategy, distances=distances, seed=seed)
    mine = chosen[(chosen >= offset) & (chosen < offset + len(pool))] - offset
    kept = pool.take(mine, last=True).with_columns(**{f"cluster_l{i + 1}": local[mine, i] for i in range(len(levels))})
    before = np.bincount(labels[:, 0], minlength=levels[0])
    after = np.bincount(labels[chosen, 0], minlength=levels[0])
    return StepResult(kept, None, {
        "step": "balance", "target": target, "levels": levels, "strategy": strategy, "input": size,
        "kept": len(chosen), "removed": size - len(chosen),
        "entropy_before": round(entropy(labels[:, 0]), 4), "entropy_after": round(entropy(labels[chosen, 0]), 4),
        "max_entropy": round(float(np.log(levels[0])), 4),
        "cluster_sizes_before": before.tolist(), "cluster_sizes_after": after.tolist()})
