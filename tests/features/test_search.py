"""Index, search, near-duplicates and the PCA picture on the shared photos."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import dinokit
from dinokit.features import EmbeddingIndex, duplicate_groups
from tests.helpers import cli, make_copies


@pytest.fixture
def embedded(photo_folder, tiny_model_dir, tmp_path):
    out = tmp_path / "emb.parquet"
    dinokit.embed(photo_folder, out, tiny_model_dir, progress=False)
    return out


def test_other_readers_read_the_output(embedded):
    import duckdb
    import polars as pl

    assert pl.read_parquet(f"{embedded}/*.parquet").height == 16
    count, dim = duckdb.sql(f"select count(*), max(len(embedding)) from read_parquet('{embedded}/*.parquet')").fetchall()[0]
    assert (count, dim) == (16, 64)


def test_every_image_is_its_own_nearest_neighbour(embedded, tmp_path):
    dinokit.build_index(embedded, tmp_path / "index")
    index = EmbeddingIndex(tmp_path / "index")
    paths, vectors, _ = dinokit.features.read_embeddings(embedded)
    for path, hits in zip(paths, index.search(vectors, k=3)):
        assert hits[0].path == path and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_search_command_embeds_the_query_like_the_job(embedded, photo_folder, tmp_path):
    assert cli("index", embedded, "-o", tmp_path / "index").returncode == 0
    query = photo_folder / "chelsea.png"
    result = cli("search", query, "--index", tmp_path / "index", "-k", "4", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)[0]["hits"]
    assert len(hits) == 4 and hits[0]["path"] == str(query.resolve()) and hits[0]["score"] > 0.9999
    assert hits[0]["score"] >= hits[1]["score"] >= hits[3]["score"]
    text = cli("search", query, "--index", tmp_path / "index", "-k", "2")
    assert str(query.resolve()) in text.stdout.splitlines()[1]


def test_ivf_index_for_large_sets_finds_exact_neighbours():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5000, 32)).astype(np.float32)
    ivf = dinokit.embeddings.build_faiss_index(dinokit.embeddings.normalized(vectors), "ivf", nprobe=64)
    _, ids = ivf.search(dinokit.embeddings.normalized(vectors[:100]), 1)
    assert (ids[:, 0] == np.arange(100)).mean() >= 0.99


def test_exact_knn_answers_what_a_flat_faiss_index_answers():
    """knn searches the database without copying it into an index: same scores, same ids, same tie order."""
    import faiss

    from dinokit.embeddings import knn
    from dinokit.embeddings.index import normalized

    rng = np.random.default_rng(2)
    database, queries = rng.normal(size=(3000, 32)).astype(np.float32), rng.normal(size=(300, 32)).astype(np.float32)
    database[7] = database[5]  # a tie: the lower id first
    index = faiss.IndexFlatIP(32)
    index.add(normalized(database))
    expected = index.search(normalized(queries), 8)
    found = knn(database, queries, 8, kind="flat", batch_size=128)
    assert np.array_equal(found[0], expected[0]) and np.array_equal(found[1], expected[1])
    assert knn(database[:3], queries, 8)[1].shape == (300, 3)  # at most the database


def test_dedup_finds_planted_copies_and_merges_nothing_else(photos, smooth_model_dir, tmp_path):
    folder = tmp_path / "pool"
    folder.mkdir()
    for f in photos:
        shutil.copy(f, folder / f.name)
    planted = make_copies(folder, [f for f in photos if f.name in ("chelsea.png", "coffee.png", "rocket.jpg")])
    dinokit.embed(folder, tmp_path / "emb", smooth_model_dir, progress=False)
    result = cli("dedup", tmp_path / "emb", "--threshold", "0.98", "--json")  # calibrated for this random model
    assert result.returncode == 0, result.stderr
    groups = sorted(sorted(p.rsplit("/", 1)[1] for p in g) for g in json.loads(result.stdout)["groups"])
    assert groups == sorted(sorted(v) for v in planted.values())


def test_duplicate_groups_are_connected_components():
    base = np.eye(4, 8, dtype=np.float32)
    chain = np.stack([base[0], base[0] + 0.2 * base[1], base[0] + 0.4 * base[1]])  # a ~ b ~ c, a !~ c directly
    groups = duplicate_groups(np.concatenate([chain, base[2:]]), threshold=0.98)
    assert groups == [[0, 1, 2]]


def test_viz_pca_picture(photo_folder, tiny_model_dir, tmp_path):
    out = tmp_path / "pca.png"
    images = [photo_folder / "chelsea.png", photo_folder / "coffee.png"]
    result = cli("viz", "pca", *images, "-o", out, "--model", tiny_model_dir)
    assert result.returncode == 0, result.stderr
    picture = np.asarray(Image.open(out))
    assert picture.shape[0] == 2 * 256 + 8
    left = np.asarray(Image.open(images[0]).convert("RGB").resize((385, 256), Image.BICUBIC))
    assert np.abs(picture[:256, :385].astype(int) - left).max() <= 1
    pca_map = picture[:256, 385 + 8:]
    assert (pca_map.sum(axis=2) == 0).mean() > 0.05  # background removed
    assert len(np.unique(pca_map.reshape(-1, 3), axis=0)) > 50  # a coloured map, not a flat one
