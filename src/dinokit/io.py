"""Writes that a kill cannot leave half done: readers see the old file or the whole new one, never a part."""
from __future__ import annotations

import glob
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputFileError, UsageError


@contextmanager
def atomic_write(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside `path` (a hidden name, unique to this call); once the block has
    written it, it replaces `path` in one rename. On an error the temporary file goes and `path` is as it
    was. `fsync`: the data reaches the disk before the rename (shards that resumption trusts)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")  # unique per call
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def publish_folder(path: str | os.PathLike, *, replaceable: Callable[[Path], bool]) -> Iterator[Path]:
    """Yields a temporary folder beside `path`; once the block has filled it, it becomes `path` in one
    rename, so a reader or a kill sees the old folder or the whole new one, never a mix of files. An
    existing `path` is replaced only if `replaceable(path)` says it is one of ours (else `UsageError`);
    a kill between the two renames leaves no `path` and the old one hidden beside it, never a mix, and
    the next publish puts it back first (what a killed one left is cleaned then)."""
    path = Path(path)
    if path.exists() and not (path.is_dir() and (replaceable(path) or not any(path.iterdir()))):
        raise UsageError(f"{path} exists and is not what this command writes; choose another output or remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_after_killed_publish(path)
    token = f"{os.getpid()}.{secrets.token_hex(4)}"
    tmp, old = path.with_name(f".{path.name}.{token}.tmp"), path.with_name(f".{path.name}.{token}.old")
    tmp.mkdir()
    try:
        yield tmp
        for f in tmp.iterdir():
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _clean_after_killed_publish(path: Path) -> None:
    """What a killed `publish_folder` left beside `path`: its temporary folders go, and an old folder set
    aside just before the kill is put back when nothing replaced it. Folders of live processes stay."""
    for leftover in sorted(path.parent.glob(f".{glob.escape(path.name)}.*.*.*")):
        pid, kind = leftover.name.rsplit(".", 3)[-3], leftover.name.rsplit(".", 1)[-1]
        if kind not in ("tmp", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == "old" and not path.exists():
            os.replace(leftover, path)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    return True


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_json(path: str | os.PathLike):
    """A JSON file's content, or an `InputFileError` naming the file and the line of the mistake."""
    import json

    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise InputFileError(path, f"not valid JSON ({e})") from None
    except UnicodeDecodeError:
        raise InputFileError(path, "not a text file") from None


def read_yaml(path: str | os.PathLike):
    """A YAML file's content (safe_load: plain data, never objects), or an `InputFileError`."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise InputFileError(path, f"not valid YAML{line}: {getattr(e, 'problem', None) or e}") from None
    except UnicodeDecodeError:
        raise InputFileError(path, "not a text file") from None


@contextmanager
def c_stdout_to_stderr() -> Iterator[None]:
    """What C++ code prints on stdout goes to stderr meanwhile (FAISS reports its on-disk files so; stdout
    holds the commands' --json)."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
