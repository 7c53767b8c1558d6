"""The jobs on DINOv3: a ViT-S/16 in the official file layout and a ConvNeXt in transformers' layout, through
the command line as a user runs them; each result against the model and processor called directly."""
import json

import numpy as np
import pytest
import torch

import dinokit
from dinokit.data import load_image
from dinokit.features import read_embeddings
from tests.helpers import cli, perturb_


@pytest.fixture(scope="module")
def dinov3_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("dinov3")
    torch.manual_seed(0)
    vit = perturb_(dinokit.dinov3_vits16(pretrained=False, num_hidden_layers=2), std=0.05)
    torch.save(vit.state_dict(), root / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
    convnext = perturb_(dinokit.dinov3_convnext_tiny(pretrained=False, depths=[1, 1, 1, 1]), std=0.05)
    convnext.save_pretrained(root / "convnext")
    return {"vit": root / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth", "convnext": root / "convnext"}


@pytest.mark.parametrize("family", ["vit", "convnext"])
def test_embed_search_dedup_equal_the_model(family, dinov3_models, photo_folder, tmp_path):
    model = dinov3_models[family]
    out = tmp_path / "emb"
    result = cli("embed", photo_folder, "-o", out, "--model", model, "--pooling", "cls+mean")
    assert result.returncode == 0, result.stderr
    paths, embeddings, meta = read_embeddings(out)
    net, processor = dinokit.AutoModel.from_pretrained(model), dinokit.DINOv3ImageProcessor()
    assert meta["dinokit.interpolate_mode"] == ("rope" if family == "vit" else "none")
    with torch.no_grad():
        for path, row in zip(paths, embeddings):
            tokens = net(processor(load_image(path)).pixel_values).last_hidden_state[0]
            expected = torch.cat([tokens[0], tokens[net.num_prefix_tokens:].mean(dim=0)]).numpy()
            np.testing.assert_allclose(row, expected, atol=1e-4)
    assert cli("index", out, "-o", tmp_path / "index").returncode == 0
    found = cli("search", "--index", tmp_path / "index", paths[0], "-k", "1", "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["hits"][0]["path"] == paths[0]
    dedup = cli("dedup", out, "--json")
    assert dedup.returncode == 0, dedup.stderr
    _service_answers_as_embed(tmp_path / "index", paths[0], embeddings[0])


def _service_answers_as_embed(index, path, row):
    """`dinokit serve`'s model work on the index (its model and settings come from the index): the same
    embedding as `embed` wrote, and the photo itself as the nearest neighbour."""
    import asyncio
    from pathlib import Path

    from dinokit.serve.service import Service

    service = Service(index=index)
    service.start()
    try:
        vector = asyncio.run(service.embed([service.pixels(Path(path).read_bytes(), Path(path).name)]))
    finally:
        service.stop()
    np.testing.assert_allclose(vector[0], row, atol=1e-4)
    assert service.search(vector, 1)[0][0]["path"] == path


def test_eval_knn_and_finetune_on_dinov3(dinov3_models, tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            rng = np.random.default_rng(len(split) + len(label))
            for i in range(4):
                noise = rng.integers(0, 60, (64, 64, 3))
                Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    for model in dinov3_models.values():
        knn = cli("eval", "knn", "--train", tmp_path / "train", "--val", tmp_path / "val", "--model", model, "--no-cache",
                  "--ks", "1", "--json")
        assert knn.returncode == 0, knn.stderr
        assert json.loads(knn.stdout)["results"][0]["top1"] >= 0.75  # red and blue noise: chance is 0.5
    tuned = cli("finetune", "--train", tmp_path / "train", "--model", dinov3_models["vit"], "-o", tmp_path / "ft",
                "--epochs", "1", "--batch-size", "4")
    assert tuned.returncode == 0, tuned.stderr
    classifier = dinokit.load_model(tmp_path / "ft")
    assert type(classifier).__name__ == "Dinov2ForImageClassification" and classifier.config.model_type == "dinov3_vit"
    assert sorted(classifier.config.id2label.values()) == ["blue", "red"]


def test_export_viz_and_what_does_not_apply(dinov3_models, photo_folder, tmp_path):
    photo = sorted(photo_folder.iterdir())[0]
    for name, model in dinov3_models.items():
        exported = cli("export", model, "--format", "onnx", "-o", tmp_path / f"{name}.onnx", "--image-size", "224")
        assert exported.returncode == 0, exported.stderr
        assert float(exported.stdout.rsplit(":", 1)[1]) <= 1e-4  # the printed difference from eager PyTorch
        assert cli("viz", "pca", photo, "--model", model, "-o", tmp_path / f"{name}_pca.png").returncode == 0
    assert cli("viz", "attention", photo, "--model", dinov3_models["vit"], "-o", tmp_path / "att.png").returncode == 0
    refused = cli("viz", "attention", photo, "--model", dinov3_models["convnext"], "-o", tmp_path / "no.png")
    assert refused.returncode != 0 and "has no attention maps" in refused.stderr
    refused = cli("embed", photo_folder, "-o", tmp_path / "e", "--model", dinov3_models["vit"], "--interpolate-mode", "hf")
    assert refused.returncode != 0 and "has none to interpolate" in refused.stderr and "Traceback" not in refused.stderr
    second = sorted(photo_folder.iterdir())[1]
    matched = cli("match", photo, second, "--model", dinov3_models["vit"], "-o", tmp_path / "match.png")
    assert matched.returncode == 0 and "mutual nearest-neighbour matches" in matched.stdout, matched.stderr


def test_segmentation_head_on_dinov3(dinov3_models, tmp_path):
    from PIL import Image

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for i in range(3):
        mask = np.zeros((96, 128), np.uint8)
        mask[10 + 10 * i:80, 20:100] = 1
        Image.fromarray(np.where(mask[..., None] > 0, 220, 40).astype(np.uint8).repeat(3, axis=2)).save(
            tmp_path / "images" / f"{i}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"{i}.png")
    for name, model in dinov3_models.items():
        trained = cli("train-seg", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "-o", tmp_path / name,
                      "--model", model, "--epochs", "2", "--json")
        assert trained.returncode == 0, trained.stderr
        segmented = cli("segment", tmp_path / "images" / "0.png", "--head", tmp_path / name, "-o", tmp_path / f"{name}-out")
        assert segmented.returncode == 0, segmented.stderr
        assert Image.open(tmp_path / f"{name}-out" / "0_mask.png").size == (128, 96)
    refused = cli("train-seg", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "-o", tmp_path / "four",
                  "--model", dinov3_models["convnext"], "--layers", "4")
    assert refused.returncode != 0 and "--layers 1" in refused.stderr and "Traceback" not in refused.stderr
