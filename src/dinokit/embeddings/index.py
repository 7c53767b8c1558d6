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

from ..errors import InputFileError, first_line
from ..io import c_stdout_to_stderr, publish_folder, read_json
from . import INDEX_FILE, INDEX_KINDS, META_FILE, PATHS_FILE
from .store import collection_shape, drop_unusable, read_embeddings

EXACT_LIMIT = 100_000  # below this many vectors an exact (flat) index is fast enough and loses nothing
ON_DISK_BYTES = 4 * 2 ** 30  # from this many bytes of float32 vectors, `auto` means the on-disk IVF-PQ index


def beyond_memory(rows: int, dim: int) -> bool:
    """Whether `auto` keeps the vectors out of memory (IVF-PQ, `ivfpq.py`): from 4 GiB of them (2.8M × 384)."""
    return rows * dim * 4 >= ON_DISK_BYTES


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


def build_index(embeddings, output, kind: str = "auto", **ivfpq) -> dict:
    """`dinokit index`: an embeddings folder/file → an index folder, published as one unit (a kill leaves
    the old index or the new one). kind "auto": exact below 100k vectors, IVF in memory up to 4 GiB of
    vectors, IVF-PQ on disk beyond. Rows whose embedding is NaN or all zeros are left out and counted in
    the returned meta (`unusable`). Returns meta. kind "ivfpq": larger than memory, built file by file
    (`ivfpq.build_ivfpq_index`, whose keywords `ivfpq` are; the other kinds ignore them)."""
    if kind == "auto" and beyond_memory(*collection_shape(embeddings)):
        kind = "ivfpq"
    if kind == "ivfpq":
        from .ivfpq import build_ivfpq_index

        return build_ivfpq_index(embeddings, output, **ivfpq)
    paths, vectors, meta = read_embeddings(embeddings)
    total = len(paths)
    paths, vectors, unusable, _ = drop_unusable(paths, vectors)
    if not paths:
        raise InputFileError(embeddings, f"every one of its {total} embeddings is NaN, infinite or all zeros")
    vectors = normalized(vectors)
    index = build_faiss_index(vectors, kind)
    faiss = _faiss()
    meta = {**meta, "count": len(paths), "dim": int(vectors.shape[1]),
            "kind": "flat" if isinstance(index, faiss.IndexFlat) else "ivf", "source": str(embeddings),
            "unusable": len(unusable), "unusable_examples": unusable[:10]}
    with publish_folder(output, replaceable=lambda p: (p / INDEX_FILE).is_file()) as tmp:
        faiss.write_index(index, str(tmp / INDEX_FILE))
        pq.write_table(pa.table({"path": pa.array(paths, pa.string())}), tmp / PATHS_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


@dataclass
class Hit:
    path: str
    score: float  # cosine similarity


class EmbeddingIndex:
    """An index folder, checked when opened: its three files are present, readable and agree (as many
    paths as vectors), or an `InputFileError` says which is not. An IVF-PQ index's inverted lists stay on
    disk, memory-mapped; `nprobe` (lists visited per query) trades speed for recall, default the build's."""

    def __init__(self, folder, nprobe: int | None = None):
        folder = Path(folder)
        if not (folder / INDEX_FILE).is_file():
            raise FileNotFoundError(f"{folder} is not a dinokit index (no {INDEX_FILE}); build one with `dinokit index`")
        try:
            faiss = _faiss()
            with c_stdout_to_stderr():  # FAISS names the memory-mapped lists it opens
                self.index = faiss.read_index(str(folder / INDEX_FILE), faiss.IO_FLAG_ONDISK_SAME_DIR)
        except RuntimeError as e:  # FAISS reports every unreadable file so
            raise InputFileError(folder / INDEX_FILE, f"FAISS cannot read it ({str(e).strip().splitlines()[-1]})") from None
        try:
            self.paths = pq.read_table(folder / PATHS_FILE, columns=["path"]).column("path").to_pylist()
        except (OSError, pa.ArrowException, KeyError) as e:
            raise InputFileError(folder / PATHS_FILE, f"not the index's path list ({first_line(e)})") from None
        self.meta = read_json(folder / META_FILE) if (folder / META_FILE).is_file() else {}
        ivf = _faiss().try_extract_index_ivf(self.index)
        if ivf is not None and (nprobe or self.meta.get("nprobe")):
            ivf.nprobe = min(nprobe or self.meta["nprobe"], ivf.nlist)
        # an IVF-PQ index holds every row but the unusable ones; its paths are every row
        ivfpq = self.meta.get("kind") == "ivfpq"
        vectors, rows = (self.meta.get("count"), self.meta.get("rows")) if ivfpq else (len(self.paths),) * 2
        if self.index.ntotal != vectors or len(self.paths) != rows:
            raise InputFileError(folder, f"{INDEX_FILE} holds {self.index.ntotal} vectors but {PATHS_FILE} "
                                 f"{len(self.paths)} paths; rebuild it with `dinokit index`")

    def search(self, queries: np.ndarray, k: int = 10) -> list[list[Hit]]:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        queries = normalized(np.atleast_2d(queries))
        if queries.shape[1] != self.index.d:
            raise ValueError(f"queries have {queries.shape[1]} dimensions, the index {self.index.d}")
        scores, ids = self.index.search(queries, min(k, len(self.paths)))
        return [[Hit(self.paths[i], float(s)) for s, i in zip(row_s, row_i) if i >= 0]
                for row_s, row_i in zip(scores, ids)]
