"""`dinokit index`, `search`, `dedup` and curation against a kill mid-write, an index whose files disagree,
and embeddings no similarity can use (NaN, infinite, all zeros)."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dinokit.cli import main
from dinokit.embeddings import EmbeddingIndex, build_index
from dinokit.errors import EXIT_FATAL, EXIT_OK, InputFileError
from tests.helpers import HANG


def write_embeddings(path, vectors, prefix="img"):
    paths = [f"/data/{prefix}_{i:07d}.jpg" for i in range(len(vectors))]
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), vectors.shape[1])
    table = pa.table({"path": pa.array(paths), "embedding": embedding})  # the layout `dinokit embed` writes
    pq.write_table(table, path)
    return paths


def assert_whole(index_dir, *allowed):
    """The index folder opens, its vectors and paths agree, and it is one of the `allowed` builds."""
    index = EmbeddingIndex(index_dir)
    assert index.index.ntotal == len(index.paths) == index.meta["count"]
    assert (len(index.paths), index.paths[0]) in allowed
    return len(index.paths)


def test_a_killed_index_build_leaves_the_old_index_or_the_new_one(tmp_path):
    """kill -9 while `dinokit index` replaces an index: at the moment the new vectors reach the disk (the
    window where, before, index.faiss was new and paths.parquet old) and at points spread over the run,
    several times. Every time, the folder is the old index or the new one, whole."""
    rng = np.random.default_rng(0)
    old_paths = write_embeddings(tmp_path / "old.parquet", rng.normal(size=(300, 32)).astype(np.float32), "old")
    new_paths = write_embeddings(tmp_path / "new.parquet", rng.normal(size=(200_000, 32)).astype(np.float32), "new")
    allowed = ((len(old_paths), old_paths[0]), (len(new_paths), new_paths[0]))
    out = tmp_path / "index"
    seen = []
    delays = ["vectors written"] * 3 + [1.0, 4.0]
    for delay in delays:
        build_index(tmp_path / "old.parquet", out)
        old_inode = (out / "index.faiss").stat().st_ino
        proc = subprocess.Popen([sys.executable, "-m", "dinokit", "index", str(tmp_path / "new.parquet"), "-o", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + HANG
        if delay == "vectors written":  # the first new index.faiss anywhere beside or inside the output
            def new_vectors_on_disk():
                files = [out / "index.faiss", *tmp_path.glob(".index.*/index.faiss")]
                return any(f.exists() and f.stat().st_ino != old_inode for f in files)
            while proc.poll() is None and time.time() < deadline and not new_vectors_on_disk():
                time.sleep(0.001)
        else:
            time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen.append(assert_whole(out, *allowed))
    assert len(old_paths) in seen, "no kill landed before the new index was published"
    # a later build replaces it and leaves nothing of the killed ones behind
    assert main(["index", str(tmp_path / "new.parquet"), "-o", str(out)]) == EXIT_OK
    assert assert_whole(out, *allowed) == len(new_paths)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_index_whose_files_disagree_is_refused_by_name(tmp_path, capsys):
    rng = np.random.default_rng(1)
    write_embeddings(tmp_path / "e.parquet", rng.normal(size=(50, 16)).astype(np.float32))
    build_index(tmp_path / "e.parquet", tmp_path / "index")
    pq.write_table(pa.table({"path": pa.array([f"/x/{i}.jpg" for i in range(40)])}), tmp_path / "index" / "paths.parquet")
    with pytest.raises(InputFileError, match="50 vectors but paths.parquet 40 paths"):
        EmbeddingIndex(tmp_path / "index")
    (tmp_path / "index" / "index.faiss").write_bytes(b"not faiss")
    assert main(["search", str(tmp_path / "q.jpg"), "--index", str(tmp_path / "index")]) == EXIT_FATAL
    err = capsys.readouterr().err
    assert "index.faiss" in err and "FAISS cannot read it" in err and "Traceback" not in err


def test_nan_and_zero_embeddings_are_counted_never_merged(tmp_path, capsys):
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(40, 16)).astype(np.float32)
    vectors[3] = np.nan
    vectors[7] = 0.0
    vectors[9, 2] = np.inf
    vectors[20:23] = vectors[10]  # real duplicates, to show grouping still works
    paths = write_embeddings(tmp_path / "e.parquet", vectors)
    bad = [paths[3], paths[7], paths[9]]

    assert main(["index", str(tmp_path / "e.parquet"), "-o", str(tmp_path / "index"), "--json"]) == EXIT_OK
    captured = capsys.readouterr()
    meta = json.loads(captured.out)
    assert meta["count"] == 37 and meta["unusable"] == 3 and meta["unusable_examples"] == bad
    assert "left out 3 embeddings" in captured.err
    assert not set(bad) & set(EmbeddingIndex(tmp_path / "index").paths)

    assert main(["dedup", str(tmp_path / "e.parquet"), "--threshold", "0.99", "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["unusable"] == bad
    assert report["groups"] == [[paths[10], paths[20], paths[21], paths[22]]]

    assert main(["curate", "dedup", str(tmp_path / "e.parquet"), "-o", str(tmp_path / "kept.parquet"), "--json"]) == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["unusable_embeddings"] == 3 and summary["unusable_examples"] == bad
    kept = pq.read_table(tmp_path / "kept.parquet").column("path").to_pylist()
    assert not set(bad) & set(kept) and len(kept) == 37 - 3  # three copies of paths[10] removed


@pytest.mark.parametrize("table, says", [
    (pa.table({"file": ["a.jpg"], "embedding": [[1.0, 2.0]]}), "has no column 'path'"),
    (pa.table({"path": ["a.jpg", "b.jpg"], "embedding": [[1.0, 2.0], [1.0]]}), "different lengths"),
    (pa.table({"path": ["a.jpg"], "embedding": [["x", "y"]]}), "must hold numbers"),
    (pa.table({"path": pa.array([], pa.string()), "embedding": pa.array([], pa.list_(pa.float32()))}), "0 rows"),
], ids=["no-path-column", "ragged", "strings", "empty"])
def test_embeddings_files_that_are_not_embeddings_are_named(table, says, tmp_path, capsys):
    pq.write_table(table, tmp_path / "e.parquet")
    for command in (["index", str(tmp_path / "e.parquet"), "-o", str(tmp_path / "i")],
                    ["dedup", str(tmp_path / "e.parquet")],
                    ["curate", "dedup", str(tmp_path / "e.parquet"), "-o", str(tmp_path / "k.parquet")]):
        assert main(command) == EXIT_FATAL, command
        err = capsys.readouterr().err
        assert says in err and "e.parquet" in err and "Traceback" not in err, (command, err)
    assert not os.path.exists(tmp_path / "i")
