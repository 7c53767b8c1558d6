"""dinokit against the reference implementations, on the same random weights written in each
library's own layout. Official (dinov2 0.0.1.dev2) in "official" mode; transformers' Dinov2Model and
Dinov2WithRegistersModel in "hf" mode; timm in "timm" mode. Register models: the official code, transformers
and timm all use the antialiased size-based interpolation, so every mode must match them."""
import pytest
import torch

import dinokit
from tests.helpers import max_diff
from tests.weights.references import ARCHS, SIZES, hf_model, official_model, timm_model

TOL = 1e-4


def _check(report, label, pairs):
    worst = {}
    for size, (ours, theirs) in pairs:
        worst[size] = max(worst.get(size, 0.0), max_diff(ours, theirs))
    report(f"{label}: " + ", ".join(f"{h}x{w} {d:.1e}" for (h, w), d in worst.items()))
    for size, diff in worst.items():
        assert diff <= TOL, f"{label} at {size}: max abs diff {diff}"


@pytest.mark.parametrize("name", list(ARCHS))
def test_official_plain(name, tmp_path, report):
    ref = official_model(name)
    torch.save(ref.state_dict(), tmp_path / "dinov2_pretrain.pth")
    ours = dinokit.load_model(tmp_path / "dinov2_pretrain.pth")
    assert ours.interpolate_mode == "official"
    pairs = []
    with torch.no_grad():
        for size in SIZES:
            x = torch.randn(1, 3, *size)
            a, b = ours.forward_features(x), ref.forward_features(x)
            pairs += [(size, (a["x_norm_clstoken"], b["x_norm_clstoken"])),
                      (size, (a["x_norm_patchtokens"], b["x_norm_patchtokens"]))]
    _check(report, f"official {name}", pairs)


def test_official_masks_and_intermediate_layers(tmp_path):
    ref = official_model("s")
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    ours = dinokit.load_model(tmp_path / "w.pth")
    x = torch.randn(2, 3, 224, 308)
    masks = torch.rand(2, 16 * 22) < 0.3
    with torch.no_grad():
        assert max_diff(ours.forward_features(x, masks)["x_prenorm"], ref.forward_features(x, masks)["x_prenorm"]) <= TOL
        for kw in (dict(n=4, reshape=True, return_class_token=True), dict(n=[2, 5, 8, 11], norm=False)):
            for a, b in zip(ours.get_intermediate_layers(x, **kw), ref.get_intermediate_layers(x, **kw)):
                for ta, tb in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
                    assert ta.shape == tb.shape and max_diff(ta, tb) <= TOL


@pytest.mark.parametrize("registers", [False, True], ids=["plain", "reg"])
@pytest.mark.parametrize("name", list(ARCHS))
def test_transformers(name, registers, tmp_path, report):
    ref = hf_model(name, registers)
    ref.save_pretrained(tmp_path)
    # registers: the default (official) mode must agree too, since all libraries interpolate alike
    ours = dinokit.load_model(tmp_path, interpolate_mode=None if registers else "hf")
    pairs = []
    with torch.no_grad():
        for size in SIZES:
            x = torch.randn(1, 3, *size)
            a = ours(x, output_hidden_states=True)
            b = ref(pixel_values=x, output_hidden_states=True)
            pairs += [(size, (a.last_hidden_state, b.last_hidden_state)), (size, (a.pooler_output, b.pooler_output))]
            pairs += [(size, (ha, hb)) for ha, hb in zip(a.hidden_states, b.hidden_states)]
    _check(report, f"transformers {name}{' reg' if registers else ''}", pairs)


def test_transformers_attentions_and_masks(tmp_path):
    ref = hf_model("s", registers=True)
    ref.save_pretrained(tmp_path)
    ours = dinokit.load_model(tmp_path)
    x = torch.randn(2, 3, 224, 224)
    masks = torch.rand(2, 256) < 0.4
    with torch.no_grad():
        a = ours(x, bool_masked_pos=masks, output_attentions=True)
        b = ref(pixel_values=x, bool_masked_pos=masks, output_attentions=True)
    assert max_diff(a.last_hidden_state, b.last_hidden_state) <= TOL
    assert len(a.attentions) == len(b.attentions) == 12
    for wa, wb in zip(a.attentions, b.attentions):
        assert max_diff(wa, wb) <= TOL


@pytest.mark.parametrize("registers", [False, True], ids=["plain", "reg"])
@pytest.mark.parametrize("name", list(ARCHS))
def test_timm(name, registers, tmp_path, report):
    ref = timm_model(name, registers)
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    ours = dinokit.load_model(tmp_path / "timm.pth", interpolate_mode="timm")
    pairs = []
    with torch.no_grad():
        for size in SIZES:
            x = torch.randn(1, 3, *size)
            pairs.append((size, (ours(x).last_hidden_state, ref.forward_features(x))))
    _check(report, f"timm {name}{' reg' if registers else ''}", pairs)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["l", "g"])
def test_official_full_size(name, tmp_path, report):
    """The full L and g once, one model pair in memory at a time (ViT-g is 4.5 GB per copy)."""
    ref = official_model(name)
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = ref.forward_features(x)["x_norm_patchtokens"]
    del ref
    ours = dinokit.load_model(tmp_path / "w.pth")
    with torch.no_grad():
        diff = max_diff(ours.forward_features(x)["x_norm_patchtokens"], expected)
    report(f"official {name} (full) 224x224: {diff:.2e}")
    assert diff <= TOL
