"""`dinokit index --kind ivfpq`: an index larger than memory. FAISS IVF with product quantisation (optionally
OPQ), trained on a sample, filled shard by shard (each embeddings file becomes a block; torchrun ranks fill
every N-th), merged on disk (`faiss.contrib.ondisk.merge_ondisk`: the inverted lists go to `index.ivfdata`,
memory-mapped when searched), and checked: recall@10 against exact search on held-out rows.

Sizes from the count N and dimension D (docs/scale.md): nlist = the power of two nearest √N (16 … 65,536);
m = D / 8 sub-quantisers of 8 bits (48 bytes a vector for D = 384); trained on 40·nlist rows. The blocks
stay in OUTPUT.work/ until the index is published, so a killed build resumes with the blocks it finished.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..distributed import barrier, rank_and_world, sum_over_processes
from ..errors import UsageError
from ..io import c_stdout_to_stderr, publish_folder, write_text_atomic
from . import INDEX_FILE, META_FILE, PATHS_FILE
from .store import (
    bad_vectors,
    collection_dimension,
    collection_files,
    embedding_matrix,
    file_metadata,
    open_embeddings,
)

IVFDATA_FILE = "index.ivfdata"
RECALL_K = 10
MIN_ROWS = 1000  # its product quantiser learns 256 centroids per sub-vector


def ivfpq_sizes(n: int, dim: int) -> dict:
    """The documented rule: nlist ≈ √N as a power of two, m = D/8 (the largest divisor of D up to D/8), 40·nlist
    training rows (FAISS warns below 39 per list)."""
    nlist = int(min(65_536, max(16, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))
    nlist = min(nlist, max(1, n // 39))
    m = max(d for d in range(1, max(1, dim // 8) + 1) if dim % d == 0)
    return {"nlist": nlist, "m": m, "train": min(n, 40 * nlist)}


def read_part(path: Path) -> tuple[list[str], np.ndarray]:
    table, _ = open_embeddings(path)
    return table.column("path").to_pylist(), embedding_matrix(table.column("embedding"), path)


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def exact_top(queries: np.ndarray, vectors: np.ndarray, offset: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    scores, ids = faiss.knn(queries, vectors, min(k, len(vectors)), metric=faiss.METRIC_INNER_PRODUCT)
    return scores, np.where(ids >= 0, ids + offset, -1)


def merge_top(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], k: int):
    scores, ids = np.concatenate([a[0], b[0]], 1), np.concatenate([a[1], b[1]], 1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def recall_at(exact_ids: np.ndarray, found_ids: np.ndarray, queries: np.ndarray, k: int = RECALL_K) -> float:
    """Mean share of each query's k exact nearest others (itself left out) among the k found."""
    hits = []
    for q, exact, found in zip(queries, exact_ids, found_ids):
        exact = [i for i in exact if i != q and i >= 0][:k]
        found = [i for i in found if i != q and i >= 0][:k]
        if exact:
            hits.append(len(set(exact) & set(found)) / len(exact))
    return float(np.mean(hits)) if hits else float("nan")


def build_ivfpq_index(embeddings, output, *, nlist: int | None = None, m: int | None = None, opq: bool = False,
                      nprobe: int = 16, holdout: int = 1000, seed: int = 0, progress: bool = False) -> dict:
    """Builds the index folder (index.faiss + index.ivfdata + paths.parquet + meta.json); returns meta.
    Row i of paths.parquet is row i of the embeddings (files in order); rows whose embedding is NaN or all
    zeros are not in the index. Under torchrun every rank fills its share of the blocks."""
    import faiss
    from faiss.contrib.ondisk import merge_ondisk
    from tqdm.auto import tqdm

    rank, world = rank_and_world()
    parts, offsets = collection_files(embeddings)
    n = int(offsets[-1])
    if n < MIN_ROWS:
        raise UsageError(f"--kind ivfpq needs at least {MIN_ROWS} embeddings to train its quantisers; {embeddings} has {n}: "
                         "use --kind flat (exact) for so few")
    meta, dim = file_metadata(parts[0]), collection_dimension(parts, offsets)
    sizes = ivfpq_sizes(n, dim)
    nlist, m = nlist or sizes["nlist"], m or sizes["m"]
    if dim % m:
        raise ValueError(f"m must divide the dimension {dim}, got {m}")
    held = min(holdout, n // 10)
    settings = {"blocks": "index, exact top, paths", "nlist": nlist, "m": m, "opq": opq,
                "train": min(n - held, 40 * nlist), "holdout": held,
                "seed": seed, "files": [[str(p), c] for p, c in zip(parts, np.diff(offsets).tolist())]}
    work = Path(str(output).rstrip("/") + ".work")
    if rank == 0:
        if (work / "settings.json").is_file() and json.loads((work / "settings.json").read_text()) != settings:
            shutil.rmtree(work)  # another build's blocks: not reusable
        (work / "blocks").mkdir(parents=True, exist_ok=True)
        write_text_atomic(work / "settings.json", json.dumps(settings))
    barrier()

    rng = np.random.default_rng(seed)
    chosen = rng.choice(n, size=settings["train"] + settings["holdout"], replace=False)
    train_rows, query_rows = np.sort(chosen[: settings["train"]]), np.sort(chosen[settings["train"]:])
    trained = work / "trained.index"
    if rank == 0 and not trained.is_file():
        sample = _rows(parts, offsets, train_rows)
        sample = unit(sample[~bad_vectors(sample)])
        factory = (f"OPQ{m}_{dim}," if opq else "") + f"IVF{nlist},PQ{m}np"  # np: no polysemous training (30× slower)
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        index.train(sample)
        faiss.write_index(index, str(work / "trained.tmp"))
        (work / "trained.tmp").rename(trained)
    barrier()
    queries = _rows(parts, offsets, query_rows)
    usable_queries = ~bad_vectors(queries)
    queries, query_rows = unit(queries[usable_queries]), query_rows[usable_queries]

    reused = 0
    for i in tqdm(range(rank, len(parts), world), desc="fill blocks", disable=not progress, leave=False):
        block = work / "blocks" / f"{i:06d}.index"
        if block.is_file():
            reused += 1
            continue
        paths, vectors = read_part(parts[i])
        usable = ~bad_vectors(vectors)
        keep = np.flatnonzero(usable)
        pq.write_table(pa.table({"path": pa.array(paths, pa.string()), "usable": pa.array(usable)}),
                       work / "blocks" / f"{i:06d}.paths.parquet")  # for the index's paths.parquet: no second read
        vectors = unit(vectors[keep])
        index = faiss.read_index(str(trained))
        index.add_with_ids(vectors, keep.astype(np.int64) + offsets[i])
        scores, ids = exact_top(queries, vectors, 0, RECALL_K + 1) if len(queries) and len(vectors) else \
            (np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64))
        ids = np.where(ids >= 0, keep[np.maximum(ids, 0)] + offsets[i], -1) if len(keep) else ids
        np.savez(work / "blocks" / f"{i:06d}.exact.npz", scores=scores, ids=ids)
        faiss.write_index(index, str(work / "blocks" / f"{i:06d}.tmp"))
        (work / "blocks" / f"{i:06d}.tmp").rename(block)  # the block is finished only when this name exists
    reused = sum_over_processes(reused)
    if rank != 0:
        barrier()
        return json.loads((Path(output) / META_FILE).read_text())

    exact = (np.full((len(queries), 0), -np.inf, np.float32), np.full((len(queries), 0), -1, np.int64))
    for i in range(len(parts)):
        saved = np.load(work / "blocks" / f"{i:06d}.exact.npz")
        exact = merge_top(exact, (saved["scores"], saved["ids"]), RECALL_K + 1)
    with publish_folder(output, replaceable=lambda p: (p / INDEX_FILE).is_file()) as tmp:
        index = faiss.read_index(str(trained))
        with c_stdout_to_stderr():  # FAISS prints its file resizes on stdout, which holds --json
            merge_ondisk(index, [str(work / "blocks" / f"{i:06d}.index") for i in range(len(parts))], str(tmp / IVFDATA_FILE))
        faiss.write_index(index, str(tmp / INDEX_FILE))
        faiss.extract_index_ivf(index).nprobe = min(nprobe, nlist)
        found = index.search(queries, RECALL_K + 1)[1] if len(queries) else None
        with pq.ParquetWriter(tmp / PATHS_FILE, pa.schema([("path", pa.string())])) as writer:
            unusable, count = [], 0
            for i in range(len(parts)):
                block = pq.read_table(work / "blocks" / f"{i:06d}.paths.parquet")
                bad = block.filter(pc.invert(block.column("usable"))).column("path").to_pylist()
                unusable, count = (unusable + bad)[:10], count + len(bad)
                writer.write_table(block.select(["path"]))
        recall = round(recall_at(exact[1], found, query_rows), 4) if len(queries) else None
        meta = {**meta, "count": int(index.ntotal), "rows": n, "dim": dim, "kind": "ivfpq", "source": str(embeddings),
                "nlist": nlist, "m": m, "opq": opq, "nprobe": min(nprobe, nlist), "trained_on": int(settings["train"]),
                "bytes_per_vector": m, f"recall@{RECALL_K}": recall,
                "recall_queries": int(len(queries)), "blocks_reused": reused, "unusable": count, "unusable_examples": unusable}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        del index
    shutil.rmtree(work, ignore_errors=True)
    barrier()
    return meta


def _rows(parts: list[Path], offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The embeddings of the given global rows (sorted), reading one file at a time."""
    out = []
    for i, part in enumerate(parts):
        lo, hi = np.searchsorted(rows, [offsets[i], offsets[i + 1]])
        if hi > lo:
            out.append(read_part(part)[1][rows[lo:hi] - offsets[i]])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
