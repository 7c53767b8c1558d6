"""`dinokit index --kind ivfpq`: built file by file, merged on disk, searched memory-mapped; its recall
against an exact search computed here, one torchrun process against two, and a bad file mid-build."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import dinokit
from dinokit.embeddings import EmbeddingIndex
from dinokit.embeddings.ivfpq import ivfpq_sizes
from dinokit.embeddings.store import write_shard
from tests.helpers import HANG, cli, torchrun

DIM = 64


def families(rng, count, size=10, spread=0.15):
    """`count` families of `size` vectors close to a random centre: each vector's nearest others are its family."""
    centres = rng.normal(size=(count, DIM))
    vectors = np.repeat(centres, size, 0) + spread * rng.normal(size=(count * size, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def write_embeddings(folder, vectors, files=6):
    folder.mkdir(parents=True)
    per = -(-len(vectors) // files)
    for f in range(files):
        rows = range(f * per, min((f + 1) * per, len(vectors)))
        write_shard(folder / f"part-r000-{f:06d}.parquet", {"dinokit.model": "test"}, [f"img/{i:06d}.jpg" for i in rows],
                    vectors[rows.start:rows.stop])


def exact_neighbours(vectors, queries, k):
    scores = vectors[queries] @ vectors.T
    scores[np.arange(len(queries)), queries] = -np.inf  # itself
    return np.argsort(-scores, axis=1)[:, :k]


def test_ivfpq_index_searches_like_exact_search(tmp_path):
    rng = np.random.default_rng(0)
    vectors = families(rng, 2000)
    vectors[7] = np.nan  # one unusable row: counted, named, never returned
    write_embeddings(tmp_path / "emb", vectors)
    built = cli("index", tmp_path / "emb", "-o", tmp_path / "idx", "--kind", "ivfpq", "--json")
    assert built.returncode == 0, built.stderr
    meta = json.loads(built.stdout)
    sizes = ivfpq_sizes(20_000, DIM)
    assert (meta["kind"], meta["nlist"], meta["m"], meta["count"], meta["rows"]) == ("ivfpq", sizes["nlist"], 8, 19_999, 20_000)
    assert meta["unusable"] == 1 and meta["unusable_examples"] == ["img/000007.jpg"]
    assert (tmp_path / "idx" / "index.ivfdata").stat().st_size >= 19_999 * (8 + 8)  # codes and ids, on disk
    assert not (tmp_path / "idx.work").exists()

    index = EmbeddingIndex(tmp_path / "idx")
    queries = rng.choice(np.setdiff1d(np.arange(20_000), [7]), 300, replace=False)
    hits = index.search(vectors[queries], k=11)
    found = [[int(h.path[4:10]) for h in row if int(h.path[4:10]) != q][:10] for q, row in zip(queries, hits)]
    exact = exact_neighbours(np.nan_to_num(vectors), queries, 10)
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])
    assert recall >= 0.9 and abs(recall - meta["recall@10"]) < 0.05, (recall, meta["recall@10"])
    assert all(h.path != "img/000007.jpg" for row in hits for h in row)
    wider = EmbeddingIndex(tmp_path / "idx", nprobe=meta["nlist"])  # every list: only the quantisation is left
    assert sum(len(set(r) & set(e)) for r, e in zip(
        [[int(h.path[4:10]) for h in row if int(h.path[4:10]) != q][:10] for q, row in zip(queries, wider.search(vectors[queries], 11))],
        exact)) >= recall * 3000
    assert dinokit.search(vectors[queries[:20]], tmp_path / "idx", k=5, nprobe=4) == \
        EmbeddingIndex(tmp_path / "idx", nprobe=4).search(vectors[queries[:20]], 5)


def test_auto_keeps_the_vectors_on_disk_from_four_gib(tmp_path, monkeypatch):
    """`index --kind auto` builds IVF-PQ once the float32 vectors reach ON_DISK_BYTES (4 GiB: lowered here to
    this collection's size), the in-memory kinds below it."""
    from dinokit.embeddings import index as index_module

    write_embeddings(tmp_path / "emb", families(np.random.default_rng(2), 500))
    monkeypatch.setattr(index_module, "ON_DISK_BYTES", 5000 * DIM * 4 + 1)
    assert index_module.build_index(tmp_path / "emb", tmp_path / "memory")["kind"] == "flat"
    monkeypatch.setattr(index_module, "ON_DISK_BYTES", 5000 * DIM * 4)
    meta = index_module.build_index(tmp_path / "emb", tmp_path / "disk", nprobe=8)
    assert (meta["kind"], meta["nprobe"], meta["count"]) == ("ivfpq", 8, 5000)
    assert (tmp_path / "disk" / "index.ivfdata").is_file()


def test_two_torchrun_processes_build_the_one_process_index(tmp_path):
    vectors = families(np.random.default_rng(1), 600)
    write_embeddings(tmp_path / "emb", vectors, files=5)
    one = cli("index", tmp_path / "emb", "-o", tmp_path / "one", "--kind", "ivfpq", "--json")
    assert one.returncode == 0, one.stderr
    two = torchrun(2, "index", tmp_path / "emb", "-o", tmp_path / "two", "--kind", "ivfpq", "--json")
    assert two.returncode == 0, two.stderr
    assert json.loads(two.stdout)["recall@10"] == json.loads(one.stdout)["recall@10"]
    assert (tmp_path / "one" / "index.ivfdata").read_bytes() == (tmp_path / "two" / "index.ivfdata").read_bytes()
    a, b = EmbeddingIndex(tmp_path / "one"), EmbeddingIndex(tmp_path / "two")
    assert a.search(vectors[:50], 10) == b.search(vectors[:50], 10)


def test_a_killed_build_resumes_with_its_finished_blocks(tmp_path):
    vectors = families(np.random.default_rng(2), 800)
    write_embeddings(tmp_path / "emb", vectors, files=80)
    args = [sys.executable, "-m", "dinokit", "index", str(tmp_path / "emb"), "-o", str(tmp_path / "idx"), "--kind", "ivfpq"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    blocks = tmp_path / "idx.work" / "blocks"
    deadline = time.time() + HANG
    while not list(blocks.glob("*.index")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "idx").exists() and 0 < len(list(blocks.glob("*.index"))) < 80
    resumed = cli("index", tmp_path / "emb", "-o", tmp_path / "idx", "--kind", "ivfpq", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["blocks_reused"] > 0
    assert cli("index", tmp_path / "emb", "-o", tmp_path / "straight", "--kind", "ivfpq").returncode == 0
    assert (tmp_path / "idx" / "index.ivfdata").read_bytes() == (tmp_path / "straight" / "index.ivfdata").read_bytes()


def test_a_bad_file_is_named(tmp_path):
    vectors = families(np.random.default_rng(3), 100)
    write_embeddings(tmp_path / "emb", vectors, files=4)
    pq.write_table(pa.table({"path": ["x"], "embedding": ["not numbers"]}), tmp_path / "emb" / "part-r000-000003.parquet")
    failed = cli("index", tmp_path / "emb", "-o", tmp_path / "idx", "--kind", "ivfpq")
    assert failed.returncode == 1 and "part-r000-000003.parquet" in failed.stderr and "lists of numbers" in failed.stderr
    assert not (tmp_path / "idx").exists()
