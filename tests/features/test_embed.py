"""`dinokit embed` end to end, through the command line as a user runs it."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pytest
import torch

import dinokit
from dinokit.data import load_image
from dinokit.features import read_embeddings
from dinokit.features.embed import read_failure_list
from tests.helpers import HANG, broken_files, cli, generated_images, torchrun


def reference_embeddings(model_dir, paths, pooling="cls", normalize=False):
    model = dinokit.load_model(model_dir)
    proc = dinokit.Dinov2ImageProcessor.from_pretrained(model_dir)
    out = {}
    with torch.no_grad():
        for p in paths:
            tokens = model(proc(load_image(p)).pixel_values).last_hidden_state
            out[str(p)] = dinokit.features.pool(tokens, model.num_prefix_tokens, pooling, normalize)[0].numpy()
    return out


def as_dict(folder):
    paths, emb, _ = read_embeddings(folder)
    assert len(paths) == len(set(paths)), "an image was embedded twice"
    return dict(zip(paths, emb))


def test_parquet_equals_the_model_image_by_image(photo_folder, tiny_model_dir, tmp_path):
    out = tmp_path / "photos.parquet"
    result = cli("embed", photo_folder, "-o", out, "--model", tiny_model_dir, "--batch-size", "4", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["done"] == summary["total"] == 16 and summary["failed"] == 0
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["path", "embedding"] and len(frame) == 16
    assert all(os.path.isabs(p) for p in frame.path)
    table = pads.dataset(out).to_table()
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert meta["dinokit.model"] == str(tiny_model_dir) and meta["dinokit.pooling"] == "cls"
    assert meta["dinokit.image_size"] == "224"
    expected = reference_embeddings(tiny_model_dir, frame.path)
    for path, emb in zip(frame.path, frame.embedding):
        assert np.allclose(np.asarray(emb, np.float32), expected[path], rtol=1e-5, atol=1e-5), path  # float32 reordering of the fast path
    again = cli("embed", photo_folder, "-o", out, "--model", tiny_model_dir)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_pooling_normalize_and_patches_in_python(photo_folder, tiny_model_dir, tmp_path):
    summary = dinokit.embed(photo_folder, tmp_path / "e", tiny_model_dir, pooling="cls+mean", normalize=True,
                            keep_patches=True, progress=False)
    assert summary.done == 16
    frame = pd.read_parquet(tmp_path / "e")
    emb = np.stack(frame.embedding.to_numpy())
    assert emb.shape == (16, 128) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    expected = reference_embeddings(tiny_model_dir, frame.path[:3], "cls+mean", True)
    for path, row in zip(frame.path[:3], emb):
        assert np.abs(row - expected[path]).max() < 1e-5
    assert len(frame.patch_tokens[0]) == 256 * 64


def test_bad_images_are_skipped_and_listed(photo_folder, tiny_model_dir, tmp_path):
    bad = broken_files(photo_folder)
    bad.pop("missing.jpg")
    out = tmp_path / "out.parquet"
    result = cli("embed", photo_folder, "-o", out, "--model", tiny_model_dir)
    assert result.returncode == 3, result.stderr
    assert "failed 4" in result.stdout
    listed = dict(read_failure_list(tmp_path / "out.parquet.failures.tsv"))
    assert sorted(os.path.basename(p) for p in listed) == sorted(bad)
    assert len(pd.read_parquet(out)) == 16


def test_usage_errors_exit_2(photo_folder, tiny_model_dir, tmp_path):
    out = tmp_path / "o"
    assert cli("embed", photo_folder, "-o", out, "--model", tiny_model_dir).returncode == 0
    clash = cli("embed", photo_folder, "-o", out, "--model", tiny_model_dir, "--pooling", "mean")
    assert clash.returncode == 2 and "other settings" in clash.stderr
    assert cli("embed", photo_folder).returncode == 2  # no -o
    assert cli("embed", tmp_path / "empty-dir-that-does-not-exist", "-o", tmp_path / "x", "--model",
               tiny_model_dir).returncode == 2


def test_killed_job_resumes_to_the_uninterrupted_result(tmp_path, tiny_model_dir):
    images = tmp_path / "many"
    generated_images(images, 240)
    args = ["embed", images, "--model", tiny_model_dir, "--batch-size", "4", "--shard-size", "8", "--num-workers", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "dinokit", *map(str, args), "-o", str(tmp_path / "killed")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + HANG  # waits for progress, however slow the host; stops if the job ended
    while len(list((tmp_path / "killed").glob("part-*.parquet"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = as_dict(tmp_path / "killed")  # every visible shard is complete and readable
    assert 0 < len(partial) < 240, "the job was not interrupted mid-way"
    resumed = cli(*args, "-o", tmp_path / "killed", "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["skipped"] == len(partial) and summary["done"] == 240 - len(partial)
    assert cli(*args, "-o", tmp_path / "straight").returncode == 0
    killed, straight = as_dict(tmp_path / "killed"), as_dict(tmp_path / "straight")
    assert killed.keys() == straight.keys()
    assert max(np.abs(killed[p] - straight[p]).max() for p in straight) < 1e-5


def test_flush_by_time_keeps_what_a_killed_job_finished(tmp_path, tiny_model_dir):
    """The default shard (4096 images) is larger than the job: only the time limit writes shards. A kill after
    the first keeps its rows, and the resumed job embeds each remaining image once and leaves those shards be."""
    images = tmp_path / "many"
    generated_images(images, 240)
    args = ["embed", images, "--model", tiny_model_dir, "--batch-size", "4", "--num-workers", "0", "--flush-seconds", "0.3"]
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "dinokit", *map(str, args), "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + HANG
    while not list(out.glob("part-*.parquet")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {f: f.read_bytes() for f in out.glob("part-*.parquet")}
    partial = as_dict(out)
    assert first and 0 < len(partial) < 240, "the job was not interrupted after its first flush"
    resumed = cli(*args, "-o", out, "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["skipped"] == len(partial) and summary["done"] == 240 - len(partial)
    assert all(f.read_bytes() == data for f, data in first.items()), "a finished shard was rewritten"
    whole = as_dict(out)  # asserts that no image is in two shards
    assert len(whole) == 240 and all(np.array_equal(whole[p], v) for p, v in partial.items())


def test_torchrun_two_processes_equal_one(photo_folder, tiny_model_dir, tmp_path):
    generated_images(photo_folder / "more", 9, seed=3)
    single = cli("embed", photo_folder, "-o", tmp_path / "one", "--model", tiny_model_dir, "--num-workers", "0")
    assert single.returncode == 0, single.stderr
    run = torchrun(2, "embed", photo_folder, "-o", tmp_path / "two", "--model", tiny_model_dir, "--num-workers", "0",
                   "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["done"] == 25
    ranks = {f.name.split("-")[1] for f in (tmp_path / "two").glob("part-*.parquet")}
    assert ranks == {"r000", "r001"}
    one, two = as_dict(tmp_path / "one"), as_dict(tmp_path / "two")
    assert one.keys() == two.keys()
    assert max(np.abs(one[p] - two[p]).max() for p in one) < 1e-5


@pytest.mark.slow
def test_memory_stays_flat(tmp_path, tiny_model_dir):
    """Peak RSS with 600 images is about what it is with 150 (streaming, not collecting)."""

    def peak(n):
        folder = tmp_path / f"imgs{n}"
        generated_images(folder, n)
        code = ("import resource, dinokit; dinokit.embed({!r}, {!r}, {!r}, shard_size=64, num_workers=0, progress=False);"
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)").format(str(folder), str(tmp_path / f"o{n}"), str(tiny_model_dir))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG)
        assert r.returncode == 0, r.stderr
        return int(r.stdout.strip().splitlines()[-1])

    small, large = peak(150), peak(600)
    assert large < small * 1.15 + 20_000, (small, large)


def test_default_cpu_batch_gives_every_thread_four_images():
    from dinokit.features.embed import default_batch_size

    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 16):
            torch.set_num_threads(n)
            assert default_batch_size(torch.device("cpu")) == max(8, 4 * n)
    finally:
        torch.set_num_threads(threads)
    assert default_batch_size(torch.device("cuda")) == 64


def test_embed_refuses_an_unknown_option_by_name(tmp_path, tiny_model_dir):
    with pytest.raises(TypeError, match="poolng"):
        dinokit.embed(tmp_path, tmp_path / "out", tiny_model_dir, poolng="cls")
    assert not (tmp_path / "out").exists()
