"""`dinokit curate pipeline`: the steps of a YAML file, in order, each on the previous step's output.

    pool: embeddings/            # `dinokit embed` output (folder, Parquet file, or a list)
    output: curated/
    steps:
      - dedup: {threshold: 0.95, keep: largest}
      - decontaminate: {protected: [eval-embeddings/], threshold: 0.95}
      - retrieve: {seeds: seed-embeddings/, mode: sample, n: 4}
      - balance: {target: 100000, strategy: random}

Relative paths are relative to the YAML file. Each finished step is written to OUTPUT/steps/ with a hash
of everything it depends on; a rerun (after a kill, or with a later step changed) reuses those steps.
Under torchrun every process holds only its slice of the pool through all the steps, and writes its part
of each step's output (`NN-step.parquet/part-r{rank}.parquet`); the result is the one-process result.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import time
from pathlib import Path

import numpy as np

from ..distributed import barrier, gather_objects, gather_varying, rank_and_world
from ..embeddings import INDEX_KINDS, META_FILE
from ..embeddings.ivfpq import build_ivfpq_index
from ..embeddings.store import collection_shape
from ..io import atomic_write, read_yaml, write_text_atomic
from .balance import balance
from .decontaminate import decontaminate
from .dedup import dedup, wants_on_disk_index
from .pool import pool_paths, pool_size, read_pool, save_pool
from .report import cluster_size_plot, write_report
from .retrieve import retrieve

STEPS = {"dedup": dedup, "decontaminate": decontaminate, "retrieve": retrieve, "balance": balance}
POOL_ARGS = {"decontaminate": ("protected",), "retrieve": ("seeds",)}  # arguments that name embeddings


def step_settings(step: str) -> set[str]:
    """The settings a step takes: its function's keywords, less the pool and the progress switch."""
    return set(inspect.signature(STEPS[step]).parameters) - {"pool", "progress", "checkpoint"}


def load_pipeline(path) -> dict:
    """A curation pipeline's YAML, checked before any step runs: known steps, each with settings its
    function takes, and paths resolved against the file's folder."""
    path = Path(path)
    config = read_yaml(path) or {}
    if not isinstance(config, dict) or "pool" not in config or "steps" not in config:
        raise ValueError(f"{path}: a curation pipeline needs `pool:` and `steps:` (see `dinokit curate pipeline --help`)")
    base = path.parent
    config["pool"] = _resolve(config["pool"], base)
    for i, step in enumerate(config["steps"]):
        if not isinstance(step, dict) or len(step) != 1 or next(iter(step)) not in STEPS:
            raise ValueError(f"{path}: step {i + 1} must be one of {sorted(STEPS)} with its settings, got {step!r}")
        name, args = next(iter(step.items()))
        args = dict(args or {})
        allowed = step_settings(name)
        if set(args) - allowed:
            raise ValueError(f"{path}: step {i + 1} ({name}) has no setting {', '.join(sorted(set(args) - allowed))}; "
                             f"it takes {', '.join(sorted(allowed))}")
        for key in POOL_ARGS.get(name, ()):
            if key in args:
                args[key] = _resolve(args[key], base)
        config["steps"][i] = {name: args}
    if "output" in config:
        config["output"] = _resolve(config["output"], base)
    return config


def _resolve(value, base: Path):
    if isinstance(value, list):
        return [_resolve(v, base) for v in value]
    return str(value if Path(value).is_absolute() else base / value)


def _fingerprint(source) -> list:
    """What a step's input is: every Parquet file's name, size and modification time."""
    if isinstance(source, list):
        return [f for s in source for f in _fingerprint(s)]
    p = Path(source)
    found = sorted(p.rglob("*.parquet")) if p.is_dir() else [p]
    return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in found if f.exists()]


def read_pool_arguments(step: str, args: dict) -> dict:
    """A step's settings with the embeddings they name (protected sets, seeds) read as pools."""
    return {k: ([read_pool(s) for s in v] if isinstance(v, list) else read_pool(v)) if k in POOL_ARGS.get(step, ())
            else v for k, v in args.items()}


def run_step(step: str, embeddings, output, *, progress: bool = True, **settings) -> dict:
    """One step on its own: embeddings (paths or pools) in, the kept images to `output` (Parquet) and the
    removed ones, with the reason, beside it (`X.removed.parquet`); returns the step's summary. Under torchrun,
    each process reads only its slice of the pool and writes it as `output/part-r{rank}.parquet` (a folder
    that reads as one table; `save_pool`); balance keeps each finished k-means level in `output.levels/` until
    the step is done, so a rerun after a kill starts from them."""
    if step not in STEPS:
        raise ValueError(f"curation step must be one of {sorted(STEPS)}, got {step!r}")
    rank, world = rank_and_world()
    sharded = world > 1
    stem = str(output)[: -len(".parquet")] if str(output).endswith(".parquet") else str(output)
    if step == "dedup":
        settings = auto_dedup_index(embeddings, Path(stem + ".index"), settings, sharded=sharded, progress=progress and rank == 0)
    pool = read_pool(embeddings, shard=sharded)
    pool.consumable = True  # read for this step alone: its kept rows may take the pool's memory
    levels = None
    if step == "balance":
        key = hashlib.sha256(json.dumps([_fingerprint(embeddings), settings], sort_keys=True, default=str).encode()).hexdigest()
        levels = Path(f"{output}.levels") / key[:16]
        settings = {**settings, "checkpoint": levels}
    result = STEPS[step](pool, **read_pool_arguments(step, settings), progress=progress and rank == 0)
    save_pool(result.kept, output)
    if result.removed is not None:
        save_pool(result.removed, stem + ".removed.parquet")
    summary = {**result.summary, **_unusable(pool)}
    if step == "dedup" and settings.get("index", "auto") not in INDEX_KINDS:
        summary["index"] = str(settings["index"])
    if sharded:
        summary["rows_per_process"] = gather_varying(np.array([len(pool)])).tolist()
    if result.removed is not None:
        summary["removed_file"] = stem + ".removed.parquet"
    if levels is not None:
        barrier()
        if rank == 0:
            shutil.rmtree(levels.parent, ignore_errors=True)
    return summary


def auto_dedup_index(source, folder: Path, settings: dict, *, sharded: bool, progress: bool) -> dict:
    """dedup's settings, with `index` the folder of an IVF-PQ index of `source` (built there unless the one
    already there is of the same files) when `index` is auto and the pool is too large for an exact search
    (`wants_on_disk_index`). The index stays: `dinokit search` can use it, and a rerun reuses it."""
    if settings.get("index", "auto") != "auto":
        return settings
    rows, dim = collection_shape(source)
    if not wants_on_disk_index(rows, dim, sharded=sharded):
        return settings
    meta = folder / META_FILE
    built = json.loads(meta.read_text()) if meta.is_file() else {}
    if (built.get("rows"), built.get("source")) != (rows, str(source)):
        build_ivfpq_index(source, folder, progress=progress)
    return {**settings, "index": str(folder)}


def _unusable(pool) -> dict:
    """The count (and the first paths) of the rows left out because their embedding was NaN or zero."""
    if not pool.unusable_count:
        return {}
    return {"unusable_embeddings": pool.unusable_count, "unusable_examples": pool.unusable[:10]}


def run_pipeline(config: dict, output=None, *, progress: bool = True) -> dict:
    """Runs the steps; returns the report (also written as OUTPUT/report.json and report.md). Under torchrun
    the pool stays split across the processes from the first read to OUTPUT/curated.parquet (then a folder of
    parts)."""
    out = Path(output or config.get("output") or "curated")
    (out / "steps").mkdir(parents=True, exist_ok=True)
    rank, world = rank_and_world()
    sharded = world > 1
    pool = read_pool(config["pool"], shard=sharded)
    report = {"pool": config["pool"], "input": pool_size(pool), **_unusable(pool), "steps": [], "duplicate_groups": {}}
    digest = hashlib.sha256(json.dumps(_fingerprint(config["pool"])).encode()).hexdigest()
    for i, step in enumerate(config["steps"]):
        name, args = next(iter(step.items()))
        pool_args = {k: v for k, v in args.items() if k in POOL_ARGS.get(name, ())}
        digest = hashlib.sha256(json.dumps([digest, name, args, _fingerprint(list(pool_args.values()))],
                                           sort_keys=True, default=str).encode()).hexdigest()
        stem = out / "steps" / f"{i + 1:02d}-{name}"
        done = Path(f"{stem}.json")
        record = json.loads(done.read_text()) if done.is_file() else {}
        removed = None
        if record.get("hash") == digest:
            summary = {**record["summary"], "resumed": True}
            pool = read_pool(f"{stem}.parquet", shard=sharded)
            if name == "dedup":  # its removed images make the report's duplicate groups
                removed = read_pool(f"{stem}.removed.parquet", shard=sharded)
        else:
            start = time.perf_counter()
            extra = {"checkpoint": out / "steps" / f"{i + 1:02d}-balance.levels" / digest[:16]} if name == "balance" else {}
            if name == "dedup" and i == 0:  # the pool as read: an index of its files fits it
                args = auto_dedup_index(config["pool"], Path(f"{stem}.index"), args, sharded=sharded,
                                        progress=progress and rank == 0)
            result = STEPS[name](pool, **read_pool_arguments(name, args), progress=progress and rank == 0, **extra)
            summary = {**result.summary, "seconds": round(time.perf_counter() - start, 2)}
            pool, removed = result.kept, result.removed
            save_pool(pool, f"{stem}.parquet")
            if removed is not None:
                save_pool(removed, f"{stem}.removed.parquet")
            if rank == 0:  # last: a step counts as done only once every process has written its part
                write_text_atomic(done, json.dumps({"hash": digest, "summary": summary}, default=str))
        report["steps"].append(summary)
        if name == "dedup" and removed is not None:
            pairs = list(zip(removed.paths, removed.columns["duplicate_of"].tolist()))
            for path, kept in (p for part in gather_objects(pairs) for p in part) if sharded else pairs:
                report["duplicate_groups"].setdefault(str(kept), []).append(path)
        if name == "balance":
            report["plot"] = str(cluster_size_plot(summary["cluster_sizes_before"], summary["cluster_sizes_after"],
                                                   out / "cluster_sizes.png")) if rank == 0 else None
    report.update(output_count=pool_size(pool), curated=str(out / "curated.parquet"), paths=str(out / "paths.txt"))
    save_pool(pool, out / "curated.parquet")
    if rank == 0:
        with atomic_write(out / "paths.txt") as tmp, open(tmp, "w") as f:
            f.writelines(p + "\n" for p in pool_paths(out / "curated.parquet"))
        write_report(out, report)
    return report
