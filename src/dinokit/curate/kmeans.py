"""k-means for curation, split across torchrun processes when there are several (Lloyd's iterations; each
process assigns a slice of the points, the centroid sums are all-reduced). One process gives the same result
as many. The k-NN the curation steps use is `dinokit.embeddings.knn`."""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..distributed import ensure_process_group, gather_rows, gather_varying, max_over_processes, rank_and_world, row_slice

MAX_POINTS_PER_CENTROID = 256  # k-means trains on a sample of at most this many points per cluster (as FAISS)
SEEDING_POINTS_PER_CENTROID = 32  # k-means++ draws its start from the first 32·k points of that sample
CANDIDATES = 4  # nearest centroids FAISS proposes for each point
ASSIGN_CHUNK = 262_144  # points assigned at a time
NEAR_TIE = 2.0 ** -12  # closer than this × (|x|² + max |c|²), two centroids are compared again in float64


def assign(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The index of the nearest centroid (squared L2) of each point; ties go to the lower index.

    FAISS ranks the centroids in float32 through BLAS, whose rounding changes with the thread count and with
    where a batch starts, so a point with two almost equidistant centroids could flip between runs that split
    the points differently. A point whose best candidates lie closer than that rounding could reach is decided
    again in float64, elementwise, which no split changes: one process and many give the same assignment."""
    import faiss

    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(centroids)
    nearest = np.zeros(len(points), np.int64)
    for lo in range(0, len(points), ASSIGN_CHUNK):  # the candidates of a chunk at a time, not of millions of points
        nearest[lo:lo + ASSIGN_CHUNK] = _assign_chunk(np.ascontiguousarray(points[lo:lo + ASSIGN_CHUNK], dtype=np.float32),
                                                      centroids, index)
    return nearest


def _assign_chunk(points: np.ndarray, centroids: np.ndarray, index) -> np.ndarray:
    dist, ids = index.search(points, min(CANDIDATES, len(centroids)))
    nearest = ids[:, 0].astype(np.int64)
    if ids.shape[1] == 1:
        return nearest
    margin = NEAR_TIE * (np.einsum("ij,ij->i", points, points) + np.einsum("ij,ij->i", centroids, centroids).max())
    near = dist[:, 1] - dist[:, 0] < margin
    for rows in np.array_split(np.flatnonzero(near), max(1, int(near.sum()) // 4096)):
        candidates = np.sort(ids[rows], axis=1)
        crowded = dist[rows, -1] - dist[rows, 0] < margin[rows]  # every candidate is near: so may the next be
        nearest[rows[~crowded]] = _exactly_nearest(points[rows[~crowded]], centroids, candidates[~crowded])
        for row in rows[crowded]:
            nearest[row] = _exactly_nearest(points[row:row + 1], centroids, np.arange(len(centroids))[None])[0]
    return nearest


def _exactly_nearest(points: np.ndarray, centroids: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Of each row's candidate centroids (sorted ids), the nearest by float64 distance, the first on ties."""
    if not len(points):
        return np.zeros(0, np.int64)
    diff = points[:, None, :].astype(np.float64) - centroids[candidates].astype(np.float64)
    return candidates[np.arange(len(points)), np.einsum("ijk,ijk->ij", diff, diff).argmin(1)]


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
    local, scale = _fixed_point(local_sample, len(chosen))
    world = rank_and_world()[1]
    for _ in tqdm(range(iterations), desc=desc, disable=not progress, leave=False):
        ids = torch.from_numpy(assign(local_sample, centroids))
        sums = torch.zeros(k, points.shape[1], dtype=torch.int64).index_add_(0, ids, local)
        counts = torch.bincount(ids, minlength=k)
        if world > 1:
            dist = ensure_process_group()
            dist.all_reduce(sums)
            dist.all_reduce(counts)
        filled = counts > 0
        centroids[filled.numpy()] = (sums[filled].double() / scale / counts[filled, None]).float().numpy()
    if sharded:
        return centroids, assign(points, centroids)
    lo, hi, per = row_slice(n)
    return centroids, gather_rows(assign(points[lo:hi], centroids), n, per)


def _fixed_point(points: np.ndarray, count: int) -> tuple[torch.Tensor, float]:
    """(points × 2^s rounded to int64, 2^s), the largest s for which `count` such rows (this process's and the
    others') sum without overflow. Integer sums do not depend on their order, so the centroids come out the
    same however the points are split across processes; 2^s keeps more bits than float32 has."""
    bound = float(max_over_processes(float(np.abs(points).max()) if len(points) else 0.0))
    scale = 2.0 ** np.floor(np.log2(2.0 ** 62 / (max(count, 1) * bound))) if bound > 0 else 1.0
    fixed = torch.empty(points.shape, dtype=torch.int64)
    for lo in range(0, len(points), 65536):
        fixed[lo:lo + 65536] = torch.from_numpy(points[lo:lo + 65536]).double().mul_(scale).round_().long()
    return fixed, scale
