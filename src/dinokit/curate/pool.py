"""A pool of images as curation sees it: paths, unit-norm embeddings and provenance columns, in Parquet
(columns path, embedding, then one column per fact a step recorded: duplicate group, seed, cluster…).

Read file by file into one preallocated array (never the whole Arrow table and a copy); under torchrun with
`shard=True` each process reads only its slice of the rows, so a pool of N images costs N/W per process."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..embeddings.store import (
    EmbeddingsFileError,
    bad_vectors,
    collection_dimension,
    collection_files,
    embedding_matrix,
    file_metadata,
    row_groups,
)
from ..io import atomic_write


@dataclass
class Pool:
    paths: list[str]
    vectors: np.ndarray  # [N, D] float32, L2-normalised
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # provenance, one value per image
    metadata: dict[str, str] = field(default_factory=dict)  # the embedding settings, carried along
    unusable: list[str] = field(default_factory=list)  # paths left out when read: NaN or all-zero (sharded: the first 10)
    rows: np.ndarray | None = None  # read from files: the row of each image in them (an index's ids)
    total: int | None = None  # read from files: their rows, unusable ones included
    unusable_count: int = 0  # the unusable rows (of the whole pool when sharded)
    sharded: bool = False  # this process holds only its slice of the pool's rows (torchrun)
    consumable: bool = False  # no one reads this pool again: one take() of sorted rows may reuse its memory

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, rows, *, last: bool = False) -> Pool:
        """The given rows. `last`: the caller's final read of this pool; a consumable pool then moves the
        rows (ascending) to its front in place instead of copying them, and is spent."""
        rows = np.asarray(rows, dtype=np.int64)
        if last and self.consumable and (np.diff(rows) > 0).all():
            vectors = _compact(self.vectors, rows)
            self.vectors = None  # consumed: a second use fails loudly instead of reading moved rows
        else:
            vectors = self.vectors[rows]
        return Pool([self.paths[i] for i in rows], vectors,
                    {k: v[rows] for k, v in self.columns.items()}, dict(self.metadata),
                    rows=None if self.rows is None else self.rows[rows], total=self.total, sharded=self.sharded)

    def with_columns(self, **columns) -> Pool:
        for name, values in columns.items():
            if len(values) != len(self):
                raise ValueError(f"column {name!r} has {len(values)} values for {len(self)} images")
        return Pool(self.paths, self.vectors, {**self.columns, **{k: np.asarray(v) for k, v in columns.items()}},
                    dict(self.metadata), rows=self.rows, total=self.total, sharded=self.sharded)


def pool_size(pool: Pool, count: int | None = None) -> int:
    """The images of the whole pool (or `count` of them on this process): summed over the processes when each
    holds a slice."""
    from ..distributed import sum_over_processes

    count = len(pool) if count is None else count
    return int(sum_over_processes(count)) if pool.sharded else count


def pool_offset(pool: Pool) -> int:
    """Where this process's slice starts among the whole pool's images (0 unless sharded)."""
    from ..distributed import gather_varying, rank_and_world

    return int(gather_varying(np.array([len(pool)]))[: rank_and_world()[0]].sum()) if pool.sharded else 0


def read_pool(source, *, shard: bool = False) -> Pool:
    """A Pool from an embeddings folder (`dinokit embed`'s shards), a Parquet file, or a list of them.
    Rows whose embedding is NaN, infinite or all zeros cannot be compared with anything: they are left
    out, counted and named in `Pool.unusable`, never merged into a duplicate group or a cluster. `shard`:
    under torchrun, only this process's contiguous slice of the rows (`Pool.rows` says which)."""
    from ..distributed import gather_objects, rank_and_world, row_slice, sum_over_processes

    sources = [source] if isinstance(source, (str, Path)) else list(source)
    parts, offsets = collection_files(sources)
    total = int(offsets[-1])
    if total == 0:
        raise EmbeddingsFileError(", ".join(map(str, sources)), "holds no embeddings (0 rows)")
    sharded = shard and rank_and_world()[1] > 1
    lo, hi, _ = row_slice(total) if sharded else (0, total, total)
    metadata = file_metadata(parts[0])
    vectors, paths, rows, unusable, columns, filled = None, [], [], [], {}, 0
    for part, start, end in zip(parts, offsets[:-1], offsets[1:]):
        a, b = max(lo, start) - start, min(hi, end) - start
        if b <= a:
            continue
        for at, batch in row_groups(part, a, b):  # a row group's batch at a time: a large file is never one table
            matrix = embedding_matrix(batch.column("embedding"), part)
            if vectors is None:
                vectors = np.empty((hi - lo, matrix.shape[1]), np.float32)
            elif matrix.shape[1] != vectors.shape[1]:
                raise EmbeddingsFileError(part, f"has embeddings of dimension {matrix.shape[1]}, the files before "
                                          f"{vectors.shape[1]}")
            keep = ~bad_vectors(matrix)
            names = batch.column("path").to_pylist()
            unusable += [p for p, k in zip(names, keep) if not k]
            vectors[filled:filled + int(keep.sum())] = matrix[keep]
            filled += int(keep.sum())
            paths += [p for p, k in zip(names, keep) if k]
            rows.append(np.flatnonzero(keep) + start + at)
            for n in batch.column_names:
                if n not in ("path", "embedding"):
                    columns.setdefault(n, []).append(batch.column(n).to_numpy(zero_copy_only=False)[keep])
    if vectors is None:  # this process's slice is empty
        vectors = np.zeros((0, collection_dimension(parts, offsets)), np.float32)
    vectors = _unit_rows(vectors[:filled])  # a view: the unusable rows' space stays unused
    columns = {k: np.concatenate(v) for k, v in columns.items()}
    unusable_count = int(sum_over_processes(len(unusable))) if sharded else len(unusable)
    if sharded:  # the first ten of the whole pool, as one process would name them
        unusable = [p for part in gather_objects(unusable[:10]) for p in part][:10]
    return Pool(paths, vectors, columns, metadata or {}, unusable,
                rows=np.concatenate(rows) if rows else np.zeros(0, np.int64), total=total,
                unusable_count=unusable_count, sharded=sharded)


def _unit_rows(vectors: np.ndarray, chunk_rows: int = 65_536) -> np.ndarray:
    """L2-normalised in place, chunk by chunk (no second copy of millions of rows)."""
    for lo in range(0, len(vectors), chunk_rows):
        part = vectors[lo:lo + chunk_rows]
        part /= np.linalg.norm(part, axis=1, keepdims=True)
    return vectors


def _compact(vectors: np.ndarray, rows: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """vectors[rows] moved to the front in place, chunk by chunk (rows ascending: every row is read before
    it is overwritten); a view of the first len(rows)."""
    for lo in range(0, len(rows), chunk):
        part = rows[lo:lo + chunk]
        vectors[lo:lo + len(part)] = vectors[part]
    return vectors[: len(rows)]


def save_pool(pool: Pool, path) -> Path:
    """A step's output as every process of a torchrun job sees it: a sharded pool becomes a folder with one
    file per process (`part-r{rank:03d}.parquet`; it reads as one table), any other one file written by
    rank 0. Whatever was at `path` (a file, or the parts of a run with more processes) goes first; the
    processes wait for each other, so the output is whole when this returns."""
    import shutil

    from ..distributed import barrier, rank_and_world

    path, rank = Path(path), rank_and_world()[0]
    if rank == 0 and (pool.sharded or path.is_dir()):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    barrier()
    if pool.sharded:
        write_pool(pool, path / f"part-r{rank:03d}.parquet")
    elif rank == 0:
        write_pool(pool, path)
    barrier()
    return path


def _arrow_column(values: np.ndarray) -> pa.Array:
    """A provenance column for Parquet. Python objects there are paths (duplicate_of, seed…): with no rows they
    are still strings, not Arrow's null type, which a process's empty part of a sharded output would otherwise
    have and no reader could merge with the other parts' strings."""
    return pa.array(values, pa.string()) if values.dtype == object and not len(values) else pa.array(values)


def pool_paths(source) -> Iterator[str]:
    """The paths of a saved pool (a file or a folder of parts), in order, a row group at a time."""
    for part in collection_files([source])[0]:
        file = pq.ParquetFile(part)
        for group in range(file.metadata.num_row_groups):
            yield from file.read_row_group(group, columns=["path"]).column("path").to_pylist()


def write_pool(pool: Pool, path, chunk_rows: int = 65_536) -> Path:
    """One Parquet file, written atomically (a temporary file renamed into place), a row group at a time
    (never a second copy of the whole pool)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dim = pool.vectors.shape[1]

    def table(lo, hi):
        values = pa.array(np.ascontiguousarray(pool.vectors[lo:hi]).ravel())
        columns = {"path": pa.array(pool.paths[lo:hi], pa.string()), "embedding": pa.FixedSizeListArray.from_arrays(values, dim)}
        columns.update({k: _arrow_column(v[lo:hi]) for k, v in pool.columns.items()})
        return pa.table(columns).replace_schema_metadata(pool.metadata)

    first = table(0, min(len(pool), chunk_rows))
    with atomic_write(path) as tmp, pq.ParquetWriter(tmp, first.schema) as writer:
        writer.write_table(first)
        for lo in range(chunk_rows, len(pool), chunk_rows):
            writer.write_table(table(lo, lo + chunk_rows).cast(first.schema))
    return path
