"""k-means for curation, split across torchrun processes when there are several (Lloyd's iterations; each
process assigns a slice of the points, the centroid sums are all-reduced). One process gives the same result
as many. The k-NN the curation steps use is `dinokit.embeddings.knn`."""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..distributed import ensure_process_group, gather_rows, gather_varying, rank_and_world, row_slice

MAX_POINTS_PER_CENTROID = 256  # k-means trains on a sample of at most this many points per cluster (as FAISS)
SEEDING_POINTS_PER_CENTROID = 32  # k-means++ draws its start from the first 32·k points of that sample


def assign(points: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(squared L2 distance, index) of the nearest centroid of each point, computed locally."""
    import faiss

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    dist, ids = index.search(np.ascontiguousarray(points, dtype=np.float32), 1)
    return dist[:, 0], ids[:, 0]


def kmeans_plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k starting centroids by greedy k-means++ (Arthur & Vassilvitskii, 2007; greedy as scikit-learn): each
    step draws 2 + log k candidates with probability ∝ squared distance to the nearest centroid so far and keeps
    the one that lowers the total most. Random starts put several centroids in one dense cluster."""
    x = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))
    trials = 2 + int(np.log(k))
    chosen = [int(rng.integers(len(x)))]
    d2 = ((x - x[chosen[0]]) ** 2).sum(1)
    for _ in range(1, k):
        cumulative = torch.cumsum(d2.double(), 0)
        total = cumulative[-1].item()
        if total <= 0:  # fewer distinct points than k: repeat one (its cluster stays empty)
            chosen.append(chosen[-1])
            continue
        candidates = torch.searchsorted(cumulative, torch.from_numpy(rng.random(trials) * total)).clamp_(max=len(x) - 1)
        options = torch.minimum(d2[None], torch.cdist(x[candidates], x) ** 2)
        best = int(options.sum(1).argmin())
        chosen.append(int(candidates[best]))
        d2 = options[best]
    return x[chosen].numpy().copy()


def kmeans(points: np.ndarray, k: int, *, iterations: int = 20, seed: int = 0, progress: bool = False,
           desc: str = "k-means", rows: np.ndarray | None = None, total: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(centroids [k, D], assignment [N]) by Lloyd's algorithm from a k-means++ start. Trains on a seeded
    sample of at most 256 points per centroid, then assigns every point. An empty cluster keeps its previous
    centroid. Every process computes the same start from the same seed.

    `rows`, `total`: `points` are only this process's rows of a pool of `total` rows split across processes
    (the follow-up paper's distributed k-means): each process takes its part of the sample, the k-means++
    points are gathered, the centroid sums all-reduced, and the assignment returned is of the local points."""
    sharded = rows is not None
    n = total if sharded else len(points)
    k = min(k, n)
    rng = np.random.default_rng(seed)
    chosen = np.arange(n) if n <= k * MAX_POINTS_PER_CENTROID else \
        np.sort(rng.choice(n, size=k * MAX_POINTS_PER_CENTROID, replace=False))
    if sharded:
        local_sample = points[np.isin(rows, chosen)]
        seeding = gather_varying(points[np.isin(rows, chosen[: k * SEEDING_POINTS_PER_CENTROID])])
    else:
        sample = points if len(chosen) == n else points[chosen]
        seeding = sample[: k * SEEDING_POINTS_PER_CENTROID]
        lo, hi, _ = row_slice(len(sample))
        local_sample = sample[lo:hi]
    centroids = kmeans_plus_plus(seeding, min(k, len(seeding)), rng)
    k = len(centroids)
    local = torch.from_numpy(np.ascontiguousarray(local_sample, dtype=np.float32)).double()
    world = rank_and_world()[1]
    for _ in tqdm(range(iterations), desc=desc, disable=not progress, leave=False):
        _, ids = assign(local_sample, centroids) if len(local_sample) else (None, np.zeros(0, np.int64))
        ids = torch.from_numpy(ids)
        sums = torch.zeros(k, points.shape[1], dtype=torch.float64).index_add_(0, ids, local)
        counts = torch.bincount(ids, minlength=k).double()
        if world > 1:
            dist = ensure_process_group()
            dist.all_reduce(sums)
            dist.all_reduce(counts)
        filled = counts > 0
        centroids[filled.numpy()] = (sums[filled] / counts[filled, None]).float().numpy()
    if sharded:
        return centroids, assign(points, centroids)[1] if len(points) else np.zeros(0, np.int64)
    lo, hi, per = row_slice(n)
    return centroids, gather_rows(assign(points[lo:hi], centroids)[1], n, per)
