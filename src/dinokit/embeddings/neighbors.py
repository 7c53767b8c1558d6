"""Nearest neighbours of embeddings and the near-duplicate graph built on them: one k-NN for every job
(search, dedup, curation), split across torchrun processes when there are several (each searches a slice
of the queries against the whole database; one process gives the same result as many)."""
from __future__ import annotations

import numpy as np

from ..distributed import gather_rows, row_slice
from .index import build_faiss_index, normalized

EXACT_PAIRS = 10 ** 10  # above this many comparisons an exact search takes minutes on a laptop: IVF
DUPLICATE_NEIGHBOURS = 64  # neighbours per item in the duplicate graph: groups larger than this may split


def knn(database: np.ndarray, queries: np.ndarray, k: int, *, kind: str = "auto", index=None,
        batch_size: int = 65_536, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Cosine k nearest neighbours of each query in database: (scores, ids), [Q, k] each, best first; ids -1
    where fewer than k exist. kind: flat (exact), ivf (approximate, for millions) or auto: exact while the
    database is small or there are at most 10¹⁰ query-database pairs to compare, IVF beyond. Queries go in
    batches, so millions of them never make one giant result."""
    from tqdm.auto import tqdm

    if index is None:
        if kind == "auto":
            kind = "flat" if len(database) < 10_000 or len(database) * len(queries) <= EXACT_PAIRS else "ivf"
        index = build_faiss_index(normalized(database), kind)
    k = min(k, index.ntotal)
    lo, hi, per = row_slice(len(queries))
    mine = queries[lo:hi]
    scores = np.empty((len(mine), k), np.float32)
    ids = np.empty((len(mine), k), np.int64)
    for start in tqdm(range(0, len(mine), batch_size), desc="k-NN", unit="batch", disable=not progress, leave=False):
        end = start + batch_size
        scores[start:end], ids[start:end] = index.search(normalized(mine[start:end]), k)
    return gather_rows(scores, len(queries), per), gather_rows(ids, len(queries), per)


def components(n: int, pairs_i: np.ndarray, pairs_j: np.ndarray) -> np.ndarray:
    """Connected-component label of each of n items, given the edges (pairs_i[e], pairs_j[e])."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs_i), np.int8), (pairs_i, pairs_j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def duplicate_edges(scores: np.ndarray, ids: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The edges (i, j), i ≠ j, of a self-k-NN result whose cosine similarity is ≥ threshold."""
    rows = np.broadcast_to(np.arange(len(ids))[:, None], ids.shape)
    keep = (scores >= threshold) & (ids >= 0) & (ids != rows)
    return rows[keep], ids[keep]


def duplicate_labels(vectors: np.ndarray, threshold: float, *, k: int = DUPLICATE_NEIGHBOURS, kind: str = "auto",
                     progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(component label of each item, self-k-NN scores, ids): items whose cosine similarity to one of their
    k nearest neighbours is ≥ threshold share a label (connected components of that graph)."""
    scores, ids = knn(vectors, vectors, k, kind=kind, progress=progress)
    return components(len(vectors), *duplicate_edges(scores, ids, threshold)), scores, ids


def duplicate_groups(vectors: np.ndarray, threshold: float, k: int = DUPLICATE_NEIGHBOURS) -> list[list[int]]:
    """Groups of near-duplicates (indices, largest group first), singletons left out."""
    labels, _, _ = duplicate_labels(vectors, threshold, k=k)
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
