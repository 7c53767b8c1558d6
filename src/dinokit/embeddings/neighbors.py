"""Nearest neighbours of embeddings and the near-duplicate graph built on them: one k-NN for every job
(search, dedup, curation), split across torchrun processes when there are several (each searches a slice
of the queries against the whole database; one process gives the same result as many)."""
from __future__ import annotations

import numpy as np

from ..distributed import gather_rows, gather_varying, rank_and_world, row_slice
from .index import build_faiss_index, normalized

EXACT_PAIRS = 10 ** 10  # above this many comparisons an exact search takes minutes on a laptop: IVF
DUPLICATE_NEIGHBOURS = 64  # neighbours per item in the duplicate graph: groups larger than this may split


def knn(database: np.ndarray, queries: np.ndarray, k: int, *, kind: str = "auto", index=None,
        batch_size: int = 65_536, split: bool = True, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Cosine k nearest neighbours of each query in database: (scores, ids), [Q, k] each, best first; ids -1
    where fewer than k exist. kind: flat (exact), ivf (approximate, for millions) or auto (`search_kind`).
    Queries go in batches, so millions of them never make one giant result. `split`: under torchrun the
    processes share the queries out and gather the results; False when each process brings its own queries
    (its slice of a sharded pool) and wants only their neighbours."""
    from tqdm.auto import tqdm

    if index is None:
        kind = search_kind(kind, len(database), len(queries))
        index = ExactSearch(normalized(database)) if kind == "flat" else build_faiss_index(normalized(database), kind)
    k = min(k, index.ntotal)
    lo, hi, per = row_slice(len(queries)) if split else (0, len(queries), len(queries))
    mine = queries[lo:hi]
    scores = np.empty((len(mine), k), np.float32)
    ids = np.empty((len(mine), k), np.int64)
    for start in tqdm(range(0, len(mine), batch_size), desc="k-NN", unit="batch", disable=not progress, leave=False):
        end = start + batch_size
        scores[start:end], ids[start:end] = index.search(normalized(mine[start:end]), k)
    if not split:
        return scores, ids
    return gather_rows(scores, len(queries), per), gather_rows(ids, len(queries), per)


class ExactSearch:
    """What an `IndexFlatIP` answers (the same FAISS routine), without the index's copy of the database: a
    pool's k-NN then costs one normalised copy of it, not two."""

    def __init__(self, vectors: np.ndarray):
        self.vectors, self.ntotal = vectors, len(vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        return faiss.knn(queries, self.vectors, k, metric=faiss.METRIC_INNER_PRODUCT)


def search_kind(kind: str, database: int, queries: int) -> str:
    """`auto` made concrete: exact (flat) while the database is small or there are at most 10¹⁰ query-database
    pairs to compare, IVF beyond. A pool split across processes passes its whole size, so that every process
    (and one process alone) makes the same choice."""
    if kind != "auto":
        return kind
    return "flat" if database < 10_000 or database * queries <= EXACT_PAIRS else "ivf"


def pair_scores(a: np.ndarray, b: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """a[i] · b[i] for each row, elementwise in float32: unlike a BLAS product, the same value however the rows
    are batched or split across processes, so a threshold or a ranking decided on it is too."""
    out = np.empty(len(a), np.float32)
    for lo in range(0, len(a), chunk):
        out[lo:lo + chunk] = np.einsum("ij,ij->i", a[lo:lo + chunk], b[lo:lo + chunk])
    return out


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


def sharded_knn(local: np.ndarray, rows: np.ndarray, k: int, *, index=None, batch_size: int = 8192,
                progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Self-k-NN of a pool split across torchrun processes, each holding only its rows: `local` (unit vectors)
    are the pool's rows `rows` (ascending). Returns (scores, ids) of the local rows, ids in pool rows. With
    `index` (an `EmbeddingIndex` of the same embeddings, e.g. IVF-PQ on disk: its ids are the rows) every
    process finds its rows' candidates there, and their exact cosine is computed by the process that holds
    each candidate (quantised scores are too coarse for a duplicate threshold). Without, exact: chunk by
    chunk the processes exchange their queries, each searches all of them against its own rows, and every
    query keeps the best k of all processes — the result of one process holding everything."""
    import faiss
    from tqdm.auto import tqdm

    scores = np.full((len(local), k), -np.inf, np.float32)
    ids = np.full((len(local), k), -1, np.int64)
    lengths = gather_varying(np.array([len(local)]))  # every process's rows: each step's batch sizes follow
    rank = rank_and_world()[0]
    for step in tqdm(range(-(-int(lengths.max()) // batch_size)), desc="k-NN", unit="batch", disable=not progress, leave=False):
        lo, hi = step * batch_size, min((step + 1) * batch_size, len(local))
        mine = local[lo:hi] if lo < len(local) else local[:0]
        sizes = np.clip(lengths - lo, 0, batch_size)
        start = int(sizes[:rank].sum())
        queries = gather_varying(mine)
        if index is not None:
            found = np.full((len(mine), k), -1, np.int64)
            if len(mine):
                found[:, : min(k, index.index.ntotal)] = index.index.search(np.ascontiguousarray(mine), k)[1]
            candidates = gather_varying(found)  # [all queries, k]
            exact = _held_dot_products(queries, candidates, local, rows)
            exact = gather_varying(exact).reshape(len(sizes), len(queries), k).sum(0)[start:start + len(mine)]
            exact[found < 0] = -np.inf
            order = np.argsort(-exact, axis=1, kind="stable")
            scores[lo:hi], ids[lo:hi] = np.take_along_axis(exact, order, 1), np.take_along_axis(found, order, 1)
            continue
        found_s = np.full((len(queries), k), -np.inf, np.float32)
        found_i = np.full((len(queries), k), -1, np.int64)
        if len(local) and len(queries):
            s, i = faiss.knn(np.ascontiguousarray(queries), local, min(k, len(local)), metric=faiss.METRIC_INNER_PRODUCT)
            found_s[:, : s.shape[1]], found_i[:, : s.shape[1]] = s, np.where(i >= 0, rows[np.maximum(i, 0)], -1)
        everyone_s, everyone_i = gather_varying(found_s), gather_varying(found_i)  # [world · queries, k]
        world = len(sizes)
        cand_s = everyone_s.reshape(world, len(queries), k)[:, start:start + len(mine)].transpose(1, 0, 2).reshape(len(mine), -1)
        cand_i = everyone_i.reshape(world, len(queries), k)[:, start:start + len(mine)].transpose(1, 0, 2).reshape(len(mine), -1)
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        scores[lo:hi], ids[lo:hi] = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return scores, ids


def _held_dot_products(queries: np.ndarray, candidates: np.ndarray, local: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """[Q, k]: queries · candidate for the candidates (pool rows) this process holds, 0 for the others."""
    out = np.zeros(candidates.shape, np.float32)
    if not len(rows):
        return out
    at = np.minimum(np.searchsorted(rows, candidates), len(rows) - 1)
    held = (candidates >= 0) & (rows[at] == candidates)
    for lo in range(0, len(queries), 1024):  # [1024, k, D] at a time: stays in cache
        part = np.einsum("qd,qkd->qk", queries[lo:lo + 1024], local[at[lo:lo + 1024]])
        out[lo:lo + 1024] = np.where(held[lo:lo + 1024], part, 0)
    return out


def sharded_duplicate_labels(local: np.ndarray, rows: np.ndarray, total: int, threshold: float, *,
                             k: int = DUPLICATE_NEIGHBOURS, index=None, progress: bool = False):
    """(component label of every pool row [total], local k-NN scores, ids): `duplicate_labels` for a pool
    split across processes. Only the edges (pairs at ≥ threshold) are gathered; every process then labels
    the whole graph, so all agree."""
    scores, ids = sharded_knn(local, rows, k, index=index, progress=progress)
    source = np.broadcast_to(rows[:, None], ids.shape)
    keep = (scores >= threshold) & (ids >= 0) & (ids != source)
    edges = gather_varying(np.stack([source[keep], ids[keep]], 1).astype(np.int64))
    return components(total, edges[:, 0], edges[:, 1]), scores, ids
