"""The embedding store: a folder of Parquet shards, written atomically, readable while a job runs.

OUT/part-r{rank}-{seq}.parquet   one shard per N images (columns path, embedding[, patch_tokens])
OUT/_failures-r{rank}.jsonl      images that could not be used (ignored by Parquet readers: leading "_")
OUT/.lock-r{rank}                the writer's lock (one writer per rank at a time)
OUT/part-s{id}.parquet           the Ray engine's shards, by the stable ids of OUT/_shards.json
OUT/_failures-s{id}.jsonl        the images of shard {id} that could not be used (written before the shard)
Temporary files start with "." so readers never see a half-written shard.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..errors import InputFileError, OutputBusyError, first_line
from ..io import atomic_write

SHARD_RE = re.compile(r"part-r(\d+)-(\d+)\.parquet$")
SHARD_FILE_RE = re.compile(r"part-(r\d+-\d+|s\d+)\.parquet$")  # a rank's numbered shard, or a shard by its id


def write_shard(final: Path, metadata: dict[str, str], paths: list[str], embeddings: np.ndarray,
                patch_tokens: np.ndarray | None = None) -> Path:
    """One shard as Parquet, written atomically and synced: readers see the whole shard or none of it."""
    columns = {
        "path": pa.array(paths, pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(embeddings.astype(np.float32).ravel()), embeddings.shape[1]),
    }
    if patch_tokens is not None:
        flat = patch_tokens.reshape(len(paths), -1)
        columns["patch_tokens"] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
    table = pa.table(columns).replace_schema_metadata({k: str(v) for k, v in metadata.items()})
    with atomic_write(final, fsync=True) as tmp:
        pq.write_table(table, tmp)
    return final


def failure_lines(failures: list[tuple[str, str]]) -> str:
    return "".join(json.dumps({"path": p, "reason": r}) + "\n" for p, r in failures)


class ShardWriter:
    def __init__(self, folder: Path, rank: int, metadata: dict[str, str]):
        self.folder, self.rank, self.metadata = Path(folder), rank, metadata
        self.folder.mkdir(parents=True, exist_ok=True)
        seqs = [int(m.group(2)) for f in self.folder.iterdir()
                if (m := SHARD_RE.search(f.name)) and int(m.group(1)) == rank]
        self.next_seq = max(seqs, default=-1) + 1
        self.failures_path = self.folder / f"_failures-r{rank:03d}.jsonl"

    def write(self, paths: list[str], embeddings: np.ndarray, patch_tokens: np.ndarray | None = None) -> Path:
        final = write_shard(self.folder / f"part-r{self.rank:03d}-{self.next_seq:06d}.parquet", self.metadata, paths,
                            embeddings, patch_tokens)
        self.next_seq += 1
        return final

    def record_failures(self, failures: list[tuple[str, str]]) -> None:
        if not failures:
            return
        with open(self.failures_path, "a") as f:
            f.write(failure_lines(failures))
            f.flush()
            os.fsync(f.fileno())


def shard_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    return sorted(f for f in folder.glob("part-*.parquet") if SHARD_FILE_RE.search(f.name)) if folder.is_dir() else []


def read_metadata(folder: Path) -> dict[str, str] | None:
    files = shard_files(folder)
    if not files:
        return None
    meta = pq.read_schema(files[0]).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items()}


def embedded_paths(folder: Path) -> set[str]:
    """Paths in finished shards."""
    done: set[str] = set()
    for f in shard_files(folder):
        done.update(pq.read_table(f, columns=["path"]).column("path").to_pylist())
    return done


def finished_paths(folder: Path) -> set[str]:
    """Paths already embedded (in finished shards) or already reported as failed."""
    return embedded_paths(folder) | {p for p, _ in read_failures(folder)}


def remaining_failures(folder: Path, embedded: set[str] | None = None) -> dict[str, str]:
    """path → reason of the images that failed (the latest reason) and were not embedded since
    (`embedded`: the finished shards' paths, when the caller has just read them)."""
    embedded = embedded_paths(folder) if embedded is None else embedded
    return {p: r for p, r in read_failures(folder) if p not in embedded}


def has_patch_tokens(folder: Path) -> bool:
    files = shard_files(folder)
    return bool(files) and "patch_tokens" in pq.read_schema(files[0]).names


@contextmanager
def exclusive_output(folder: Path, rank: int = 0) -> Iterator[None]:
    """Holds the output's lock for one writer per rank (an OS file lock, `filelock`: released when the
    process ends, even by kill -9); a second writer gets `OutputBusyError` at once instead of racing."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / f".lock-r{rank:03d}", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputBusyError(f"{folder} is being written by another dinokit process; wait until it ends, "
                              "or write to another output") from None
    try:
        yield
    finally:
        lock.release()


def read_failures(folder: Path) -> list[tuple[str, str]]:
    out = []
    for f in sorted(Path(folder).glob("_failures-[rs]*.jsonl")) if Path(folder).is_dir() else []:
        for line in f.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: the image is simply retried
                continue
            out.append((rec["path"], rec["reason"]))
    return out


class EmbeddingsFileError(InputFileError):
    """An embeddings file or folder that is not what `dinokit embed` writes (columns, types, rows)."""


def open_embeddings(source, extra: bool = False, memory_pool=None) -> tuple[pa.Table, dict[str, str]]:
    """The table (path, embedding, and with `extra` every other column but patch_tokens) and metadata of
    an embeddings folder, Parquet file or list of them, checked: an `EmbeddingsFileError` says what is
    wrong (no such columns, unreadable, no rows)."""
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    missing = [str(s) for s in sources if not Path(s).exists()]
    if missing:
        raise FileNotFoundError(f"no embeddings at {', '.join(missing)}")
    name = ", ".join(map(str, sources))
    try:
        dataset = ds.dataset([str(s) for s in sources] if len(sources) > 1 else str(sources[0]), format="parquet")
        absent = [c for c in ("path", "embedding") if c not in dataset.schema.names]
        if absent:
            raise EmbeddingsFileError(name, f"has no column {', '.join(map(repr, absent))} (it has "
                                      f"{', '.join(dataset.schema.names) or 'none'}); `dinokit embed` writes path and embedding")
        others = [n for n in dataset.schema.names if n not in ("path", "embedding", "patch_tokens")] if extra else []
        table = dataset.to_table(columns=["path", "embedding", *others], memory_pool=memory_pool)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise EmbeddingsFileError(name, f"not a readable Parquet dataset ({first_line(e)})") from None
    if table.num_rows == 0:
        raise EmbeddingsFileError(name, "holds no embeddings (0 rows)")
    return table, {k.decode(): v.decode() for k, v in (dataset.schema.metadata or {}).items()}


def read_embeddings(source) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """(paths, float32 [N, D] embeddings, metadata) from an embedding folder or Parquet file."""
    table, meta = open_embeddings(source)
    return table.column("path").to_pylist(), embedding_matrix(table.column("embedding"), source), meta


def embedding_matrix(column: pa.ChunkedArray | pa.Array, source) -> np.ndarray:
    """A list column of numbers → float32 [N, D] (ragged or non-numeric: `EmbeddingsFileError`)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        raise EmbeddingsFileError(source, f"column 'embedding' must hold lists of numbers, not {kind}")
    if not (pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)):
        raise EmbeddingsFileError(source, f"column 'embedding' must hold numbers, not {kind.value_type}")
    if column.null_count:
        raise EmbeddingsFileError(source, f"column 'embedding' has {column.null_count} empty rows")
    if pa.types.is_fixed_size_list(kind):
        dim = kind.list_size
    else:
        lengths = np.unique(pc.list_value_length(column).to_numpy(zero_copy_only=False))
        if len(lengths) != 1:
            raise EmbeddingsFileError(source, f"rows of 'embedding' have different lengths ({', '.join(map(str, lengths[:5]))}…)")
        dim = int(lengths[0])
    if dim == 0:
        raise EmbeddingsFileError(source, "column 'embedding' holds empty vectors")
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(-1, dim).astype(np.float32, copy=False)


def bad_vectors(vectors: np.ndarray) -> np.ndarray:
    """Rows that no similarity can use: any NaN or infinity, or all zeros (a cosine of 0/0)."""
    return ~np.isfinite(vectors).all(axis=1) | ~vectors.any(axis=1)


def drop_unusable(paths: list[str], vectors: np.ndarray) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """(the usable paths, their vectors, the unusable paths, the mask of usable rows): what index, dedup and
    curation compare, and what they report instead of merging it into a group."""
    keep = ~bad_vectors(vectors)
    if keep.all():
        return paths, vectors, [], keep
    return ([p for p, k in zip(paths, keep) if k], vectors[keep], [p for p, k in zip(paths, keep) if not k], keep)


def embedding_parts(source) -> list[Path]:
    """The Parquet files of an embeddings folder (its shards; any *.parquet when it has none) or the file."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"no embeddings at {source}")
    parts = shard_files(source) or sorted(  # as pyarrow datasets: files and folders starting with "." or "_" are not data
        p for p in source.rglob("*.parquet") if not any(n.startswith((".", "_")) for n in p.relative_to(source).parts))
    if not parts:
        raise InputFileError(source, "holds no Parquet files; `dinokit embed` writes them")
    return parts


def checked_rows(path: Path) -> int:
    """The row count of an embeddings file whose columns are what `embed` writes (else the file is named)."""
    try:
        schema, rows = pq.read_schema(path), pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException) as e:
        raise EmbeddingsFileError(path, f"not a readable Parquet file ({first_line(e)})") from None
    absent = [c for c in ("path", "embedding") if c not in schema.names]
    if absent:
        raise EmbeddingsFileError(path, f"has no column {', '.join(map(repr, absent))} (it has "
                                  f"{', '.join(schema.names) or 'none'}); `dinokit embed` writes path and embedding")
    kind = schema.field("embedding").type
    if not (pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind) or pa.types.is_large_list(kind)):
        raise EmbeddingsFileError(path, f"column 'embedding' must hold lists of numbers, not {kind}")
    return rows


def row_groups(part: Path, a: int, b: int):
    """(first row, table) covering rows [a, b) of one file, a row group at a time, reading only the groups
    they touch (read_row_group: iter_batches keeps about as much again of the file in its buffers)."""
    try:
        file = pq.ParquetFile(part)
        columns = [c for c in file.schema_arrow.names if c != "patch_tokens"]  # `embed --keep-patches`: not curation's
        at = 0
        for group in range(file.metadata.num_row_groups):
            size = file.metadata.row_group(group).num_rows
            lo, hi = max(a, at), min(b, at + size)
            if hi > lo:
                yield lo, file.read_row_group(group, columns=columns).slice(lo - at, hi - lo)
            at += size
    except (OSError, pa.ArrowException) as e:
        raise EmbeddingsFileError(part, f"not a readable Parquet file ({e})") from None


def embedding_dimension(part: Path) -> int:
    """D of an embeddings file, from its schema (a fixed-size list) or its first row."""
    kind = pq.read_schema(part).field("embedding").type
    if pa.types.is_fixed_size_list(kind):
        return kind.list_size
    first = next((b for b in pq.ParquetFile(part).iter_batches(batch_size=1, columns=["embedding"]) if b.num_rows), None)
    if first is None:
        raise EmbeddingsFileError(part, "holds no embeddings (0 rows)")
    return embedding_matrix(first.column("embedding"), part).shape[1]


def file_metadata(part: Path) -> dict[str, str]:
    """The embedding settings `embed` wrote into a file's schema (model, resolution…)."""
    return {k.decode(): v.decode() for k, v in (pq.read_schema(part).metadata or {}).items()}


def collection_files(source) -> tuple[list[Path], np.ndarray]:
    """(the Parquet files of an embeddings folder, Parquet file or list of them, in row order; their row
    offsets, one more than the files), from the files' footers alone."""
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    parts = [p for s in sources for p in embedding_parts(s)]
    return parts, np.concatenate([[0], np.cumsum([checked_rows(p) for p in parts])]).astype(np.int64)


def collection_dimension(parts: list[Path], offsets: np.ndarray) -> int:
    """D of a collection, from its first file with rows."""
    with_rows = np.flatnonzero(np.diff(offsets))
    if not len(with_rows):
        raise EmbeddingsFileError(", ".join(map(str, parts)), "holds no embeddings (0 rows)")
    return embedding_dimension(parts[with_rows[0]])


def collection_shape(source) -> tuple[int, int]:
    """(rows, D) of an embeddings folder, Parquet file or list of them, from the files' footers alone."""
    parts, offsets = collection_files(source)
    return int(offsets[-1]), collection_dimension(parts, offsets)
