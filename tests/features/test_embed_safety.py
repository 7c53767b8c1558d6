"""`dinokit embed` against the ways a careless user loses data: two runs into one output, a file given
twice, settings changed between runs, names that break a TSV, failures that stay failed."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import dinokit
from dinokit.cli import main
from dinokit.errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from dinokit.features import read_embeddings
from dinokit.features.embed import read_failure_list
from tests.helpers import HANG, generated_images, save_tiny_model


def rows(folder):
    paths, vectors, _ = read_embeddings(folder)
    return paths, vectors


def test_two_writers_into_one_output_lose_nothing(tmp_path, tiny_model_dir):
    """Two `embed` runs of different folders into one output, started together, three times over: the
    second writer is refused at once (exit 2, saying why) or, if the first had finished, adds its images.
    Never a lost row, a duplicate row or an unreadable shard (before: both exited 0 with half the rows)."""
    pools = {name: generated_images(tmp_path / name, 24, seed=i) for i, name in enumerate(["a", "b"])}
    for round_ in range(3):
        out = tmp_path / f"out{round_}"
        procs = {name: subprocess.Popen(
            [sys.executable, "-m", "dinokit", "embed", str(tmp_path / name), "-o", str(out), "--model",
             str(tiny_model_dir), "--shard-size", "4", "--batch-size", "4", "--num-workers", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in pools}
        results = {name: (p.wait(HANG), p.stderr.read()) for name, p in procs.items()}
        finished = [name for name, (status, _) in results.items() if status == EXIT_OK]
        refused = [name for name, (status, _) in results.items() if status == EXIT_USAGE]
        assert sorted(finished + refused) == ["a", "b"] and finished, results
        for name in refused:
            assert "being written by another dinokit process" in results[name][1], results[name][1]
        paths, vectors = rows(out)
        assert len(paths) == len(set(paths)), "an image was written twice"
        assert sorted(paths) == sorted(str(p.resolve()) for name in finished for p in pools[name])
        assert np.isfinite(vectors).all()
        assert not list(out.glob(".*.tmp")), "a temporary file was left behind"


def test_a_file_given_twice_is_embedded_once(tmp_path, tiny_model_dir, photos):
    folder = tmp_path / "in"
    folder.mkdir()
    for f in photos[:3]:
        shutil.copy(f, folder / f.name)
    os.symlink(folder / photos[0].name, folder / "link-to-first.png")  # a second name for the same file
    listing = tmp_path / "list.txt"
    listing.write_text(f"{folder / photos[1].name}\n")
    summary = dinokit.embed([folder, folder / photos[2].name, listing], tmp_path / "out", tiny_model_dir, progress=False)
    paths, _ = rows(tmp_path / "out")
    assert summary.total == summary.done == 3
    assert sorted(paths) == sorted(str((folder / f.name).resolve()) for f in photos[:3])


def test_settings_that_change_the_numbers_are_refused_by_name(tmp_path, tiny_model_dir, photos, monkeypatch, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for f in photos[:2]:
        shutil.copy(f, folder / f.name)
    out = tmp_path / "out"
    model = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model)
    assert main(["embed", str(folder), "-o", str(out), "--model", str(model)]) == EXIT_OK
    # the same settings, written otherwise: accepted (nothing to do)
    monkeypatch.chdir(tmp_path)
    for same in (["--model", "tiny"], ["--model", "./tiny/"], ["--model", str(model), "--interpolate-mode", "official"]):
        capsys.readouterr()
        assert main(["embed", str(folder), "-o", str(out), *same]) == EXIT_OK, same
        assert "nothing to do" in capsys.readouterr().out, same
    # what changes the output: refused, naming the setting
    for other, name in ((["--keep-patches"], "keep_patches"), (["--interpolate-mode", "hf"], "interpolate_mode")):
        capsys.readouterr()
        assert main(["embed", str(folder), "-o", str(out), "--model", "tiny", *other]) == EXIT_USAGE, other
        assert name in capsys.readouterr().err, other
    save_tiny_model(model, noise=0.3)  # new weights in the same folder: another model
    capsys.readouterr()
    assert main(["embed", str(folder), "-o", str(out), "--model", "tiny"]) == EXIT_USAGE
    assert "weights" in capsys.readouterr().err
    assert len(rows(out)[0]) == 2


def test_failure_list_survives_tabs_and_newlines_in_names(tmp_path, tiny_model_dir, photos):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos[0], folder / "good.png")
    names = ["tab\there.jpg", "new\nline.jpg", 'quote".jpg', "plain.jpg"]
    for name in names:
        (folder / name).write_text("not an image")
    summary = dinokit.embed(folder, tmp_path / "out", tiny_model_dir, progress=False)
    assert summary.failed == 4
    listed = read_failure_list(tmp_path / "out.failures.tsv")
    assert sorted(os.path.basename(p) for p, _ in listed) == sorted(names)
    assert all("not an image" in reason for _, reason in listed)


def test_failures_are_not_forgotten_and_can_be_retried(tmp_path, tiny_model_dir, photos, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos[0], folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    assert main(["embed", str(folder), "-o", str(out), "--model", str(tiny_model_dir)]) == EXIT_PARTIAL
    capsys.readouterr()
    # a re-run: nothing new, but the failure remains: exit 3, and it says so
    assert main(["embed", str(folder), "-o", str(out), "--model", str(tiny_model_dir)]) == EXIT_PARTIAL
    said = capsys.readouterr().out
    assert "1 images failed in an earlier run" in said and "--retry-failed" in said
    # fixed, then retried: embedded, the failure list gone, exit 0
    Image.open(photos[1]).save(folder / "broken.png")
    assert main(["embed", str(folder), "-o", str(out), "--model", str(tiny_model_dir), "--retry-failed", "--json"]) == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["done"] == 1 and summary["failed"] == 0
    assert sorted(os.path.basename(p) for p in rows(out)[0]) == ["broken.png", "good.png"]
    assert not (tmp_path / "out.failures.tsv").exists()
    assert main(["embed", str(folder), "-o", str(out), "--model", str(tiny_model_dir)]) == EXIT_OK


@pytest.mark.parametrize("option", ["--shard-size", "--batch-size", "--image-size"])
def test_counts_are_checked_when_parsed(option, tmp_path, capsys):
    assert main(["embed", str(tmp_path), "-o", str(tmp_path / "o"), option, "0"]) == EXIT_USAGE
    assert f"argument {option}: must be at least 1, got 0" in capsys.readouterr().err
