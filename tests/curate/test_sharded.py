"""Curation with the pool split across torchrun processes: each holds its slice of the rows, and two
processes give the one-process result (dedup exactly, with exact or on-disk IVF-PQ neighbours; balance
exactly); hierarchical k-means resumes from its finished levels."""
import json
import subprocess
import sys

import numpy as np
import pytest

from dinokit.curate import read_pool, write_pool
from dinokit.curate.balance import hierarchical_kmeans
from dinokit.curate.kmeans import assign
from tests.curate.vectors import concepts, near, pool_of
from tests.helpers import HANG, cli, torchrun


def planted_embeddings(tmp_path, files=5, unusable=(40,)):
    """12 concepts of power-law sizes with 150 near-copies, in several files; NaN rows (left out)."""
    rng = np.random.default_rng(0)
    items, _ = concepts(rng, 12, (600 / np.arange(1, 13)).astype(int))
    pool = pool_of(np.concatenate([items, near(rng, items[:150], 0.985)]))
    pool.vectors[list(unusable)] = np.nan
    folder = tmp_path / "emb"
    per = -(-len(pool) // files)
    for f in range(files):
        write_pool(pool.take(np.arange(f * per, min((f + 1) * per, len(pool)))), folder / f"part-{f}.parquet")
    return folder, len(pool)


def rows_of(folder):
    pool = read_pool(folder)
    order = np.argsort(pool.paths)
    return [pool.paths[i] for i in order], {k: v[order].tolist() for k, v in pool.columns.items()}


@pytest.mark.parametrize("keep", ["first", "centroid"])
def test_dedup_on_two_processes_equals_one(tmp_path, keep):
    emb, n = planted_embeddings(tmp_path)
    one = cli("curate", "dedup", emb, "-o", tmp_path / "one.parquet", "--keep", keep, "--json")
    assert one.returncode == 0, one.stderr
    two = torchrun(2, "curate", "dedup", emb, "-o", tmp_path / "two.parquet", "--keep", keep, "--json")
    assert two.returncode == 0, two.stderr
    s1, s2 = json.loads(one.stdout), json.loads(two.stdout)
    assert sorted(f.name for f in (tmp_path / "two.parquet").iterdir()) == ["part-r000.parquet", "part-r001.parquet"]
    assert sum(s2["rows_per_process"]) == n - 1 and max(s2["rows_per_process"]) <= n // 2 + 1  # each held half
    # 150 planted copies; the original of one is the NaN row
    assert s1["duplicate_groups"] == s2["duplicate_groups"] == 149 and s1["removed"] == s2["removed"] == 149
    assert s2["unusable_embeddings"] == 1
    assert rows_of(tmp_path / "one.parquet") == rows_of(tmp_path / "two.parquet")
    assert rows_of(tmp_path / "one.removed.parquet") == rows_of(tmp_path / "two.removed.parquet")


def test_dedup_through_an_ivfpq_index_on_two_processes_equals_one(tmp_path):
    emb, _ = planted_embeddings(tmp_path)
    built = cli("index", emb, "-o", tmp_path / "idx", "--kind", "ivfpq", "--json")
    assert built.returncode == 0, built.stderr
    one = cli("curate", "dedup", emb, "-o", tmp_path / "one.parquet", "--index", tmp_path / "idx", "--json")
    assert one.returncode == 0, one.stderr
    two = torchrun(2, "curate", "dedup", emb, "-o", tmp_path / "two.parquet", "--index", tmp_path / "idx", "--json")
    assert two.returncode == 0, two.stderr
    assert rows_of(tmp_path / "one.parquet") == rows_of(tmp_path / "two.parquet")
    exact = cli("curate", "dedup", emb, "-o", tmp_path / "exact.parquet", "--json")
    found, planted = json.loads(one.stdout)["duplicate_groups"], json.loads(exact.stdout)["duplicate_groups"]
    assert found >= 0.9 * planted  # within the index's recall: the copies sit in their original's list
    wrong = cli("curate", "dedup", tmp_path / "one.parquet", "-o", tmp_path / "x.parquet", "--index", tmp_path / "idx")
    assert wrong.returncode == 2 and "build it from the same embeddings" in wrong.stderr


def test_sharded_dedup_of_a_large_pool_builds_and_reuses_an_on_disk_index(tmp_path):
    """Past 10¹⁰ pairs an exact search split across processes takes hours, so `auto` builds an IVF-PQ index of
    the pool beside the output and searches it; a rerun reuses it. 101k random vectors, 1000 planted copies."""
    from dinokit.embeddings.store import write_shard

    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(101_000, 32)).astype(np.float32)
    originals, copies = rng.choice(len(vectors), 2000, replace=False).reshape(2, -1)
    vectors[copies] = vectors[originals] + 0.05 * rng.normal(size=(1000, 32)).astype(np.float32)  # cosine ≈ 0.999
    (tmp_path / "emb").mkdir()
    for f, lo in enumerate(range(0, len(vectors), 30_000)):
        write_shard(tmp_path / "emb" / f"part-r000-{f:06d}.parquet", {"dinokit.model": "test"},
                    [f"img/{i:06d}.jpg" for i in range(lo, min(lo + 30_000, len(vectors)))], vectors[lo:lo + 30_000])
    args = ["curate", "dedup", tmp_path / "emb", "-o", tmp_path / "two.parquet", "--keep", "first", "--json"]
    two = torchrun(2, *args)
    assert two.returncode == 0, two.stderr
    summary, index = json.loads(two.stdout), tmp_path / "two.index"
    assert summary["index"] == str(index) and json.loads((index / "meta.json").read_text())["kind"] == "ivfpq"
    assert summary["removed"] >= 990 and summary["duplicate_groups"] == summary["removed"] <= 1000
    removed = set(read_pool(tmp_path / "two.removed.parquet").paths)
    assert removed <= {f"img/{max(o, c):06d}.jpg" for o, c in zip(originals, copies)}  # keep first: the later one goes
    built = (index / "index.faiss").stat().st_mtime_ns
    again = torchrun(2, *args)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["removed"] == summary["removed"] and (index / "index.faiss").stat().st_mtime_ns == built


def test_balance_on_two_processes_equals_one(tmp_path):
    emb, n = planted_embeddings(tmp_path)
    args = ["curate", "balance", emb, "--target", "300", "--levels", "30", "10", "--json"]
    one = cli(*args, "-o", tmp_path / "one.parquet")
    assert one.returncode == 0, one.stderr
    two = torchrun(2, *args, "-o", tmp_path / "two.parquet")
    assert two.returncode == 0, two.stderr
    s1, s2 = json.loads(one.stdout), json.loads(two.stdout)
    assert s1["cluster_sizes_before"] == s2["cluster_sizes_before"] and s1["kept"] == s2["kept"] == 300
    assert rows_of(tmp_path / "one.parquet") == rows_of(tmp_path / "two.parquet")
    assert not (tmp_path / "two.parquet.levels").exists()  # the finished levels go once the step is done


def protected_and_seeds(tmp_path):
    """Near-copies of 60 pool images as a protected set, and 40 images near others as seeds."""
    rng = np.random.default_rng(5)
    pool = read_pool(tmp_path / "emb")
    protected = near(rng, pool.vectors[100:160], 0.985)
    seeds = near(rng, pool.vectors[rng.choice(len(pool), 40, replace=False)], 0.8)
    write_pool(pool_of(protected, "eval"), tmp_path / "protected.parquet")
    write_pool(pool_of(seeds, "seed"), tmp_path / "seeds.parquet")
    return tmp_path / "protected.parquet", tmp_path / "seeds.parquet"


@pytest.mark.parametrize("step", [["decontaminate"], ["retrieve", "--per-seed", "6"],
                                  ["retrieve", "--mode", "cluster", "--clusters", "40", "--per-cluster", "15"]],
                         ids=["decontaminate", "retrieve-sample", "retrieve-cluster"])
def test_decontaminate_and_retrieve_on_two_processes_equal_one(tmp_path, step):
    """Each process holds half the pool: decontaminate compares its rows with the protected set; retrieve
    keeps each seed's n best of all processes, or draws from k-means clusters split across them."""
    emb, n = planted_embeddings(tmp_path, unusable=(40, 2000))  # one in each process's half
    protected, seeds = protected_and_seeds(tmp_path)
    args = ["curate", *step, emb, "--json", *(["--protected", protected] if step[0] == "decontaminate" else ["--seeds", seeds])]
    one = cli(*args, "-o", tmp_path / "one.parquet")
    assert one.returncode == 0, one.stderr
    two = torchrun(2, *args, "-o", tmp_path / "two.parquet")
    assert two.returncode == 0, two.stderr
    s1, s2 = json.loads(one.stdout), json.loads(two.stdout)
    assert max(s2.pop("rows_per_process")) <= n // 2 + 1 and s2["unusable_examples"] == ["img/000040.jpg", "img/002000.jpg"]
    assert s1.pop("removed_file", "one").replace("one", "two") == s2.pop("removed_file", "two")  # retrieve removes none
    assert s1 == s2
    assert sorted(f.name for f in (tmp_path / "two.parquet").iterdir()) == ["part-r000.parquet", "part-r001.parquet"]
    assert rows_of(tmp_path / "one.parquet") == rows_of(tmp_path / "two.parquet")
    if step[0] == "decontaminate":
        assert s1["removed"] >= 60 and s1["protected_images_with_copies"] == 60  # the 60 and some of their copies
        assert rows_of(tmp_path / "one.removed.parquet") == rows_of(tmp_path / "two.removed.parquet")
    else:
        assert 0 < s1["kept"] <= 40 * (6 if "--per-seed" in step else 15)  # seeds × n, or clusters with seeds × per cluster


def test_a_process_that_keeps_nothing_writes_a_part_other_readers_can_merge(tmp_path):
    """Seeds all in one process's half leave the other's part empty: its columns still say string."""
    import pyarrow.parquet as pq

    pool = pool_of(np.eye(4, 8)).with_columns(seed=np.array(["s0", "s1", "s2", "s3"], dtype=object))
    write_pool(pool.take([]), tmp_path / "out.parquet" / "part-r000.parquet")
    write_pool(pool, tmp_path / "out.parquet" / "part-r001.parquet")
    assert pq.read_table(tmp_path / "out.parquet").column("seed").to_pylist() == ["s0", "s1", "s2", "s3"]
    assert read_pool(tmp_path / "out.parquet").paths == pool.paths


def test_the_nearest_centroid_does_not_depend_on_the_split_or_the_threads():
    """Points midway between two centroids: FAISS's float32 distances put them on either side depending on the
    batch start and the thread count (over a thousand of these 20,000 flipped); k-means must not."""
    import faiss

    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(64, 384)).astype(np.float32)
    a, b = rng.integers(0, 64, (2, 20_000))
    points = ((centroids[a] + centroids[b]) / 2 + 1e-6 * rng.normal(size=(20_000, 384))).astype(np.float32)
    runs, threads = [], faiss.omp_get_max_threads()
    try:
        for t in (1, 2):
            faiss.omp_set_num_threads(t)
            runs += [assign(points, centroids), np.concatenate([assign(points[:7777], centroids), assign(points[7777:], centroids)])]
    finally:
        faiss.omp_set_num_threads(threads)
    assert all(np.array_equal(runs[0], r) for r in runs[1:])
    assert ((runs[0] == a) | (runs[0] == b)).all()  # and it is one of the two
    twice = np.concatenate([centroids, centroids])  # exact ties go to the lower index
    assert np.array_equal(assign(points[:500], twice), assign(points[:500], centroids))


def test_hierarchical_kmeans_resumes_from_its_finished_levels(tmp_path):
    rng = np.random.default_rng(1)
    vectors, _ = concepts(rng, 8, [100] * 8)
    labels, centroids = hierarchical_kmeans(vectors, [16, 4], iterations=5, checkpoint=tmp_path / "levels")
    assert sorted(f.name for f in (tmp_path / "levels").iterdir()) == ["level-1.npy", "level-2.npy"]
    np.save(tmp_path / "levels" / "level-1.npy", centroids[0][::-1])  # a finished level is read, not trained again
    (tmp_path / "levels" / "level-2.npy").unlink()
    again, _ = hierarchical_kmeans(vectors, [16, 4], iterations=5, checkpoint=tmp_path / "levels")
    assert (again[:, 0] == 15 - labels[:, 0]).all()


def test_a_spent_pool_gives_its_memory_to_the_kept_rows():
    rng = np.random.default_rng(4)
    pool = pool_of(rng.normal(size=(150_000, 8)))
    rows = np.sort(rng.choice(len(pool), 120_000, replace=False))
    expected, memory = pool.vectors[rows].copy(), pool.vectors
    pool.consumable = True
    kept = pool.take(rows, last=True)
    assert np.array_equal(kept.vectors, expected) and np.shares_memory(kept.vectors, memory)
    assert kept.paths == [f"img/{i:06d}.jpg" for i in rows] and pool.vectors is None  # spent: a second read fails


def test_sharded_dedup_of_a_pool_without_duplicates_keeps_everything(tmp_path):
    rng = np.random.default_rng(5)
    write_pool(pool_of(concepts(rng, 4, [30] * 4)[0]), tmp_path / "emb" / "part-0.parquet")
    two = torchrun(2, "curate", "dedup", tmp_path / "emb", "-o", tmp_path / "two.parquet", "--json")
    assert two.returncode == 0, two.stderr
    assert json.loads(two.stdout)["kept"] == 120 and len(read_pool(tmp_path / "two.parquet")) == 120


@pytest.mark.slow
def test_the_scale_benchmark_runs_and_compares_one_process_with_two(tmp_path):
    run = subprocess.run([sys.executable, "-m", "dinokit.curate.scale", "--count", "5000", "--dim", "32", "--workdir",
                          str(tmp_path / "w"), "--json", str(tmp_path / "s.json")], capture_output=True, text=True, timeout=HANG)
    assert run.returncode == 0, run.stderr
    steps = json.loads((tmp_path / "s.json").read_text())["steps"]
    assert [(s["step"], s["processes"], len(s["peak_rss_gib_per_process"])) for s in steps[1:-1]] == [
        ("index", 1, 1), ("dedup", 1, 1), ("balance", 1, 1), ("index", 2, 2), ("dedup", 2, 2), ("balance", 2, 2)]
    assert steps[-1] == {"same_result": {"dedup": True, "balance": True}}
