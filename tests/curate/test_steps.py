"""Each curation step on embeddings with planted structure: the tests know the right answer."""
import numpy as np
import pytest

from dinokit.curate import Pool, balance, balanced_sample, decontaminate, dedup, entropy, kmeans, read_pool, retrieve, write_pool
from dinokit.curate.balance import allocate
from dinokit.curate.dedup import DEFAULT_THRESHOLD
from tests.curate.vectors import DIM, concepts, near, pool_of, unit


def pairs(groups):
    return {(min(a, b), max(a, b)) for g in groups for a in g for b in g if a != b}


def test_dedup_finds_planted_groups_at_the_default_threshold(report):
    rng = np.random.default_rng(0)
    items, _ = concepts(rng, 40, 50)  # 2000 distinct images
    planted = []
    copies = []
    for _i, original in enumerate(rng.choice(len(items), 300, replace=False)):
        k = int(rng.integers(1, 4))  # 1–3 copies: re-encodings, resizes, crops of the same picture
        copies.append(near(rng, np.repeat(items[original][None], k, 0), 0.985))
        planted.append([int(original), *range(len(items) + sum(len(c) for c in copies[:-1]), len(items) + sum(len(c) for c in copies))])
    look_alikes = near(rng, items[:100], 0.92)  # similar but distinct pictures: must not be merged
    pool = pool_of(np.concatenate([items, *copies, look_alikes]))
    result = dedup(pool)
    kept_paths = set(result.kept.paths)
    found = {}
    for path, kept in zip(result.removed.paths, result.removed.columns["duplicate_of"]):
        found.setdefault(kept, [kept]).append(path)
    index = {p: i for i, p in enumerate(pool.paths)}
    found_pairs, planted_pairs = pairs([[index[p] for p in g] for g in found.values()]), pairs(planted)
    precision = len(found_pairs & planted_pairs) / len(found_pairs)
    recall = len(found_pairs & planted_pairs) / len(planted_pairs)
    report(f"curate dedup, planted groups at threshold {DEFAULT_THRESHOLD}: pair precision {precision:.4f}, "
           f"recall {recall:.4f}")
    assert precision >= 0.99 and recall >= 0.99
    assert len(result.kept) == len(items) + len(look_alikes) and result.summary["duplicate_groups"] == len(planted)
    assert all(any(pool.paths[i] in kept_paths for i in g) for g in planted)  # one of each group stays
    assert sorted(result.kept.columns["dup_count"][result.kept.columns["dup_count"] > 1]) == sorted(len(g) for g in planted)


def test_dedup_keeps_the_requested_representative(tmp_path):
    rng = np.random.default_rng(1)
    base = unit(rng.normal(size=(1, DIM)))
    group = np.concatenate([near(rng, base, 0.99), base, near(rng, base, 0.99)])  # row 1 is the centre
    pool = pool_of(np.concatenate([group, unit(rng.normal(size=(5, DIM)))]))
    assert dedup(pool, keep="centroid").kept.paths[:1] == [pool.paths[1]]
    assert dedup(pool, keep="first").kept.paths[:1] == [pool.paths[0]]
    assert dedup(pool, keep="largest").kept.paths[:1] == [pool.paths[0]]  # no files: all "empty", first path
    from PIL import Image

    for i, side in enumerate((40, 64, 64)):  # most pixels; ties to the first path
        Image.effect_noise((side, side), 60).convert("RGB").save(tmp_path / f"{i}.jpg")
    files = Pool([str(tmp_path / f"{i}.jpg") for i in range(3)] + pool.paths[3:], pool.vectors)
    assert dedup(files, keep="largest").kept.paths[:1] == [str(tmp_path / "1.jpg")]
    with pytest.raises(ValueError, match="keep"):
        dedup(pool, keep="biggest")


def test_decontaminate_removes_exactly_the_copies_of_protected_images():
    rng = np.random.default_rng(2)
    items, labels = concepts(rng, 30, 40)  # 1200: the first 200 are the evaluation set
    protected = pool_of(items[:200], "eval")
    copied = rng.choice(200, 40, replace=False)
    pool = pool_of(np.concatenate([items[200:], near(rng, items[copied], 0.97)]), "web")
    result = decontaminate(pool, [protected])
    planted = set(pool.paths[1000:])
    assert set(result.removed.paths) == planted
    assert list(result.removed.columns["contaminated_by"]) == [protected.paths[i] for i in copied]
    assert len(result.kept) == 1000 and not planted & set(result.kept.paths)


def test_sample_retrieval_returns_the_planted_neighbours():
    rng = np.random.default_rng(3)
    items, _ = concepts(rng, 50, 40)
    seeds = pool_of(unit(rng.normal(size=(20, DIM))), "seed")
    neighbours = near(rng, np.repeat(seeds.vectors, 4, 0), 0.9)  # 4 planted neighbours per seed
    pool = pool_of(np.concatenate([items, neighbours]))
    result = retrieve(pool, seeds, mode="sample", n=4)
    assert set(result.kept.paths) == set(pool.paths[len(items):])
    expected_seed = {pool.paths[len(items) + i]: seeds.paths[i // 4] for i in range(80)}
    assert dict(zip(result.kept.paths, result.kept.columns["seed"])) == expected_seed


def test_cluster_retrieval_keeps_the_clusters_that_hold_seeds():
    rng = np.random.default_rng(4)
    centres = unit(rng.normal(size=(8, DIM)))
    labels = np.repeat(np.arange(8), 60)
    pool = pool_of(near(rng, centres[labels], 0.8))
    seeds = pool_of(near(rng, centres[[1, 1, 5]], 0.8), "seed")
    result = retrieve(pool, seeds, mode="cluster", clusters=8, per_cluster=25)
    chosen = labels[[pool.paths.index(p) for p in result.kept.paths]]
    assert len(result.kept) == 50 and set(chosen) == {1, 5} and (chosen == 1).sum() == 25
    assert set(result.kept.columns["seed"][chosen == 5]) == {seeds.paths[2]}


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(5)
    centres = unit(rng.normal(size=(10, 32)))
    truth = rng.integers(0, 10, 2000)
    points = near(rng, centres[truth], 0.95)
    _, assignment = kmeans(points, 10, seed=0)
    # the same partition up to cluster numbering
    assert len({(a, t) for a, t in zip(assignment, truth)}) == 10


def test_allocation_is_as_even_as_the_sizes_allow():
    alloc = allocate(np.array([100, 3, 50, 10]), 60)
    assert alloc.sum() == 60 and alloc[1] == 3 and alloc[3] == 10 and abs(int(alloc[0]) - int(alloc[2])) <= 1
    assert allocate(np.array([2, 2]), 10).tolist() == [2, 2]


def test_balancing_flattens_a_skewed_distribution(report):
    rng = np.random.default_rng(6)
    sizes = (2000 / np.arange(1, 21) ** 1.2).astype(int)  # 2000, 870, 535, … 55 images per concept
    items, truth = concepts(rng, 20, sizes)
    pool = pool_of(items)
    result = balance(pool, 400, levels=[60, 20])  # over-cluster 3×, then one coarse cluster per concept
    kept_truth = truth[[pool.paths.index(p) for p in result.kept.paths]]
    before, after = entropy(truth), entropy(kept_truth)
    auto = balance(pool, 400)
    auto_after = entropy(truth[[pool.paths.index(p) for p in auto.kept.paths]])
    report(f"curate balance, 20 planted concepts (sizes {sizes.max()}…{sizes.min()}) → 400 images: concept entropy "
           f"{before:.3f} → {after:.3f} nats with levels 60/20, {auto_after:.3f} with auto levels "
           f"{auto.summary['levels']} (uniform {np.log(20):.3f})")
    assert len(result.kept) == 400 and len(auto.kept) == 400
    assert after > 0.98 * np.log(20) and auto_after > before + 0.4
    assert np.bincount(kept_truth, minlength=20).min() >= 8  # the smallest concepts are no longer drowned
    assert result.summary["entropy_after"] > result.summary["entropy_before"]


def test_closest_strategy_takes_the_most_central_images():
    labels = np.array([[0], [0], [0], [1], [1]])
    distances = np.array([0.5, 0.1, 0.3, 0.2, 0.9])
    assert balanced_sample(labels, 2, strategy="closest", distances=distances).tolist() == [1, 3]


def test_pool_files_round_trip_with_provenance(tmp_path):
    rng = np.random.default_rng(7)
    pool = pool_of(rng.normal(size=(10, 8))).with_columns(seed=np.array(list("abcdefghij"), dtype=object))
    pool.metadata["dinokit.model"] = "m"
    back = read_pool(write_pool(pool, tmp_path / "p.parquet"))
    assert back.paths == pool.paths and np.allclose(back.vectors, pool.vectors)
    assert list(back.columns["seed"]) == list("abcdefghij") and back.metadata["dinokit.model"] == "m"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_pool(tmp_path / "nowhere")
