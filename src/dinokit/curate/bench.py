"""Time and memory of each curation step on N synthetic embeddings (a benchmark, not a test):

    python -m dinokit.curate.bench --count 1000000 --dim 384

The embeddings have concept structure (clusters, 5% planted near-duplicates) so that every step does real
work. Prints a table and writes JSON; `docs/curation.md` records the figures of our 2-core machine."""
from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from .balance import auto_levels, balance
from .decontaminate import decontaminate
from .dedup import dedup
from .pool import Pool, read_pool, write_pool
from .retrieve import retrieve


def synthetic_pool(count: int, dim: int, seed: int = 0, chunk: int = 100_000) -> Pool:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(2, count // 1000), dim)).astype(np.float32)
    vectors = np.empty((count, dim), np.float32)
    for lo in range(0, count, chunk):
        hi = min(lo + chunk, count)
        vectors[lo:hi] = centres[rng.integers(0, len(centres), hi - lo)] + \
            0.8 * rng.normal(size=(hi - lo, dim)).astype(np.float32)
    copies = rng.choice(count, count // 20, replace=False)
    vectors[copies[: len(copies) // 2]] = vectors[copies[len(copies) // 2:]] + \
        0.05 * rng.normal(size=(len(copies) // 2, dim)).astype(np.float32)
    return Pool([f"img/{i:09d}.jpg" for i in range(count)], vectors / np.linalg.norm(vectors, axis=1, keepdims=True))


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dinokit.curate.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--workdir", default="curate-bench")
    parser.add_argument("--json", default="curate-bench.json")
    args = parser.parse_args(argv)
    rows = []

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        rows.append({"step": name, "seconds": round(time.perf_counter() - start, 1), "peak_rss_gib": round(peak_rss_gib(), 2)})
        print(f"{name:>28}: {rows[-1]['seconds']:8.1f} s   peak RSS {rows[-1]['peak_rss_gib']:.2f} GiB", flush=True)
        return out

    pool = timed("generate", lambda: synthetic_pool(args.count, args.dim))
    path = timed("write Parquet", lambda: write_pool(pool, f"{args.workdir}/pool.parquet"))
    pool = timed("read Parquet", lambda: read_pool(path))
    deduped = timed("dedup (k=16)", lambda: dedup(pool, k=16).kept)
    protected = pool.take(np.arange(0, len(pool), 20))  # 5% of the pool as "evaluation images"
    timed(f"decontaminate ({len(protected)} protected)", lambda: decontaminate(deduped, protected))
    seeds = pool.take(np.arange(0, len(pool), 100))
    timed(f"retrieve sample ({len(seeds)} seeds, n=4)", lambda: retrieve(deduped, seeds, n=4))
    levels = auto_levels(len(deduped))
    timed(f"balance (levels {levels}, 10 it.)", lambda: balance(deduped, len(deduped) // 4, levels=levels, iterations=10))
    result = {"count": args.count, "dim": args.dim, "steps": rows}
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
