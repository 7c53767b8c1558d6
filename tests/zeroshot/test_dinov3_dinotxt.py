"""DINOv3's dino.txt: its one vision-head-and-text-encoder file on a DINOv3 ViT, by name from the torch hub cache
(the gated files named when missing) and through the jobs; the numbers are the model's own (the official code's
are compared in tests/weights/test_dinov3_parity.py when it is given)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from dinokit.data import OfficialEvalProcessor, load_image
from dinokit.pretrained import DinoTxtModel
from dinokit.weights.download import url_target
from dinokit.weights.names import DINOV3_DINOTXT_NAME, DINOV3_LICENCE_URL, dinotxt_urls
from tests.helpers import HANG, cli, sample_photos, save_dinotxt_folder


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    """The torch hub cache as the official hub entry point leaves it: the three files under their URL names."""
    root = tmp_path_factory.mktemp("torch")
    folder, _ = save_dinotxt_folder(root / "files", dinov3=True)
    checkpoints = root / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for kind, url in dinotxt_urls(DINOV3_DINOTXT_NAME).items():
        pattern = {"backbone": "dinov3_vits16_*.pth", "head_and_text": "*_vision_head_and_text_encoder*.pth",
                   "vocab": "bpe_simple_vocab_16e6.txt.gz"}[kind]
        shutil.copy(next(folder.glob(pattern)), checkpoints / url.rsplit("/", 1)[-1])
    shutil.copy(folder / "dinotxt_config.json", checkpoints)
    return root, DinoTxtModel.from_pretrained(folder)


def test_by_name_through_the_jobs(torch_home, tmp_path):
    root, model = torch_home
    assert url_target(dinotxt_urls(DINOV3_DINOTXT_NAME)["head_and_text"]).name == \
        "dinov3_vitl16_dinotxt_vision_head_and_text_encoder-a442d8f5.pth"
    env = {"TORCH_HOME": str(root), "HF_HUB_OFFLINE": "1", "DINOKIT_CACHE": str(tmp_path / "cache")}
    photo, labels = sample_photos()[1], ["cat", "rocket", "coffee cup"]
    out = cli("classify", photo, "--model", DINOV3_DINOTXT_NAME, "--labels", ",".join(labels), "--json",
              "--template", "a photo of a {}.", env=env)
    assert out.returncode == 0, out.stderr
    got = {p["label"]: p["probability"] for p in json.loads(out.stdout)[0]["predictions"]}
    with torch.no_grad():
        image = F.normalize(model.encode_image(OfficialEvalProcessor(224)(load_image(photo)).pixel_values), dim=-1)
        text = torch.stack([F.normalize(model.encode_texts([f"a photo of a {c}."], normalize=True).mean(0), dim=-1)
                            for c in labels])
    probs = (100 * image @ text.T).softmax(-1)[0]
    assert got == pytest.approx({c: float(p) for c, p in zip(labels, probs)}, abs=2e-6)
    folder = tmp_path / "photos"
    folder.mkdir()
    for f in sample_photos()[:3]:
        shutil.copy(f, folder / f.name)
    assert cli("embed", folder, "-o", tmp_path / "emb", "--model", DINOV3_DINOTXT_NAME, env=env).returncode == 0
    assert cli("index", tmp_path / "emb", "-o", tmp_path / "index", env=env).returncode == 0
    found = cli("search", "--index", tmp_path / "index", "--text", "a rocket", "-k", "3", "--json", env=env)
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)[0]["hits"]) == 3


def test_missing_files_name_the_licence(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", f"import dinokit; dinokit.DinoTxtModel.from_pretrained('{DINOV3_DINOTXT_NAME}')"],
        env={**os.environ, "TORCH_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
        timeout=HANG)
    assert result.returncode != 0
    assert "3 files" in result.stderr and DINOV3_LICENCE_URL in result.stderr and "signed URL" in result.stderr
