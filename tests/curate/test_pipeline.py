"""`dinokit curate` as a user runs it: real photos and their copies through `embed` and `curate pipeline`,
the single steps from the command line, resumption, and torchrun."""
import json
import shutil

import numpy as np
import yaml

from dinokit.curate import Pool, read_pool, write_pool
from tests.curate.vectors import concepts, near, pool_of
from tests.helpers import cli, make_copies, torchrun


def test_pipeline_finds_the_copies_among_real_photos(photos, smooth_model_dir, tmp_path):
    pool_dir, eval_dir = tmp_path / "pool", tmp_path / "eval"
    pool_dir.mkdir()
    eval_dir.mkdir()
    for f in photos:
        shutil.copy(f, (eval_dir if f.name == "astronaut.png" else pool_dir) / f.name)
    planted = make_copies(pool_dir, [f for f in photos if f.name in ("chelsea.png", "coffee.png", "rocket.jpg")])
    make_copies(pool_dir, [eval_dir / "astronaut.png"])  # copies of an evaluation image leaked into the pool
    for folder, out in ((pool_dir, "pool.emb"), (eval_dir, "eval.emb")):
        run = cli("embed", folder, "-o", tmp_path / out, "--model", smooth_model_dir, "--num-workers", "0")
        assert run.returncode == 0, run.stderr
    config = {"pool": "pool.emb", "output": "curated", "steps": [
        {"dedup": {"threshold": 0.98}},  # calibrated for this random model (see the smooth_model_dir fixture)
        {"decontaminate": {"protected": ["eval.emb"], "threshold": 0.95}},  # astronaut_cropped: 0.974, others ≤ 0.81
        {"balance": {"target": 8, "levels": [4]}}]}
    (tmp_path / "curate.yaml").write_text(yaml.safe_dump(config))
    run = cli("curate", "pipeline", tmp_path / "curate.yaml", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "curated" / "report.json").read_text())
    groups = sorted(sorted(p.rsplit("/", 1)[1] for p in [kept, *removed])
                    for kept, removed in report["duplicate_groups"].items())
    leaked = [g for g in groups if g[0].startswith("astronaut_")]  # the leaked copies are copies of each other too
    assert [g for g in groups if g not in leaked] == sorted(sorted(v) for v in planted.values())
    assert all(all(p.startswith("astronaut_") for p in g) for g in leaked)
    kept = sorted(k.rsplit("/", 1)[1] for k in report["duplicate_groups"] if "astronaut" not in k)
    assert kept == ["chelsea.png", "coffee.png", "rocket.jpg"]  # the originals: most pixels, then first path
    dedup_step, decon_step, balance_step = report["steps"]
    assert dedup_step["input"] == 10 + 12 and dedup_step["removed"] == 9 + sum(len(g) - 1 for g in leaked)
    removed = read_pool(tmp_path / "curated" / "steps" / "02-decontaminate.removed.parquet")
    assert removed.paths and all(p.rsplit("/", 1)[1].startswith("astronaut_") for p in removed.paths)
    assert set(removed.columns["contaminated_by"]) == {str((eval_dir / "astronaut.png").resolve())}
    assert balance_step["kept"] == 8
    paths = (tmp_path / "curated" / "paths.txt").read_text().split()
    assert len(paths) == 8 and not any("astronaut" in p for p in paths)
    assert (tmp_path / "curated" / "cluster_sizes.png").stat().st_size > 1000
    assert "| dedup |" in (tmp_path / "curated" / "report.md").read_text()


def structured_pool(tmp_path, seed=0):
    rng = np.random.default_rng(seed)
    items, _ = concepts(rng, 12, (600 / np.arange(1, 13)).astype(int))
    copies = near(rng, items[:150], 0.985)
    pool = pool_of(np.concatenate([items, copies]))
    pool.metadata["dinokit.model"] = "synthetic"
    return write_pool(pool, tmp_path / "pool.parquet")


def test_rerun_reuses_finished_steps_and_redoes_changed_ones(tmp_path):
    structured_pool(tmp_path)
    config = {"pool": "pool.parquet", "output": "out", "steps": [{"dedup": {}}, {"balance": {"target": 300}}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    first = cli("curate", "pipeline", tmp_path / "c.yaml", "--json")
    assert first.returncode == 0, first.stderr
    again = json.loads(cli("curate", "pipeline", tmp_path / "c.yaml", "--json").stdout)
    assert [s.get("resumed") for s in again["steps"]] == [True, True]
    config["steps"][1]["balance"]["target"] = 200
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    changed = json.loads(cli("curate", "pipeline", tmp_path / "c.yaml", "--json").stdout)
    assert [s.get("resumed") for s in changed["steps"]] == [True, None] and changed["output_count"] == 200


def test_a_pool_beyond_memory_is_deduplicated_through_an_on_disk_index(tmp_path, monkeypatch):
    """From 4 GiB of vectors (`beyond_memory`, made true here for a small pool) the pipeline's first dedup
    builds an IVF-PQ index of the pool's files beside the step and searches it: the same copies go."""
    import importlib

    from dinokit.curate import load_pipeline, run_pipeline

    structured_pool(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"pool": "pool.parquet", "steps": [{"dedup": {}}]}))
    exact = run_pipeline(load_pipeline(tmp_path / "c.yaml"), tmp_path / "exact", progress=False)
    assert not (tmp_path / "exact" / "steps" / "01-dedup.index").exists()
    monkeypatch.setattr(importlib.import_module("dinokit.curate.dedup"), "beyond_memory", lambda rows, dim: True)
    on_disk = run_pipeline(load_pipeline(tmp_path / "c.yaml"), tmp_path / "disk", progress=False)
    meta = json.loads((tmp_path / "disk" / "steps" / "01-dedup.index" / "meta.json").read_text())
    assert meta["kind"] == "ivfpq" and meta["rows"] == exact["input"]
    assert on_disk["duplicate_groups"] == exact["duplicate_groups"] and on_disk["output_count"] == exact["output_count"]


def test_a_misspelt_step_setting_stops_the_pipeline_before_any_step(tmp_path):
    structured_pool(tmp_path)
    config = {"pool": "pool.parquet", "output": "out", "steps": [{"dedup": {}}, {"balance": {"targets": 300}}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    run = cli("curate", "pipeline", tmp_path / "c.yaml")
    assert run.returncode == 1 and "step 2 (balance) has no setting targets" in run.stderr and "target" in run.stderr
    assert not (tmp_path / "out" / "steps").exists()  # nothing ran


def test_single_steps_from_the_command_line(tmp_path):
    pool_file = structured_pool(tmp_path)
    run = cli("curate", "dedup", pool_file, "-o", tmp_path / "d.parquet", "--keep", "first", "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["removed"] == 150 and summary["duplicate_groups"] == 150
    removed = read_pool(tmp_path / "d.removed.parquet")
    assert set(removed.columns["duplicate_of"]) <= set(read_pool(tmp_path / "d.parquet").paths)
    seeds = read_pool(pool_file).take([0, 300])
    write_pool(Pool(["seed0", "seed1"], seeds.vectors), tmp_path / "seeds.parquet")
    run = cli("curate", "retrieve", tmp_path / "d.parquet", "--seeds", tmp_path / "seeds.parquet", "--n", "3",
              "-o", tmp_path / "r.parquet", "--json")
    assert run.returncode == 0, run.stderr
    retrieved = read_pool(tmp_path / "r.parquet")
    assert len(retrieved) == 6 and set(retrieved.columns["seed"]) == {"seed0", "seed1"}
    bad = cli("curate", "balance", tmp_path / "missing.parquet", "--target", "5", "-o", tmp_path / "b.parquet")
    assert bad.returncode == 1 and "missing.parquet" in bad.stderr


def test_torchrun_two_processes_equal_one(tmp_path):
    """Every step with the pool split in two from the first read to the output: the one-process result, each
    step's output a folder of the processes' parts; one process resumes from those parts."""
    pool_file = structured_pool(tmp_path)
    rng = np.random.default_rng(1)
    vectors = read_pool(pool_file).vectors
    write_pool(pool_of(near(rng, vectors[200:230], 0.985), "eval"), tmp_path / "eval.parquet")
    write_pool(pool_of(near(rng, vectors[rng.choice(len(vectors), 60, replace=False)], 0.8), "seed"), tmp_path / "seeds.parquet")
    config = {"pool": "pool.parquet", "steps": [
        {"dedup": {}}, {"decontaminate": {"protected": ["eval.parquet"]}},
        {"retrieve": {"seeds": "seeds.parquet", "n": 12}}, {"balance": {"target": 250, "levels": [30, 10]}}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    one = cli("curate", "pipeline", tmp_path / "c.yaml", "-o", tmp_path / "one", "--json")
    assert one.returncode == 0, one.stderr
    two = torchrun(2, "curate", "pipeline", tmp_path / "c.yaml", "-o", tmp_path / "two", "--json")
    assert two.returncode == 0, two.stderr
    r1, r2 = (json.loads((tmp_path / o / "report.json").read_text()) for o in ("one", "two"))
    assert [s["removed"] for s in r1["steps"]][:2] == [150, 30] and r1["steps"][2]["kept"] > 250
    assert r1["duplicate_groups"] == r2["duplicate_groups"]
    for s1, s2 in zip(r1["steps"], r2["steps"]):
        assert {k: v for k, v in s1.items() if k != "seconds"} == {k: v for k, v in s2.items() if k != "seconds"}
    a, b = read_pool(tmp_path / "one" / "curated.parquet"), read_pool(tmp_path / "two" / "curated.parquet")
    assert a.paths == b.paths and len(a) == 250
    assert all((a.columns[c] == b.columns[c]).all() for c in a.columns)
    assert (tmp_path / "one" / "paths.txt").read_text() == (tmp_path / "two" / "paths.txt").read_text()
    for stem in ("01-dedup", "01-dedup.removed", "03-retrieve", "curated"):
        folder = tmp_path / "two" / ("steps" if stem[0] == "0" else "") / f"{stem}.parquet"
        assert sorted(f.name for f in folder.iterdir()) == ["part-r000.parquet", "part-r001.parquet"]
    again = cli("curate", "pipeline", tmp_path / "c.yaml", "-o", tmp_path / "two", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads((tmp_path / "two" / "report.json").read_text())
    assert all(s.get("resumed") for s in report["steps"]) and report["duplicate_groups"] == r1["duplicate_groups"]
    assert (tmp_path / "two" / "curated.parquet").is_file() and read_pool(tmp_path / "two" / "curated.parquet").paths == a.paths
