"""Depth heads: DPT against transformers' DPTForDepthEstimation on a Dinov2Backbone, the official head files'
layout, the linear head against its formula, and every input size."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import dinokit
from dinokit.dense import load_depth_model
from dinokit.heads.depth import LinearDepthHead
from dinokit.weights.dense import dinokit_dpt_head_to_official
from tests.helpers import cli, max_diff, perturb_


def hf_dpt(apply_layernorm=True):
    from transformers import Dinov2Config, DPTConfig, DPTForDepthEstimation

    backbone = Dinov2Config(hidden_size=64, num_hidden_layers=4, num_attention_heads=2, intermediate_size=256,
                            out_features=["stage1", "stage2", "stage3", "stage4"], reshape_hidden_states=False,
                            apply_layernorm=apply_layernorm, image_size=518, patch_size=14)
    # the settings of the facebook/dpt-dinov2-* repositories, at a small width
    config = DPTConfig(backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 64], reassemble_factors=[4, 2, 1, 0.5],
                       fusion_hidden_size=256, add_projection=True, readout_type="project", is_hybrid=False,
                       use_bias_in_fusion_residual=False, head_in_index=-1, hidden_act="gelu")
    torch.manual_seed(0)
    return perturb_(DPTForDepthEstimation(config), std=0.05)


@pytest.fixture(scope="module")
def hf_dpt_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dpt-dinov2-tiny-nyu")
    model = hf_dpt()
    model.save_pretrained(folder)
    return folder, model


@pytest.mark.parametrize("size", [(224, 224), (308, 448), (230, 300)])
def test_dpt_equals_transformers(hf_dpt_folder, size, report):
    folder, reference = hf_dpt_folder
    ours = load_depth_model(folder)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = reference(pixel_values=x).predicted_depth
        got = ours(x)[:, 0]
    assert got.shape == expected.shape and expected.shape[1] >= size[0] // 14 * 16  # 16 px per patch
    diff = max_diff(got, expected)
    report(f"DPT depth head vs transformers DPTForDepthEstimation+Dinov2Backbone {size}: {diff:.1e} "
           f"(outputs up to {expected.abs().max():.3f})")
    assert diff <= 1e-5 * max(1.0, expected.abs().max().item())  # float32 rounding of outputs up to ~100


def test_official_dpt_head_file_loads_and_adds_min_depth(tmp_path):
    reference = hf_dpt(apply_layernorm=False)  # the official depthers read the blocks with norm=False
    reference.save_pretrained(tmp_path / "hf")
    hf_loaded = load_depth_model(tmp_path / "hf")
    head_file = tmp_path / "dinov2_vits14_nyu_dpt_head.pth"
    torch.save(dinokit_dpt_head_to_official(hf_loaded.head.state_dict()), head_file)
    official_keys = torch.load(head_file, weights_only=True)["state_dict"]
    assert all(k.startswith("decode_head.") for k in official_keys)
    assert not any(k.startswith("decode_head.fusion_blocks.0.res_conv_unit1.") for k in official_keys)  # None there
    hf_loaded.backbone.save_pretrained(tmp_path / "backbone")
    official = load_depth_model(head_file, backbone=tmp_path / "backbone")
    x = torch.randn(1, 3, 224, 280)
    with torch.no_grad():
        expected = reference(pixel_values=x).predicted_depth
        got = official(x)[:, 0]
    # relu(conv) + min_depth, as the official head; float32 rounding of outputs up to ~20
    assert max_diff(got, expected + 0.001) <= 1e-5 * max(1.0, expected.abs().max().item())
    assert official.head.max_depth == 10.0  # NYU


def linear_depth_by_hand(features, weight, bias, min_depth, max_depth):
    """The official linear depth formula written out in NumPy (bilinear ×4 by torch, the rest by hand)."""
    maps = []
    for x, cls in features:
        both = torch.cat([x, cls[:, :, None, None].expand_as(x)], 1)
        maps.append(F.interpolate(both, scale_factor=4, mode="bilinear", align_corners=False).numpy())
    feats = np.concatenate(maps, 1).astype(np.float64)  # [B, C, H, W]
    logits = np.einsum("bchw,kc->bkhw", feats, weight[:, :, 0, 0].numpy()) + bias.numpy()[None, :, None, None]
    p = np.maximum(logits, 0) + 0.1
    p /= p.sum(1, keepdims=True)
    centres = min_depth + (max_depth - min_depth) * np.arange(256) / 255
    return (p * centres[None, :, None, None]).sum(1)


@pytest.mark.parametrize("layers", [1, 4])
def test_linear_depth_head_follows_its_formula(layers, tmp_path):
    backbone = perturb_(dinokit.Dinov2Model(dinokit.Dinov2Config(hidden_size=64, num_hidden_layers=4,
                                                                 num_attention_heads=2, image_size=224)))
    backbone.save_pretrained(tmp_path / "backbone")
    head = LinearDepthHead(backbone.config.hidden_size, layers=layers, max_depth=80.0)
    perturb_(head, std=0.05)
    name = f"dinov2_vits14_kitti_linear{'4' if layers == 4 else ''}_head.pth"
    torch.save({"state_dict": {"decode_head.conv_depth.weight": head.conv_depth.weight.detach(),
                               "decode_head.conv_depth.bias": head.conv_depth.bias.detach(),
                               "decode_head.bn.weight": torch.ones(head.conv_depth.in_channels)}}, tmp_path / name)
    model = load_depth_model(tmp_path / name, backbone=tmp_path / "backbone")
    assert model.blocks == ([3] if layers == 1 else [0, 1, 2, 3]) and model.head.layers == layers and model.head.max_depth == 80.0  # KITTI, from the file name
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        features = model.features(x)
        expected = linear_depth_by_hand(features, head.conv_depth.weight.detach(), head.conv_depth.bias.detach(), 0.001, 80.0)
        got = model(x)[:, 0].double().numpy()
    assert len(features) == layers and np.abs(got - expected).max() < 1e-4


@pytest.mark.parametrize("size", [(224, 224), (100, 333), (57, 29), (490, 210)])
def test_depth_shapes_and_ranges_for_any_size(hf_dpt_folder, size, tiny_model_dir, tmp_path):
    model = load_depth_model(hf_dpt_folder[0], max_depth=5.0)
    model.pad = True  # sizes that are not multiples of 14 are centre-padded
    x = torch.randn(1, 3, *size)
    depth = model.predict(x)
    assert depth.shape == (1, 1, *size)
    assert depth.min() >= 0 and depth.max() <= 5.0 + 1e-5  # clamped, then resized (bilinear) as officially


def test_official_names_load_from_the_torch_hub_cache(tmp_path, monkeypatch):
    """`dinov2_vits14_ld` resolves to the official backbone and linear4 NYU head URLs; here they are
    already in the cache, as after a first download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    backbone = perturb_(dinokit.Dinov2Model(dinokit.models.config.preset_config("s")))
    torch.save(backbone.state_dict(), cache / "dinov2_vits14_pretrain.pth")
    head = perturb_(LinearDepthHead(384, layers=4))
    torch.save({"state_dict": {f"decode_head.{k}": v for k, v in head.state_dict().items()}},
               cache / "dinov2_vits14_nyu_linear4_head.pth")
    model = load_depth_model("dinov2_vits14_ld")
    assert model.blocks == [2, 5, 8, 11] and not model.norm and model.head.max_depth == 10.0
    assert max_diff(model.head.conv_depth.weight, head.conv_depth.weight) == 0
    with pytest.raises(dinokit.WeightsNotAvailableError, match="dinov2_vits14_kitti_dpt_head.pth"):
        load_depth_model("dinov2_vits14_kitti_dpt")


def test_depth_command_writes_pictures_and_raw_depth(photos, hf_dpt_folder, tmp_path):
    photo = next(p for p in photos if p.name == "chelsea.png")
    run = cli("depth", photo, "-o", tmp_path / "out", "--model", hf_dpt_folder[0], "--short-side", "224")
    assert run.returncode == 0, run.stderr
    raw = np.asarray(Image.open(tmp_path / "out" / "chelsea_depth16.png"))
    coloured = Image.open(tmp_path / "out" / "chelsea_depth.png")
    assert raw.shape == (300, 451) and raw.dtype == np.uint16 and coloured.size == (451, 300)
    assert raw.max() > raw.min()  # the depth varies across the picture
    run = cli("depth", photo, "-o", tmp_path / "npy", "--model", hf_dpt_folder[0], "--raw", "npy")
    assert run.returncode == 0 and np.load(tmp_path / "npy" / "chelsea_depth.npy").shape == (300, 451)
    bad = cli("depth", photo, "-o", tmp_path / "x", "--model", tmp_path / "nowhere_head.pth")
    assert bad.returncode != 0 and "nowhere_head.pth" in bad.stderr
