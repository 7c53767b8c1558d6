"""Opt-in backends: the exact ones give the eager numbers, the int8 ones stay close on real photos, and a
backend that cannot run says why. (Their speed is measured by `dinokit bench --backends`, never asserted.)"""
import json

import pytest
import torch

import dinokit
from dinokit.data import load_image
from dinokit.features import read_embeddings
from dinokit.runtime.backends import BackendError, _child_survives, accelerate, cpu_bf16_works
from tests.helpers import cli


@pytest.fixture
def model_and_photos(smooth_model_dir, photos):
    model = dinokit.load_model(smooth_model_dir)
    processor = dinokit.Dinov2ImageProcessor.from_pretrained(smooth_model_dir)
    pixels = torch.cat([processor(load_image(p)).pixel_values for p in photos[:6]])
    with torch.inference_mode():
        expected = model(pixels).last_hidden_state
    return model, pixels, expected


def cosine(a, b):
    return torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)).min().item()


@pytest.mark.parametrize("backend", ["onnxruntime", "compile"])
def test_exact_backends_give_the_eager_numbers(model_and_photos, backend):
    model, pixels, expected = model_and_photos
    run = accelerate(model, backend, image_size=224)
    with torch.inference_mode():
        for batch in (pixels, pixels[:1]):  # two batch sizes through one runner
            assert (run(batch) - expected[: len(batch)]).abs().max().item() < 1e-4


@pytest.mark.parametrize("backend", ["int8", "onnxruntime-int8"])
def test_int8_backends_are_close_but_not_equal(model_and_photos, backend):
    model, pixels, expected = model_and_photos
    with torch.inference_mode():
        got = accelerate(model, backend, image_size=224)(pixels)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() > 1e-4  # the weights really are int8
    assert cosine(got[:, 0], expected[:, 0]) > 0.99  # CLS embedding of every photo


def test_backends_that_cannot_run_say_why(model_and_photos):
    model, pixels, _ = model_and_photos
    with pytest.raises(BackendError, match="image_size"):
        accelerate(model, "onnxruntime")
    run = accelerate(model, "onnxruntime", image_size=224)
    with pytest.raises(BackendError, match="224×224"):
        run(torch.nn.functional.interpolate(pixels, size=(112, 112)))
    with pytest.raises(BackendError, match="CUDA"):
        accelerate(model, "cuda-graphs")
    with pytest.raises(BackendError, match="one of"):
        accelerate(model, "tensorrt")


def test_an_export_that_disagrees_with_eager_is_refused(model_and_photos, monkeypatch):
    from dinokit.runtime import backends

    monkeypatch.setattr(backends, "EXPORT_TOLERANCE", -1.0)  # any difference, even 0, now counts as too large
    with pytest.raises(BackendError, match="differs from eager PyTorch"):
        accelerate(model_and_photos[0], "onnxruntime", image_size=224)


def test_the_bf16_probe_survives_a_crashing_child():
    assert _child_survives("pass")
    assert not _child_survives("import os, signal; os.kill(os.getpid(), signal.SIGILL)")


def test_embed_backend_option(photo_folder, smooth_model_dir, tmp_path):
    exact, onnx = tmp_path / "exact.parquet", tmp_path / "onnx.parquet"
    for out, backend in ((exact, "eager"), (onnx, "onnxruntime")):
        result = cli("embed", photo_folder, "-o", out, "--model", smooth_model_dir, "--backend", backend, "--json")
        assert result.returncode == 0, result.stderr
    a, b = (dict(zip(*read_embeddings(o)[:2])) for o in (exact, onnx))
    assert a.keys() == b.keys() and max(abs(a[k] - b[k]).max() for k in a) < 1e-4
    # int8 numbers never go into an output of exact ones (a resumed job would mix them)
    mixed = cli("embed", photo_folder, "-o", exact, "--model", smooth_model_dir, "--backend", "int8")
    assert mixed.returncode == 2 and "numerics: 'exact' there, 'float32+int8' now" in mixed.stderr
    wrong = cli("embed", photo_folder, "-o", tmp_path / "x", "--model", smooth_model_dir, "--backend", "trt")
    assert wrong.returncode == 2 and "--backend must be one of" in wrong.stderr


def test_bf16_on_cpu_runs_only_where_it_is_safe(photo_folder, smooth_model_dir, tmp_path):
    out = tmp_path / "bf16.parquet"
    result = cli("embed", photo_folder, "-o", out, "--model", smooth_model_dir, "--dtype", "bf16", "--device", "cpu",
                 "--json")
    if not cpu_bf16_works():
        assert result.returncode == 2 and "Illegal instruction" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["failed"] == 0
    exact = tmp_path / "exact.parquet"
    assert cli("embed", photo_folder, "-o", exact, "--model", smooth_model_dir).returncode == 0
    a, b = (dict(zip(*read_embeddings(o)[:2])) for o in (exact, out))
    cosines = [float(a[k] @ b[k]) / float((a[k] @ a[k]) * (b[k] @ b[k])) ** 0.5 for k in a]
    assert min(cosines) > 0.98


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graphs_give_the_eager_numbers(model_and_photos):
    model, pixels, expected = model_and_photos
    model = model.cuda()
    run = accelerate(model, "cuda-graphs")
    with torch.inference_mode():
        for _ in range(2):  # capture, then replay
            got = run(pixels.cuda()).cpu()
    assert (got - expected).abs().max().item() < 1e-3
