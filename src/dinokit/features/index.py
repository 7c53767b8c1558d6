"""Searching embeddings with FAISS: cosine similarity as inner product of L2-normalised vectors.

An index is a folder: index.faiss, paths.parquet (row i of the index is paths[i]) and meta.json (the
embedding settings, so that `search` embeds a query image the same way).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .store import read_embeddings

EXACT_LIMIT = 100_000  # below this many vectors an exact (flat) index is fast enough and loses nothing


def _faiss():
    import faiss

    return faiss


def normalized(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def build_faiss_index(vectors: np.ndarray, kind: str = "auto", nlist: int | None = None, nprobe: int = 16):
    """kind: "flat" (exact), "ivf" (inverted lists, for large sets), or "auto" (flat below 100k vectors)."""
    faiss = _faiss()
    n, dim = vectors.shape
    if kind == "auto":
        kind = "flat" if n < EXACT_LIMIT else "ivf"
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        nlist = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(n, size=min(n, 64 * nlist), replace=False)]  # enough for the coarse centroids
        index.train(sample)
        index.nprobe = min(nprobe, nlist)
    else:
        raise ValueError(f"index kind must be auto, flat or ivf, got {kind!r}")
    index.add(vectors)
    return index


def build_index(embeddings, output, kind: str = "auto") -> dict:
    """`dinokit index`: an embeddings folder/file → an index folder. Returns meta."""
    paths, vectors, meta = read_embeddings(embeddings)
    vectors = normalized(vectors)
    index = build_faiss_index(vectors, kind)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    faiss = _faiss()
    tmp = out / ".index.faiss.tmp"
    faiss.write_index(index, str(tmp))
    os.replace(tmp, out / "index.faiss")
    pq.write_table(pa.table({"path": pa.array(paths, pa.string())}), out / "paths.parquet")
    meta = {**meta, "count": len(paths), "dim": int(vectors.shape[1]),
            "kind": "flat" if isinstance(index, faiss.IndexFlat) else "ivf", "source": str(embeddings)}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


@dataclass
class Hit:
    path: str
    score: float  # cosine similarity


class EmbeddingIndex:
    def __init__(self, folder):
        folder = Path(folder)
        if not (folder / "index.faiss").is_file():
            raise FileNotFoundError(f"{folder} is not a dinokit index (no index.faiss); build one with `dinokit index`")
        self.index = _faiss().read_index(str(folder / "index.faiss"))
        self.paths = pq.read_table(folder / "paths.parquet").column("path").to_pylist()
        self.meta = json.loads((folder / "meta.json").read_text())

    def search(self, queries: np.ndarray, k: int = 10) -> list[list[Hit]]:
        scores, ids = self.index.search(normalized(np.atleast_2d(queries)), min(k, len(self.paths)))
        return [[Hit(self.paths[i], float(s)) for s, i in zip(row_s, row_i) if i >= 0]
                for row_s, row_i in zip(scores, ids)]


def knn(database: np.ndarray, queries: np.ndarray, k: int, *, kind: str = "auto", index=None,
        batch_size: int = 65_536, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Cosine k nearest neighbours of each query in database: (scores, ids), [Q, k] each, best first; ids -1
    where fewer than k exist. Queries go in batches, so millions of them never make one giant result."""
    index = index if index is not None else build_faiss_index(normalized(database), kind)
    k = min(k, index.ntotal)
    scores = np.empty((len(queries), k), np.float32)
    ids = np.empty((len(queries), k), np.int64)
    from tqdm.auto import tqdm

    for lo in tqdm(range(0, len(queries), batch_size), desc="k-NN", unit="batch", disable=not progress, leave=False):
        scores[lo:lo + batch_size], ids[lo:lo + batch_size] = index.search(normalized(queries[lo:lo + batch_size]), k)
    return scores, ids


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


def duplicate_groups(vectors: np.ndarray, threshold: float, k: int = 32) -> list[list[int]]:
    """Groups (connected components) of items whose cosine similarity to a neighbour is ≥ threshold."""
    scores, ids = knn(vectors, vectors, k)
    labels = components(len(vectors), *duplicate_edges(scores, ids, threshold))
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
