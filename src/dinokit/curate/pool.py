"""A pool of images as curation sees it: paths, unit-norm embeddings and provenance columns, in one Parquet
file (columns path, embedding, then one column per fact a step recorded: duplicate group, seed, cluster…)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..embeddings.store import drop_unusable, embedding_matrix, open_embeddings
from ..io import atomic_write


@dataclass
class Pool:
    paths: list[str]
    vectors: np.ndarray  # [N, D] float32, L2-normalised
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # provenance, one value per image
    metadata: dict[str, str] = field(default_factory=dict)  # the embedding settings, carried along
    unusable: list[str] = field(default_factory=list)  # paths left out when read: NaN or all-zero embeddings

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, rows) -> Pool:
        rows = np.asarray(rows, dtype=np.int64)
        return Pool([self.paths[i] for i in rows], self.vectors[rows],
                    {k: v[rows] for k, v in self.columns.items()}, dict(self.metadata))

    def with_columns(self, **columns) -> Pool:
        for name, values in columns.items():
            if len(values) != len(self):
                raise ValueError(f"column {name!r} has {len(values)} values for {len(self)} images")
        return Pool(self.paths, self.vectors, {**self.columns, **{k: np.asarray(v) for k, v in columns.items()}},
                    dict(self.metadata))


def read_pool(source) -> Pool:
    """A Pool from an embeddings folder (`dinokit embed`'s shards), a Parquet file, or a list of them.
    Rows whose embedding is NaN, infinite or all zeros cannot be compared with anything: they are left
    out, counted and named in `Pool.unusable`, never merged into a duplicate group or a cluster."""
    table, meta = open_embeddings(source, extra=True)  # memory: the Arrow columns plus one float32 copy
    paths, vectors, unusable, keep = drop_unusable(table.column("path").to_pylist(),
                                                   embedding_matrix(table.column("embedding"), source))
    columns = {n: table.column(n).to_numpy(zero_copy_only=False)[keep] for n in table.column_names
               if n not in ("path", "embedding")}
    # normalised in place: a read-only view of the Arrow column is copied once, a fresh array is not
    return Pool(paths, _unit_rows(vectors if vectors.flags.writeable else vectors.copy()), columns, meta, unusable)


def _unit_rows(vectors: np.ndarray, chunk_rows: int = 65_536) -> np.ndarray:
    """L2-normalised in place, chunk by chunk (no second copy of millions of rows)."""
    for lo in range(0, len(vectors), chunk_rows):
        part = vectors[lo:lo + chunk_rows]
        part /= np.linalg.norm(part, axis=1, keepdims=True)
    return vectors


def write_pool(pool: Pool, path) -> Path:
    """One Parquet file, written atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {"path": pa.array(pool.paths, pa.string()),
               "embedding": pa.FixedSizeListArray.from_arrays(pa.array(pool.vectors.ravel()), pool.vectors.shape[1])}
    columns.update({k: pa.array(v) for k, v in pool.columns.items()})
    table = pa.table(columns).replace_schema_metadata(pool.metadata)
    with atomic_write(path) as tmp:
        pq.write_table(table, tmp)
    return path
