"""Writes that a kill cannot leave half done: readers see the old file or the whole new one, never a part."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside `path` (a hidden name, unique to this process); once the block has
    written it, it replaces `path` in one rename. On an error the temporary file goes and `path` is as it
    was. `fsync`: the data reaches the disk before the rename (shards that resumption trusts)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return Path(path)
