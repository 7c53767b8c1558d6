"""DINOv3 by name, offline, from caches laid out as torch.hub and huggingface_hub lay them out; the gated
weights' messages, from a real 401 answer of a stand-in hub on loopback; the processor each checkpoint names."""
import http.server
import json
import os
import subprocess
import sys
import threading

import pytest
import torch
import transformers
from PIL import Image

import dinokit
from dinokit.weights.download import url_target
from dinokit.weights.names import DINOV3_LICENCE_URL, lookup
from tests.helpers import HANG, SNAPSHOT, fake_hf_cache, max_diff, perturb_, sample_photos


def run(code, tmp_path, **env):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "torch"),
           **env}
    env.pop("HF_TOKEN", None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=HANG)


def official_checkpoint(layers=2):
    """A ViT-S/16 in the official file layout: the masked key bias (non-zero underneath, as a mask would allow),
    the RoPE periods and the 7B's training-only local CLS norm."""
    model = perturb_(dinokit.dinov3_vits16(pretrained=False, num_hidden_layers=layers))
    sd = dict(model.state_dict())
    for i in range(layers):
        sd[f"blocks.{i}.attn.qkv.bias"] = torch.randn(3 * 384)
        sd[f"blocks.{i}.attn.qkv.bias_mask"] = torch.cat([torch.ones(384), torch.zeros(384), torch.ones(384)])
    sd["rope_embed.periods"] = 100 ** (2 * torch.arange(16) / 32.0)
    sd["local_cls_norm.weight"], sd["local_cls_norm.bias"] = torch.ones(384), torch.zeros(384)
    return sd


def test_official_name_from_the_torch_hub_cache_equals_transformers(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    sd = official_checkpoint()
    target = url_target(lookup("dinov3_vits16").url)
    assert target.name == "dinov3_vits16_pretrain_lvd1689m-08c60483.pth"
    target.parent.mkdir(parents=True)
    torch.save(sd, target)
    ours = dinokit.dinov3_vits16()
    assert type(ours).__name__ == "DINOv3ViTModel" and ours.config.num_register_tokens == 4
    assert ours.blocks[0].attn.qkv.bias[384:768].abs().max() == 0  # the key bias, masked as the official forward masks it
    ours.save_pretrained(tmp_path / "hf")
    ref = transformers.DINOv3ViTModel.from_pretrained(tmp_path / "hf").eval()
    x = torch.randn(1, 3, 256, 320)
    with torch.no_grad():
        assert max_diff(ref(x).last_hidden_state, ours(x).last_hidden_state) <= 1e-4
    # a signed URL (the e-mail's query string) names the same cached file: nothing is downloaded
    signed = lookup("dinov3_vits16").url + "?Policy=abc&Signature=def&Key-Pair-Id=ghi"
    with torch.no_grad():
        assert torch.equal(dinokit.load_model(signed)(x).pooler_output, ours(x).pooler_output)
    with pytest.raises(ValueError, match="DINOv3ViTModel or dinokit.AutoModel"):
        dinokit.Dinov2Model.from_pretrained("dinov3_vits16")
    with pytest.raises(ValueError, match="has none to interpolate"):
        dinokit.AutoModel.from_pretrained("dinov3_vits16", interpolate_mode="hf")


def test_a_missing_official_file_names_the_licence_and_the_alternatives(tmp_path):
    result = run("""
import dinokit
try:
    dinokit.dinov3_vitl16(weights="SAT493M")
except dinokit.WeightsNotAvailableError as e:
    print("ERR", e)
""", tmp_path)
    assert result.returncode == 0, result.stderr
    message = result.stdout
    assert "dinov3_vitl16_pretrain_sat493m-eadcf0ff.pth" in message and DINOV3_LICENCE_URL in message
    assert "signed URL" in message and "HF_TOKEN" in message and str(tmp_path / "torch") in message


def test_hub_repo_offline_with_its_processor(tmp_path):
    config = transformers.DINOv3ViTConfig(num_hidden_layers=2, num_register_tokens=4, layerscale_value=1e-5)
    ref = perturb_(transformers.DINOv3ViTModel(config))
    repo = "facebook/dinov3-vits16-pretrain-lvd1689m"
    fake_hf_cache(tmp_path / "hf", repo, ref)
    snapshot = tmp_path / "hf" / f"models--{repo.replace('/', '--')}" / "snapshots" / SNAPSHOT
    transformers.DINOv3ViTImageProcessorFast().save_pretrained(snapshot)
    photo = sample_photos()[0]
    result = run(f"""
import torch, dinokit
model = dinokit.AutoModel.from_pretrained("{repo}")
processor = dinokit.AutoImageProcessor.from_pretrained("{repo}")
print(type(model).__name__, type(processor).__name__)
with torch.no_grad():
    torch.save(model(processor(dinokit.load_image(r"{photo}")).pixel_values).pooler_output, r"{tmp_path / 'out.pt'}")
""", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["DINOv3ViTModel", "DINOv3ImageProcessor"]
    pixels = transformers.DINOv3ViTImageProcessorFast()(Image.open(photo).convert("RGB"), return_tensors="pt").pixel_values
    with torch.no_grad():
        assert max_diff(torch.load(tmp_path / "out.pt"), ref(pixels).pooler_output) <= 1e-4


def test_timm_repo_offline(tmp_path):
    import timm
    from safetensors.torch import save_file

    ref = perturb_(timm.create_model("vit_small_patch16_dinov3", pretrained=False, num_classes=0, depth=2))
    repo = "timm/vit_small_patch16_dinov3.lvd1689m"
    snapshot = tmp_path / "hf" / f"models--{repo.replace('/', '--')}" / "snapshots" / SNAPSHOT
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text(SNAPSHOT)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(snapshot / "model.safetensors"))
    (snapshot / "config.json").write_text(json.dumps({"architecture": "vit_small_patch16_dinov3", "num_features": 384,
                                                      "pretrained_cfg": ref.pretrained_cfg}))
    x = torch.randn(1, 3, 224, 224)
    torch.save(x, tmp_path / "x.pt")
    result = run(f"""
import torch, dinokit
with torch.no_grad():
    torch.save(dinokit.load_model("{repo}")(torch.load(r"{tmp_path / 'x.pt'}")).last_hidden_state, r"{tmp_path / 'out.pt'}")
""", tmp_path)
    assert result.returncode == 0, result.stderr
    with torch.no_grad():
        assert max_diff(torch.load(tmp_path / "out.pt"), ref.forward_features(x)) <= 1e-4


class _GatedHub(http.server.BaseHTTPRequestHandler):
    """What huggingface.co answers for a gated repository without an accepted licence."""

    def _refuse(self):
        self.send_response(401)
        self.send_header("X-Error-Code", "GatedRepo")
        self.send_header("X-Error-Message", "Access to model facebook/dinov3-vitb16-pretrain-lvd1689m is restricted. "
                                            "You must have access to it and be authenticated to access it. Please log in.")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _refuse

    def log_message(self, *args):
        pass


@pytest.fixture
def gated_hub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GatedHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_gated_repo_names_the_licence_the_token_and_the_local_file(tmp_path, gated_hub):
    photos = sample_photos()[0].parent
    result = subprocess.run(
        [sys.executable, "-m", "dinokit", "embed", str(photos), "-o", str(tmp_path / "out"),
         "--model", "facebook/dinov3-vitb16-pretrain-lvd1689m"],
        env={**{k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_HUB_OFFLINE")},
             "HF_ENDPOINT": gated_hub, "HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_ETAG_TIMEOUT": "5"},
        capture_output=True, text=True, timeout=HANG)
    assert result.returncode != 0
    message = result.stderr
    assert "gated" in message and "https://huggingface.co/facebook/dinov3-vitb16-pretrain-lvd1689m" in message
    assert "HF_TOKEN" in message and "hf auth login" in message and DINOV3_LICENCE_URL in message
    assert ".pth file" in message and "Traceback" not in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.parquet"))


def test_satellite_weights_get_their_own_normalisation():
    sat, lvd = dinokit.AutoImageProcessor.from_pretrained("dinov3_vitl16_sat493m"), dinokit.AutoImageProcessor.from_pretrained(
        "dinov3_vitl16")
    assert type(sat).__name__ == type(lvd).__name__ == "DINOv3ImageProcessor"
    assert sat.image_mean == [0.430, 0.411, 0.296] and sat.image_std == [0.213, 0.156, 0.143]
    assert lvd.image_mean == [0.485, 0.456, 0.406] and lvd.size == {"height": 224, "width": 224} and not lvd.do_center_crop
