"""The embedding store: a folder of Parquet shards, written atomically, readable while a job runs.

OUT/part-r{rank}-{seq}.parquet   one shard per N images (columns path, embedding[, patch_tokens])
OUT/_failures-r{rank}.jsonl      images that could not be used (ignored by Parquet readers: leading "_")
Temporary files start with "." so readers never see a half-written shard.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..io import atomic_write

SHARD_RE = re.compile(r"part-r(\d+)-(\d+)\.parquet$")


class ShardWriter:
    def __init__(self, folder: Path, rank: int, metadata: dict[str, str]):
        self.folder, self.rank, self.metadata = Path(folder), rank, metadata
        self.folder.mkdir(parents=True, exist_ok=True)
        seqs = [int(m.group(2)) for f in self.folder.iterdir()
                if (m := SHARD_RE.search(f.name)) and int(m.group(1)) == rank]
        self.next_seq = max(seqs, default=-1) + 1
        self.failures_path = self.folder / f"_failures-r{rank:03d}.jsonl"

    def write(self, paths: list[str], embeddings: np.ndarray, patch_tokens: np.ndarray | None = None) -> Path:
        columns = {
            "path": pa.array(paths, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(embeddings.astype(np.float32).ravel()), embeddings.shape[1]),
        }
        if patch_tokens is not None:
            flat = patch_tokens.reshape(len(paths), -1)
            columns["patch_tokens"] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
        table = pa.table(columns).replace_schema_metadata({k: str(v) for k, v in self.metadata.items()})
        final = self.folder / f"part-r{self.rank:03d}-{self.next_seq:06d}.parquet"
        with atomic_write(final, fsync=True) as tmp:  # readers see the whole shard or none of it
            pq.write_table(table, tmp)
        self.next_seq += 1
        return final

    def record_failures(self, failures: list[tuple[str, str]]) -> None:
        if not failures:
            return
        with open(self.failures_path, "a") as f:
            f.write("".join(json.dumps({"path": p, "reason": r}) + "\n" for p, r in failures))
            f.flush()
            os.fsync(f.fileno())


def shard_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    return sorted(f for f in folder.glob("part-r*.parquet") if SHARD_RE.search(f.name)) if folder.is_dir() else []


def read_metadata(folder: Path) -> dict[str, str] | None:
    files = shard_files(folder)
    if not files:
        return None
    meta = pq.read_schema(files[0]).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items()}


def finished_paths(folder: Path) -> set[str]:
    """Paths already embedded (in finished shards) or already reported as failed."""
    done: set[str] = set()
    for f in shard_files(folder):
        done.update(pq.read_table(f, columns=["path"]).column("path").to_pylist())
    return done | {p for p, _ in read_failures(folder)}


def read_failures(folder: Path) -> list[tuple[str, str]]:
    out = []
    for f in sorted(Path(folder).glob("_failures-r*.jsonl")) if Path(folder).is_dir() else []:
        for line in f.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: the image is simply retried
                continue
            out.append((rec["path"], rec["reason"]))
    return out


def read_embeddings(source, columns=("path", "embedding")) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """(paths, float32 [N, D] embeddings, metadata) from an embedding folder or Parquet file."""
    dataset = ds.dataset(str(source), format="parquet")
    table = dataset.to_table(columns=list(columns))
    emb = table.column("embedding").combine_chunks()
    dim = emb.type.list_size
    matrix = emb.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)
    meta = {k.decode(): v.decode() for k, v in (dataset.schema.metadata or {}).items()}
    return table.column("path").to_pylist(), matrix, meta
