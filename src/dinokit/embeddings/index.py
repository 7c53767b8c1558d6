"""Searching embeddings with FAISS: cosine similarity as inner product of L2-normalised vectors.

An index is a folder: index.faiss, paths.parquet (row i of the index is paths[i]) and meta.json (the
embedding settings, so that `search` embeds a query image the same way).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..io import atomic_write
from .store import read_embeddings

INDEX_KINDS = ("auto", "flat", "ivf")
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
        raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")
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
    with atomic_write(out / "index.faiss") as tmp:
        faiss.write_index(index, str(tmp))
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
