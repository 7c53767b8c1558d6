"""A pool of images as curation sees it: paths, unit-norm embeddings and provenance columns, in one Parquet
file (columns path, embedding, then one column per fact a step recorded: duplicate group, seed, cluster…)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..io import atomic_write


@dataclass
class Pool:
    paths: list[str]
    vectors: np.ndarray  # [N, D] float32, L2-normalised
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # provenance, one value per image
    metadata: dict[str, str] = field(default_factory=dict)  # the embedding settings, carried along

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
    Files are memory-mapped: only the path and embedding columns are copied into memory."""
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    missing = [str(s) for s in sources if not Path(s).exists()]
    if missing:
        raise FileNotFoundError(f"no embeddings at {', '.join(missing)}")
    dataset = ds.dataset([str(s) for s in sources] if len(sources) > 1 else str(sources[0]), format="parquet")
    if "embedding" not in dataset.schema.names or "path" not in dataset.schema.names:
        raise ValueError(f"{', '.join(map(str, sources))}: not embeddings (needs the columns path and embedding; "
                         f"has {dataset.schema.names})")
    extra = [n for n in dataset.schema.names if n not in ("path", "embedding", "patch_tokens")]
    table = dataset.to_table(columns=["path", "embedding", *extra])
    vectors = _unit_rows(table.column("embedding"))
    meta = {k.decode(): v.decode() for k, v in (dataset.schema.metadata or {}).items()}
    columns = {n: table.column(n).to_numpy(zero_copy_only=False) for n in extra}
    return Pool(table.column("path").to_pylist(), vectors, columns, meta)


def _unit_rows(column, chunk_rows: int = 65_536) -> np.ndarray:
    """The embedding column as one float32 [N, D] array, L2-normalised in place, chunk by chunk: memory
    stays at the Arrow column plus one copy, even for millions of rows."""
    dim = column.type.list_size
    vectors = np.empty((len(column), dim), np.float32)
    row = 0
    for chunk in column.chunks:
        vectors[row:row + len(chunk)] = chunk.flatten().to_numpy(zero_copy_only=False).reshape(len(chunk), dim)
        row += len(chunk)
    for lo in range(0, len(vectors), chunk_rows):
        part = vectors[lo:lo + chunk_rows]
        part /= np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
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
