"""dino.txt in the jobs, end to end on the test photos with a random small dino.txt (the plumbing: random
weights rank nothing meaningfully): embed → index → search by text and by image, zero-shot classify, eval
zeroshot, open-vocabulary segmentation, export, and the service's text search. Every number is checked
against the model's own encode_image / encode_text with the notebook's formulas."""
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import dinokit
from dinokit.data import OfficialEvalProcessor, load_image
from dinokit.embeddings import read_embeddings
from dinokit.errors import UsageError
from dinokit.pretrained import DinoTxtModel
from tests.helpers import cli, save_dinotxt_folder


@pytest.fixture(scope="module")
def dinotxt(tmp_path_factory):
    folder, _ = save_dinotxt_folder(tmp_path_factory.mktemp("dinotxt") / "model")
    return folder, DinoTxtModel.from_pretrained(folder)


@pytest.fixture(scope="module")
def text_index(dinotxt, tmp_path_factory):
    from tests.helpers import sample_photos

    root = tmp_path_factory.mktemp("text-index")
    (root / "photos").mkdir()
    for f in sample_photos():
        shutil.copy(f, root / "photos" / f.name)
    summary = dinokit.embed(root / "photos", root / "emb.parquet", str(dinotxt[0]), num_workers=0, progress=False)
    assert summary.done == 11
    dinokit.build_index(root / "emb.parquet", root / "index")
    return root


def _image_embeddings(model, paths):
    processor = OfficialEvalProcessor()
    with torch.no_grad():
        return model.encode_image(processor([load_image(p) for p in paths]).pixel_values)


def test_embed_stores_dinotxt_image_embeddings(dinotxt, text_index):
    paths, vectors, meta = read_embeddings(text_index / "emb.parquet")
    expected = _image_embeddings(dinotxt[1], paths).numpy()
    assert vectors.shape == (11, 768) and np.abs(vectors - expected).max() <= 1e-4
    assert meta["dinokit.model"] == str(dinotxt[0]) and meta["dinokit.embedding"].startswith("dino.txt image embedding")
    with pytest.raises(UsageError, match="--pooling mean does not apply"):
        dinokit.embed(text_index / "photos", text_index / "other.parquet", str(dinotxt[0]), pooling="mean")


def test_search_by_text_and_by_image_on_the_same_index(dinotxt, text_index):
    model = dinotxt[1]
    paths, vectors, _ = read_embeddings(text_index / "emb.parquet")
    images = F.normalize(torch.tensor(vectors), dim=-1)
    texts = ["a cat", "a red bicycle", "a rocket at night"]
    with torch.no_grad():
        cosines = model.encode_texts(texts, normalize=True) @ images.T
    results = dinokit.search(text=texts, index=text_index / "index", k=4)
    for row, hits in zip(cosines, results):
        order = row.argsort(descending=True)[:4]
        assert [h.path for h in hits] == [paths[i] for i in order]
        assert np.allclose([h.score for h in hits], row[order].numpy(), atol=1e-5)
    out = cli("search", "--text", "a cat", "--index", text_index / "index", "-k", "2", "--json")
    assert out.returncode == 0, out.stderr
    assert [h["path"] for h in json.loads(out.stdout)[0]["hits"]] == [h.path for h in results[0][:2]]
    by_image = dinokit.search(str(text_index / "photos" / "chelsea.png"), text_index / "index", k=1)
    assert by_image[0][0].path.endswith("chelsea.png") and by_image[0][0].score > 0.9999


def test_text_search_needs_a_dinotxt_index(text_index, tiny_model_dir, tmp_path):
    dinokit.embed(text_index / "photos", tmp_path / "plain.parquet", str(tiny_model_dir), num_workers=0, progress=False)
    dinokit.build_index(tmp_path / "plain.parquet", tmp_path / "plain.index")
    with pytest.raises(UsageError, match="does not read text"):
        dinokit.search(text="a cat", index=tmp_path / "plain.index")
    out = cli("search", "--text", "a cat", "--index", tmp_path / "plain.index")
    assert out.returncode == 2 and "does not read text" in out.stderr


def test_zero_shot_classify_follows_the_notebook(dinotxt, text_index, tmp_path):
    model = dinotxt[1]
    labels, templates = ["cat", "rocket", "coffee cup"], ["a photo of a {}.", "a drawing of the {}."]
    photo = text_index / "photos" / "chelsea.png"
    with torch.no_grad():
        per_template = torch.stack([model.encode_texts([t.format(c) for t in templates], normalize=True) for c in labels])
    weights = F.normalize(per_template.mean(dim=1), dim=-1)  # the notebook's ensembling, written out
    image = F.normalize(_image_embeddings(model, [photo]), dim=-1)
    probs = (100 * image @ weights.T).softmax(-1)[0]
    args = ["classify", photo, "--model", dinotxt[0], "--labels", ",".join(labels), "--json", "--top-k", "3"]
    out = cli(*args, *sum((["--template", t] for t in templates), []), env={"DINOKIT_CACHE": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    got = {p["label"]: p["probability"] for p in json.loads(out.stdout)[0]["predictions"]}
    assert got == pytest.approx({c: float(p) for c, p in zip(labels, probs)}, abs=2e-6)
    (tmp_path / "labels.txt").write_text("cat\nrocket\n\ncoffee cup\n")
    again = cli("classify", photo, "--model", dinotxt[0], "--labels-file", tmp_path / "labels.txt", "--json",
                *sum((["--template", t] for t in templates), []), env={"DINOKIT_CACHE": str(tmp_path)})
    assert json.loads(again.stdout) == json.loads(out.stdout)
    wrong = cli("classify", photo, "--model", "dinov2_vits14_lc", "--labels", "cat,dog")
    assert wrong.returncode == 2 and "does not read text" in wrong.stderr


def test_imagenet_names_and_templates_are_clips(dinotxt, tmp_path):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    from dinokit.weights.labels import zeroshot_class_names, zeroshot_templates
    from dinokit.zeroshot import text_classifier

    names, templates = zeroshot_class_names(), zeroshot_templates()
    assert len(names) == 1000 and len(templates) == 80
    assert names == list(IMAGENET_CLASSNAMES) and templates == [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    model = dinotxt[1]
    weights = text_classifier(model, names[:3], templates[:5], cache=tmp_path)
    with torch.no_grad():
        manual = torch.stack([F.normalize(model.encode_texts([t.format(c) for t in templates[:5]], normalize=True).mean(0), dim=0)
                              for c in names[:3]])
    assert torch.allclose(weights, manual, atol=1e-6)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    assert torch.equal(text_classifier(model, names[:3], templates[:5], cache=tmp_path), weights)  # from the cache


def test_eval_zeroshot_counts_top1_and_top5(dinotxt, text_index, tmp_path):
    root = tmp_path / "val"
    photos = sorted((text_index / "photos").iterdir())
    for i, photo in enumerate(photos):
        (root / f"class_{i % 3}").mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, root / f"class_{i % 3}" / photo.name)
    (root / "classes.txt").write_text("cat\nrocket\nflower\n")
    out = cli("eval", "zeroshot", "--val", root, "--model", dinotxt[0], "--template", "a photo of a {}.",
              "--num-workers", "0", "--json", env={"DINOKIT_CACHE": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    model = dinotxt[1]
    with torch.no_grad():
        weights = model.encode_texts(["a photo of a cat.", "a photo of a rocket.", "a photo of a flower."], normalize=True)
    paths = [p for c in range(3) for p in sorted((root / f"class_{c}").iterdir())]
    targets = torch.tensor([c for c in range(3) for _ in sorted((root / f"class_{c}").iterdir())])
    scores = F.normalize(_image_embeddings(model, paths), dim=-1) @ weights.T
    assert r["val_images"] == 11 and r["classes"] == 3 and r["class_names_from"].endswith("classes.txt")
    assert r["top1"] == pytest.approx((scores.argmax(1) == targets).float().mean().item())
    assert r["top5"] == 1.0  # 3 classes


def test_open_vocabulary_segmentation_follows_the_notebook(dinotxt, text_index, tmp_path):
    from dinokit.data import dense_transform
    from dinokit.dense.text_segment import label_embeddings, text_scores

    model, labels = dinotxt[1], ["cat", "sofa", "background"]
    image = load_image(text_index / "photos" / "chelsea.png")
    text = label_embeddings(model, labels)
    scores = text_scores(image, model, text, short_side=224)
    pixels = dense_transform(224)(image)[None]
    with torch.no_grad():
        _, patches = model.get_visual_class_and_patch_tokens(pixels)
        h, w = pixels.shape[2] // 14, pixels.shape[3] // 14
        x = patches.movedim(2, 1).unflatten(2, (h, w))  # the notebook's recipe, all channels at once
        x = F.normalize(F.interpolate(x, size=pixels.shape[2:], mode="bicubic", align_corners=False), dim=1)
        y = F.normalize(model.encode_texts(labels)[:, 384:], dim=1)
        notebook = torch.einsum("bdhw,cd->bchw", x, y)
        notebook = F.interpolate(notebook, size=(image.height, image.width), mode="bilinear", align_corners=False)[0]
    assert scores.shape == (3, image.height, image.width) and torch.allclose(scores, notebook, atol=1e-5)
    out = cli("segment", text_index / "photos" / "chelsea.png", "--model", dinotxt[0], "--labels", ",".join(labels),
              "-o", tmp_path / "seg")
    assert out.returncode == 0, out.stderr
    mask = np.asarray(Image.open(tmp_path / "seg" / "chelsea_mask.png"))
    assert mask.shape == (image.height, image.width) and mask.max() < 3
    assert {p.name for p in (tmp_path / "seg").iterdir()} >= {"chelsea_seg.png", "chelsea_heat_cat.png", "chelsea_heat_sofa.png"}
    assert cli("segment", text_index / "photos" / "chelsea.png", "-o", tmp_path / "x").returncode == 2


def test_export_writes_the_vision_model_and_the_text_tower(dinotxt, tmp_path):
    import onnxruntime as ort

    out = cli("export", dinotxt[0], "--format", "onnx", "-o", tmp_path / "dinotxt.onnx")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("max abs difference from eager PyTorch") == 2
    model = dinotxt[1]
    ids = model.tokenize(["a cat", "a red bicycle at night"])
    text = ort.InferenceSession(str(tmp_path / "dinotxt.text.onnx")).run(None, {"input_ids": ids.numpy()})[0]
    pixels = torch.randn(1, 3, 224, 224)
    vision = ort.InferenceSession(str(tmp_path / "dinotxt.vision.onnx")).run(None, {"pixel_values": pixels.numpy()})
    with torch.no_grad():
        assert np.abs(text - model.encode_text(ids).numpy()).max() <= 1e-4
        assert np.abs(vision[0] - model.encode_image(pixels).numpy()).max() <= 1e-4
        assert vision[1].shape == (1, 256, 384)


def test_the_service_searches_by_text(dinotxt, text_index):
    import httpx

    from dinokit.serve import SpawnedServer

    offline = dinokit.search(text=["a cat"], index=text_index / "index", k=3)[0]
    with SpawnedServer(["--index", text_index / "index"]) as server:
        assert httpx.get(server.url + "/v1/info").json()["reads_text"] is True
        answer = httpx.post(server.url + "/v1/search", json={"text": "a cat", "k": 3}, timeout=120).json()
        hits = answer["results"][0]["hits"]
        assert [h["path"] for h in hits] == [h.path for h in offline]
        assert np.allclose([h["score"] for h in hits], [h.score for h in offline], atol=1e-5)
        assert httpx.post(server.url + "/v1/search", json={"text": ""}).status_code == 400
