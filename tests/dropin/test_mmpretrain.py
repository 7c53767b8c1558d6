"""mmpretrain's DINOv2 page, run with the real mmpretrain 1.2.0 and with `dinokit` (import swapped), on one
checkpoint that mmpretrain itself wrote, laid out in the torch hub cache where `get_model(pretrained=True)`
finds it."""
import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import HANG, perturb_

pytest.importorskip("mmpretrain", reason="mmpretrain 1.2.0 is installed by tests/install-references")

FILE = "vit-small-p14_dinov2-pre_3rdparty_20230426-5641ca5a.pth"
EXAMPLE = '''
import torch
from mmpretrain import get_model

model = get_model('vit-small-p14_dinov2-pre_3rdparty', pretrained=True)
inputs = torch.rand(1, 3, 224, 224)
out = model(inputs)
print(type(out))
# To extract features.
feats = model.extract_feat(inputs)
print(type(feats))
'''
CHECKS = '''
x = torch.load({x!r})
torch.save(dict(out=out, feats=feats, odd=model.extract_feat(x), tensor=model(x, mode="tensor"), training=model.training,
                parameters=sum(p.numel() for p in model.parameters())), {out!r})
'''


def run(library, torch_home, x_path, out_path):
    code = EXAMPLE.replace("from mmpretrain", f"from {library}")
    # the same torch.rand inputs on both sides (building the models draws different amounts of random numbers)
    code = code.replace("inputs = torch.rand", "torch.manual_seed(0); inputs = torch.rand")
    code += CHECKS.format(x=str(x_path), out=str(out_path))
    env = {**os.environ, "TORCH_HOME": str(torch_home), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=HANG)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out_path)


def test_mmpretrain_page_example_equals_mmpretrain(tmp_path, report):
    from mmpretrain import get_model

    reference = perturb_(get_model("vit-small-p14_dinov2-pre_3rdparty", pretrained=False))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save({"state_dict": reference.state_dict(), "meta": {}}, checkpoints / FILE)
    torch.save(torch.randn(2, 3, 230, 300), tmp_path / "x.pt")  # not multiples of 14: mmpretrain pads
    theirs = run("mmpretrain", tmp_path / "torch", tmp_path / "x.pt", tmp_path / "theirs.pt")
    ours = run("dinokit", tmp_path / "torch", tmp_path / "x.pt", tmp_path / "ours.pt")
    assert ours["training"] is theirs["training"] is False
    assert ours["parameters"] == theirs["parameters"]  # no mask token, as mmpretrain
    diffs = {}
    for key in ("out", "feats", "odd", "tensor"):
        assert isinstance(ours[key], tuple) and len(ours[key]) == len(theirs[key]) == 1
        diffs[key] = (ours[key][0] - theirs[key][0]).abs().max().item()
    report("mmpretrain 1.2.0 page example: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    assert max(diffs.values()) <= 1e-4


def test_modes_without_a_head_say_so():
    import dinokit

    model = dinokit.get_model("vit-small-p14_dinov2-pre_3rdparty")
    x = torch.randn(1, 3, 28, 28)
    with pytest.raises(ValueError, match="classification head"):
        model(x, mode="predict")
    with pytest.raises(RuntimeError, match='Invalid mode "bogus"'):
        model(x, mode="bogus")
