"""`dinokit embed --engine ray` on a real local Ray (2 CPUs): the local engine's output, a lost model actor,
a killed driver."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import dinokit
from dinokit.features import read_embeddings
from dinokit.features.embed import read_failure_list
from tests.helpers import HANG, broken_files, cli, generated_images

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray of 2 CPUs, started by this process; the jobs under test join it as a cluster (RAY_ADDRESS)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def as_dict(folder):
    paths, emb, _ = read_embeddings(folder)
    assert len(paths) == len(set(paths)), "an image was embedded twice"
    return dict(zip(paths, emb))


def same_embeddings(a, b):
    assert a.keys() == b.keys()
    assert max(np.abs(a[p] - b[p]).max() for p in a) < 1e-5  # float32 sums of other batch shapes


def start(args, out, address):
    return subprocess.Popen([sys.executable, "-m", "dinokit", *map(str, args), "-o", str(out)],
                            env={**os.environ, "RAY_ADDRESS": address}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(condition, proc):
    deadline = time.time() + HANG  # waits for progress, however slow the host; stops if the job ended
    while not condition() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)


def model_actor_pids() -> set[int]:
    """Ray titles an actor's process `ray::…ModelActor…` (ps shows the title)."""
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in ps.splitlines() if "ray::" in line and "ModelActor" in line}


def test_ray_output_equals_the_local_engines(ray_address, photo_folder, tiny_model_dir, tmp_path):
    bad = broken_files(photo_folder)
    options = dict(batch_size=4, shard_size=8, num_workers=0, progress=False)
    local = dinokit.embed(photo_folder, tmp_path / "local", tiny_model_dir, **options)
    on_ray = dinokit.embed(photo_folder, tmp_path / "ray", tiny_model_dir, engine="ray", **options)
    assert (on_ray.total, on_ray.done, on_ray.failed) == (local.total, local.done, local.failed) == (local.total, 16, len(bad) - 1)
    same_embeddings(as_dict(tmp_path / "ray"), as_dict(tmp_path / "local"))
    assert read_embeddings(tmp_path / "ray")[2] == read_embeddings(tmp_path / "local")[2]  # the same settings recorded
    assert read_failure_list(f"{tmp_path / 'ray'}.failures.tsv") == read_failure_list(f"{tmp_path / 'local'}.failures.tsv")
    assert sorted(f.name for f in (tmp_path / "ray").glob("part-*.parquet"))[0] == "part-s000000.parquet"
    again = dinokit.embed(photo_folder, tmp_path / "ray", tiny_model_dir, engine="ray", **options)
    assert again.done == 0 and again.skipped == again.total
    # the local engine continues a Ray output, and the other way round, as one dataset
    generated_images(photo_folder / "later", 6, seed=5)
    assert dinokit.embed(photo_folder, tmp_path / "ray", tiny_model_dir, **options).done == 6
    generated_images(photo_folder / "later2", 5, seed=6)
    assert dinokit.embed(photo_folder, tmp_path / "ray", tiny_model_dir, engine="ray", **options).done == 5
    assert len(as_dict(tmp_path / "ray")) == 27


def test_a_killed_model_actor_is_replaced_and_the_output_is_complete(ray_address, tmp_path, tiny_model_dir):
    images = tmp_path / "many"
    generated_images(images, 240)
    args = ["embed", images, "--model", tiny_model_dir, "--batch-size", "4", "--shard-size", "8", "--engine", "ray"]
    out = tmp_path / "ray"
    before = model_actor_pids()
    proc = start(args, out, ray_address)
    wait_for(lambda: len(list(out.glob("part-*.parquet"))) >= 2 and model_actor_pids() - before, proc)
    actors = model_actor_pids() - before
    assert actors and proc.poll() is None, "the job ended before an actor could be killed"
    for pid in actors:
        os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=HANG) == 0
    assert cli(*args[:-2], "-o", tmp_path / "local", "--num-workers", "0").returncode == 0
    same_embeddings(as_dict(out), as_dict(tmp_path / "local"))


def test_a_killed_driver_resumes_without_redoing_finished_shards(ray_address, tmp_path, tiny_model_dir):
    images = tmp_path / "many"
    generated_images(images, 240)
    args = ["embed", images, "--model", tiny_model_dir, "--batch-size", "4", "--shard-size", "8", "--engine", "ray"]
    out = tmp_path / "ray"
    proc = start(args, out, ray_address)
    wait_for(lambda: len(list(out.glob("part-*.parquet"))) >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {f: f.read_bytes() for f in out.glob("part-*.parquet")}
    partial = as_dict(out)
    assert 0 < len(partial) < 240, "the job was not interrupted mid-way"
    resumed = cli(*args, "-o", out, "--json", env={"RAY_ADDRESS": ray_address})
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["skipped"] == len(partial) and summary["done"] == 240 - len(partial)
    assert all(f.read_bytes() == data for f, data in finished.items()), "a finished shard was written again"
    assert json.loads((out / "_shards.json").read_text())["shards"][0][0].endswith("gen_0000.jpg")
    assert cli(*args[:-2], "-o", tmp_path / "local", "--num-workers", "0").returncode == 0
    same_embeddings(as_dict(out), as_dict(tmp_path / "local"))


def test_ray_options_are_checked(tmp_path, photo_folder, tiny_model_dir):
    bad = cli("embed", photo_folder, "-o", tmp_path / "o", "--model", tiny_model_dir, "--engine", "ray", "--actors", "3:1")
    assert bad.returncode == 2 and "--actors: expected 1 <= MIN <= MAX, got '3:1'" in bad.stderr
    with pytest.raises(dinokit.errors.UsageError, match="--engine must be one of local, ray"):
        dinokit.embed(photo_folder, tmp_path / "o", tiny_model_dir, engine="spark")
