"""Curation at scale, measured (a benchmark, not a test): N synthetic clustered embeddings written as files,
then `index --kind ivfpq`, `curate dedup` (through that index), `curate balance`, and with `--steps` also
`curate decontaminate` (10,000 protected images) and `curate retrieve` (10,000 seeds × 4), each under
torchrun with 1 and with 2 processes, printing the time and every process's peak RSS, and checking that 2
processes give the 1-process result:

    python -m dinokit.curate.scale --count 10000000 --dim 384 --workdir /big/disk/scale

docs/scale.md records what our 2-core, 24 GB machine printed. The embeddings are generated file by file
(never all in memory): `count // 1000` concepts, 5% of the rows planted near-copies of another row.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROWS_PER_FILE = 100_000
STEPS = ("index", "dedup", "balance", "decontaminate", "retrieve")


def write_synthetic(folder: Path, count: int, dim: int, seed: int = 0) -> None:
    """Unit vectors around count // 1000 concepts, written as files of 100,000 rows; in each file, 5% of the
    rows are near-copies (cosine ≈ 0.99) of other rows of that file."""
    from ..embeddings.store import write_shard

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(2, count // 1000), dim)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    for f, lo in enumerate(range(0, count, ROWS_PER_FILE)):
        target = folder / f"part-r000-{f:06d}.parquet"
        if target.exists():
            continue
        n = min(ROWS_PER_FILE, count - lo)
        vectors = centres[rng.integers(0, len(centres), n)] + 0.8 * rng.normal(size=(n, dim)).astype(np.float32)
        copies = rng.choice(n, 2 * (n // 40), replace=False)
        vectors[copies[::2]] = vectors[copies[1::2]] + 0.05 * rng.normal(size=(len(copies[::2]), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        write_shard(target, {"dinokit.model": "synthetic"}, [f"img/{i:09d}.jpg" for i in range(lo, lo + n)], vectors)


def write_queries(work: Path, dim: int, count: int = 10_000, seed: int = 1) -> None:
    """protected.parquet: near-copies (cosine ≈ 0.99) of `count` rows of the first file; seeds.parquet: `count`
    vectors near (cosine ≈ 0.8) other rows of it."""
    import pyarrow.parquet as pq

    from ..embeddings.store import embedding_matrix, write_shard

    if (work / "seeds.parquet").exists():
        return
    rng = np.random.default_rng(seed)
    first = work / "emb" / "part-r000-000000.parquet"
    rows = embedding_matrix(pq.read_table(first, columns=["embedding"]).column("embedding"), first)
    picked = rng.choice(len(rows), min(2 * count, len(rows)), replace=False)
    for name, base, noise in (("protected", rows[picked[::2]], 0.14), ("seeds", rows[picked[1::2]], 0.75)):
        vectors = base + noise / np.sqrt(dim) * rng.normal(size=base.shape).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        write_shard(work / f"{name}.parquet", {"dinokit.model": "synthetic"}, [f"{name}/{i:06d}.jpg" for i in range(len(base))],
                    vectors)


def run_measured(argv: list[str], report: Path) -> int:
    """`python -m dinokit ARGV` in this process (as a user runs it: the benchmark sits below the command line),
    then its time and peak RSS to `report` (one file per torchrun rank)."""
    import runpy

    from ..distributed import rank_and_world

    start = time.perf_counter()
    sys.argv = ["dinokit", *argv]
    try:
        runpy.run_module("dinokit", run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    rank = rank_and_world()[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    Path(f"{report}.r{rank}.json").write_text(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_gib": peak}))
    return status


def step(name: str, processes: int, argv: list[str], workdir: Path) -> dict:
    report = workdir / "reports" / f"{name}-p{processes}"
    report.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket() as sock:  # a free port: a fixed one collides with any other torchrun on the machine
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-port",
               str(port), "-m", "dinokit.curate.scale", "--measure", str(report), "--", *argv]
    threads = str(max(1, (os.cpu_count() or 1) // processes))  # the machine's cores, shared out
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": threads})
    ranks = [json.loads(Path(f"{report}.r{r}.json").read_text()) for r in range(processes)]
    row = {"step": name, "processes": processes, "seconds": round(time.perf_counter() - start, 1),
           "peak_rss_gib_per_process": [round(r["peak_rss_gib"], 2) for r in ranks]}
    print(f"{name:>8} × {processes}: {row['seconds']:8.1f} s   peak RSS per process "
          f"{', '.join(f'{g:.2f}' for g in row['peak_rss_gib_per_process'])} GiB", flush=True)
    return row


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--measure"]:
        return run_measured(argv[3:], Path(argv[1]))
    parser = argparse.ArgumentParser(prog="python -m dinokit.curate.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--workdir", default="curate-scale")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--nprobe", type=int, default=4, help="lists each dedup query visits")
    parser.add_argument("--steps", nargs="+", default=["index", "dedup", "balance"], choices=STEPS,
                        help="which steps to measure")
    parser.add_argument("--levels", type=int, nargs="+", help="balance: clusters per level (default: √N, √N/3)")
    parser.add_argument("--iterations", type=int, default=10, help="balance: k-means iterations per level")
    parser.add_argument("--json", default="curate-scale.json")
    args = parser.parse_args(argv)
    work = Path(args.workdir)
    start = time.perf_counter()
    write_synthetic(work / "emb", args.count, args.dim)
    rows = [{"step": "generate", "seconds": round(time.perf_counter() - start, 1)}]
    print(f"generate: {rows[0]['seconds']} s ({args.count} × {args.dim})", flush=True)
    if {"decontaminate", "retrieve"} & set(args.steps):
        write_queries(work, args.dim)
    for p in args.processes:
        out = work / f"p{p}"
        if "index" in args.steps:
            index = ["index", str(work / "emb"), "-o", str(out / "index"), "--kind", "ivfpq", "--json"]
            rows.append(step("index", p, index, work))
            rows[-1]["meta"] = {k: v for k, v in json.loads((out / "index" / "meta.json").read_text()).items()
                                if k in ("nlist", "m", "nprobe", "recall@10", "count", "trained_on")}
        if "dedup" in args.steps:
            rows.append(step("dedup", p, ["curate", "dedup", str(work / "emb"), "-o", str(out / "dedup.parquet"), "--index",
                                          str(out / "index"), "--nprobe", str(args.nprobe), "--k", "16", "--keep", "first",
                                          "--json"], work))
        if "balance" in args.steps:
            source = out / "dedup.parquet" if "dedup" in args.steps else work / "emb"
            levels = ["--levels", *map(str, args.levels)] if args.levels else []
            rows.append(step("balance", p, ["curate", "balance", str(source), "-o", str(out / "balance.parquet"), *levels,
                                            "--target", str(args.count // 4), "--iterations", str(args.iterations),
                                            "--json"], work))
        if "decontaminate" in args.steps:
            rows.append(step("decontaminate", p, ["curate", "decontaminate", str(work / "emb"), "--protected",
                                                  str(work / "protected.parquet"), "-o", str(out / "decontaminate.parquet"),
                                                  "--json"], work))
        if "retrieve" in args.steps:
            rows.append(step("retrieve", p, ["curate", "retrieve", str(work / "emb"), "--seeds", str(work / "seeds.parquet"),
                                             "--per-seed", "4", "-o", str(out / "retrieve.parquet"), "--json"], work))
    if len(args.processes) > 1 and set(STEPS[1:]) & set(args.steps):
        rows.append({"same_result": _same_results(work, args.processes)})
        print(f"same result with {args.processes} processes: {rows[-1]['same_result']}", flush=True)
    Path(args.json).write_text(json.dumps({"count": args.count, "dim": args.dim, "steps": rows}, indent=2))
    return 0


def _same_results(work: Path, processes: list[int]) -> dict:
    """Whether every process count kept the same images in each curation step (read path columns only)."""
    import pyarrow.dataset as ds

    def kept(path):
        return np.sort(ds.dataset(str(path), format="parquet").to_table(columns=["path"]).column("path").to_numpy(
            zero_copy_only=False))

    same = {}
    for name in STEPS[1:]:
        if not (work / f"p{processes[0]}" / f"{name}.parquet").exists():
            continue
        first = kept(work / f"p{processes[0]}" / f"{name}.parquet")
        same[name] = all(np.array_equal(first, kept(work / f"p{p}" / f"{name}.parquet")) for p in processes[1:])
    return same


if __name__ == "__main__":
    raise SystemExit(main())
