"""Loading by name through the real download code path, offline, from caches laid out as
huggingface_hub and torch.hub lay them out; plus save_pretrained → transformers round trips."""
import os
import subprocess
import sys

import pytest
import torch
import transformers

import dinokit
from dinokit.weights import to_mmpretrain
from tests.helpers import HANG, fake_hf_cache, max_diff
from tests.weights.references import hf_model, official_model


def run_offline(code, hf_cache, torch_home):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hf_cache), "TORCH_HOME": str(torch_home)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=HANG)


def test_load_by_every_kind_of_name_offline(tmp_path):
    hf_cache, torch_home = tmp_path / "hf", tmp_path / "torch"
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    hf_ref = hf_model("s", registers=False)
    fake_hf_cache(hf_cache, "facebook/dinov2-small", hf_ref)
    official = official_model("s")
    torch.save(official.state_dict(), checkpoints / "dinov2_vits14_pretrain.pth")
    mm_name = "vit-small-p14_dinov2-pre_3rdparty_20230426-5641ca5a.pth"
    torch.save({"state_dict": to_mmpretrain(dinokit.Dinov2Model(dinokit.preset_config("s")).state_dict()),
                "meta": {}}, checkpoints / mm_name)
    x = torch.randn(1, 3, 224, 224)
    torch.save(x, tmp_path / "x.pt")
    code = f"""
import torch, dinokit
x = torch.load(r"{tmp_path / 'x.pt'}")
with torch.no_grad():
    hf = dinokit.load_model("facebook/dinov2-small", interpolate_mode="hf")(x).pooler_output
    hub = dinokit.dinov2_vits14()(x).pooler_output
    mm = dinokit.get_model("vit-small-p14_dinov2-pre_3rdparty", pretrained=True).extract_feat(x)[0]
torch.save(dict(hf=hf, hub=hub, mm=mm), r"{tmp_path / 'out.pt'}")
"""
    result = run_offline(code, hf_cache, torch_home)
    assert result.returncode == 0, result.stderr
    out = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        assert max_diff(out["hf"], hf_ref(pixel_values=x).pooler_output) <= 1e-4
        assert max_diff(out["hub"], official.forward_features(x)["x_norm_clstoken"]) <= 1e-4
    assert out["mm"].shape == (1, 384)


def test_missing_weights_name_the_file_and_the_remedy(tmp_path):
    code = """
import dinokit
for name in ("facebook/dinov2-base", "dinov2_vitb14_reg"):
    try:
        dinokit.load_model(name)
    except dinokit.WeightsNotAvailableError as e:
        print("ERR", e)
"""
    result = run_offline(code, tmp_path / "hf", tmp_path / "torch")
    assert result.returncode == 0, result.stderr
    errors = [line for line in result.stdout.splitlines() if line.startswith("ERR")]
    assert len(errors) == 2
    assert "facebook/dinov2-base/config.json" in errors[0] and "dinokit download facebook/dinov2-base" in errors[0] and "huggingface-cli" not in errors[0]
    assert "dinov2_vitb14_reg4_pretrain.pth" in errors[1] and "HF_HUB_OFFLINE" in errors[1]
    assert "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth" in errors[1]


@pytest.mark.parametrize("registers", [False, True], ids=["plain", "reg"])
def test_save_pretrained_loads_in_transformers(registers, tmp_path):
    """official → dinokit → save_pretrained → transformers gives the same output."""
    if registers:
        source = hf_model("s", registers=True)  # the 2023 official package has no register models
        source.save_pretrained(tmp_path / "src")
        ours = dinokit.load_model(tmp_path / "src")
    else:
        source = official_model("s")
        torch.save(source.state_dict(), tmp_path / "src.pth")
        ours = dinokit.load_model(tmp_path / "src.pth", interpolate_mode="hf")
    ours.save_pretrained(tmp_path / "out")
    theirs = transformers.AutoModel.from_pretrained(tmp_path / "out").eval()
    assert type(theirs).__name__ == ("Dinov2WithRegistersModel" if registers else "Dinov2Model")
    with torch.no_grad():
        for size in [(224, 224), (518, 518)]:
            x = torch.randn(1, 3, *size)
            assert max_diff(ours(x).last_hidden_state, theirs(pixel_values=x).last_hidden_state) <= 1e-4
        if not registers:
            x = torch.randn(1, 3, 518, 518)
            assert max_diff(theirs(pixel_values=x).pooler_output, source.forward_features(x)["x_norm_clstoken"]) <= 1e-4
    # the dinokit interpolation mode travels in config.json
    assert dinokit.load_model(tmp_path / "out").interpolate_mode == ("official" if registers else "hf")
