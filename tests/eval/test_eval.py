"""The evaluation protocols: k-NN against an independent numpy computation, caching, and sensible numbers
on a small real dataset (scikit-learn's handwritten digits, upscaled)."""
import json

import numpy as np
import pytest
import torch

import dinokit.eval.features as eval_features
from dinokit.eval import eval_knn, eval_linear, knn_predict, logistic_regression
from dinokit.eval.features import FeatureSet
from tests.helpers import HANG, cli, save_tiny_model


def numpy_knn(train, train_labels, query, num_classes, k, T):
    """The protocol written out plainly: cosine, top-200, softmax(sim/T) over them, sum the first k."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    query = query / np.linalg.norm(query, axis=1, keepdims=True)
    max_k = min(200, len(train))
    out = np.zeros((len(query), num_classes))
    for q in range(len(query)):
        sims = train @ query[q]
        order = np.argsort(-sims, kind="stable")[:max_k]
        w = np.exp((sims[order] - sims[order].max()) / T)
        w /= w.sum()
        for j in range(min(k, max_k)):
            out[q, train_labels[order[j]]] += w[j]
    return out


def test_knn_equals_an_independent_numpy_computation():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 24)).astype(np.float32)
    labels = rng.integers(0, 7, 500)
    query = rng.normal(size=(60, 24)).astype(np.float32)
    ours = knn_predict(torch.from_numpy(train), torch.from_numpy(labels), torch.from_numpy(query), 7)
    for k in (10, 20, 100, 200):
        expected = numpy_knn(train.astype(np.float64), labels, query.astype(np.float64), 7, k, 0.07)
        np.testing.assert_allclose(ours[k].numpy(), expected, atol=1e-5)
        assert (ours[k].argmax(1).numpy() == expected.argmax(1)).all()


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from PIL import Image
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits")
    data = load_digits()
    counts = {}
    for image, target in zip(data.images, data.target):
        n = counts[target] = counts.get(target, 0) + 1
        split = "train" if n <= 40 else "val" if n <= 60 else None
        if split:
            folder = root / split / str(target)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((image / 16 * 255).astype(np.uint8)).resize((56, 56), Image.BICUBIC).convert("RGB").save(
                folder / f"{n}.png")
    return root / "train", root / "val"


def test_random_model_versus_a_trained_one_on_digits(digits, tmp_path, report):
    train, val = digits
    random_model = save_tiny_model(tmp_path / "random", noise=0.1)
    trained = tmp_path / "trained"
    assert cli("finetune", "--train", train, "--model", random_model, "-o", trained, "--mode", "full",
               "--epochs", "15", "--batch-size", "16", "--lr", "1e-3", "--num-workers", "0", "--image-size", "112",
               "--min-crop-scale", "0.7", "--no-flip").returncode == 0
    scores = {}
    for name, model in (("random init", random_model), ("fine-tuned", trained)):
        r = eval_knn(train, val, str(model), image_size=112, num_workers=0, cache_dir=tmp_path / "cache", progress=False)
        lin = eval_linear(train, val, str(model), image_size=112, num_workers=0, cache_dir=tmp_path / "cache",
                          epochs=30, progress=False)
        scores[name] = (r["results"][1]["top1"], lin["best"]["val_accuracy"])
        report(f"digits ({name}): k-NN k=20 top-1 {100 * scores[name][0]:.1f}%, linear {100 * scores[name][1]:.1f}% "
               f"(chance 10%)")
    assert scores["fine-tuned"][0] > scores["random init"][0] + 0.05
    assert scores["fine-tuned"][1] > scores["random init"][1] + 0.05
    assert scores["random init"][0] > 0.12  # even random features carry some signal


def test_features_are_computed_once(digits, tmp_path, monkeypatch):
    train, val = digits
    model = save_tiny_model(tmp_path / "m", noise=0.1)
    first = eval_knn(train, val, str(model), image_size=56, num_workers=0, cache_dir=tmp_path / "c", progress=False)

    def no_recompute(*args, **kwargs):
        raise AssertionError("features were recomputed")

    monkeypatch.setattr(eval_features, "extract", no_recompute)
    again = eval_knn(train, val, str(model), ks=(5, 10), image_size=56, num_workers=0, cache_dir=tmp_path / "c",
                     progress=False)
    assert again["results"][1] == first["results"][0]
    eval_linear(train, val, str(model), image_size=56, num_workers=0, cache_dir=tmp_path / "c", epochs=2,
                progress=False)


def test_cli_tables_and_parquet_input(digits, tmp_path):
    train, val = digits
    model = save_tiny_model(tmp_path / "m", noise=0.1)
    table = cli("eval", "knn", "--train", train, "--val", val, "--model", model, "--image-size", "56",
                "--cache-dir", tmp_path / "c", "--num-workers", "0")
    assert table.returncode == 0, table.stderr
    assert "top-1" in table.stdout and len(table.stdout.splitlines()) == 6
    for split in ("train", "val"):
        assert cli("embed", digits[0 if split == "train" else 1], "-o", tmp_path / f"{split}.parquet",
                   "--model", model, "--image-size", "56").returncode == 0
    from_parquet = cli("eval", "knn", "--train", tmp_path / "train.parquet", "--val", tmp_path / "val.parquet",
                       "--json")
    assert from_parquet.returncode == 0, from_parquet.stderr
    r = json.loads(from_parquet.stdout)
    assert r["train_images"] == 400 and r["classes"] == 10 and r["results"][0]["top1"] > 0.12
    lin = cli("eval", "linear", "--train", train, "--val", val, "--model", model, "--image-size", "56",
              "--cache-dir", tmp_path / "c", "--num-workers", "0", "--epochs", "3", "--augment", "2", "--logreg")
    assert lin.returncode == 0, lin.stderr
    assert "2 cached augmented views" in lin.stdout and "logistic regression" in lin.stdout


def test_logistic_regression_separates_separable_classes():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 16)) * 4
    def make(n):
        y = rng.integers(0, 3, n)
        x = centers[y] + rng.normal(size=(n, 16))
        return FeatureSet(torch.tensor(x, dtype=torch.float32)[:, None], None, torch.tensor(y), ["a", "b", "c"], [])
    r = logistic_regression(make(300), make(100), Cs=[1e-6, 1e-2, 1.0])
    assert r["val_accuracy"] > 0.95 and r["best_C"] > 1e-6


def test_torchrun_features_equal_single_process(digits, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    train, val = digits
    model = save_tiny_model(tmp_path / "m", noise=0.1)
    args = ["eval", "knn", "--train", str(train), "--val", str(val), "--model", str(model), "--image-size", "56",
            "--num-workers", "0", "--no-cache", "--json"]
    single = cli(*args)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                          str(port), "-m", "dinokit", *args], capture_output=True, text=True, timeout=HANG,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert single.returncode == two.returncode == 0, two.stderr
    assert json.loads(two.stdout)["results"] == json.loads(single.stdout)["results"]


def test_the_cache_follows_the_weights_not_the_name(digits, tmp_path, monkeypatch):
    """Replaced weights in the same folder, or another interpolation mode, are recomputed (before: the old
    features came back under the same name); the same model from another directory is a cache hit."""
    train, val = digits
    model = save_tiny_model(tmp_path / "m", noise=0.1)
    calls = []
    real_extract = eval_features.extract
    monkeypatch.setattr(eval_features, "extract", lambda *a, **k: calls.append(1) or real_extract(*a, **k))
    kw = dict(image_size=56, num_workers=0, cache_dir=tmp_path / "c", progress=False)
    first = eval_knn(train, val, str(model), **kw)
    assert len(calls) == 2  # train and val
    monkeypatch.chdir(tmp_path)
    assert eval_knn(train, val, "m", **kw)["results"] == first["results"] and len(calls) == 2  # same model, relative
    hf = eval_knn(train, val, "m", interpolate_mode="hf", **kw)
    assert len(calls) == 4 and hf["results"] == eval_knn(train, val, "m", interpolate_mode="hf", **{**kw, "cache_dir": None})["results"]
    save_tiny_model(model, noise=0.4)  # new weights under the same name
    calls.clear()
    replaced = eval_knn(train, val, str(model), **kw)
    assert len(calls) == 2, "the old features came back for new weights"
    fresh = eval_knn(train, val, str(model), **{**kw, "cache_dir": None})
    assert replaced["results"] == fresh["results"] != first["results"]


def test_small_sets_are_warned_about_and_k_is_clipped(tmp_path, capsys):
    """18 training images in 3 classes: k = 20/100/200 would all vote with every image, and top-5 of 3
    classes is 100% by construction; both are said, and the table shows what was computed."""
    from PIL import Image

    from dinokit.cli import main

    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 3)):
        for c, name in enumerate(["red", "green", "blue"]):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                arr = rng.integers(0, 90, (32, 32, 3), dtype=np.uint8)
                arr[..., c] = 200
                Image.fromarray(arr).save(tmp_path / split / name / f"{i}.png")
    model = save_tiny_model(tmp_path / "m", noise=0.1)
    r = eval_knn(tmp_path / "train", tmp_path / "val", str(model), image_size=56, num_workers=0, cache_dir=None,
                 progress=False)
    assert [row["k"] for row in r["results"]] == [10, 18]
    assert all(row["top5"] is None for row in r["results"])
    assert any("exceed the 18 training images" in w for w in r["warnings"])
    assert main(["eval", "knn", "--train", str(tmp_path / "train"), "--val", str(tmp_path / "val"), "--model", str(model),
                 "--image-size", "56", "--num-workers", "0", "--no-cache"]) == 0
    out, err = capsys.readouterr()
    assert "warning: k 20, 100, 200 exceed" in err and "top-5 accuracy is 100% by construction" in err
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["10", "18"]
    lin = eval_linear(tmp_path / "train", tmp_path / "val", str(model), image_size=56, num_workers=0, cache_dir=None,
                      epochs=1, progress=False)
    assert lin["holdout_images"] < 50 and any("held-out" in w for w in lin["warnings"])
