"""DINOv3 against the reference implementations, on random weights each library writes in its own layout:
transformers' `DINOv3ViTModel` / `DINOv3ConvNextModel` (every output), timm's eva `vit_*_patch16_dinov3[_qkvb]`
and `convnext_*`, and — when DINOKIT_DINOV3_REPO points at a facebookresearch/dinov3 checkout — the official
code itself. Float32, max abs difference ≤ 1e-4 at 224, 256, 512 and 320×480."""
import os
import sys

import pytest
import torch
import transformers

import dinokit
from dinokit.models.convnext import dinov3_convnext_config
from dinokit.models.dinov3 import dinov3_vit_config
from tests.helpers import max_diff, perturb_

TOL = 1e-4
SIZES = [(224, 224), (256, 256), (512, 512), (320, 480)]
# name: (dinokit size, overrides): S, S+ and B at full size; the larger ones at full width with 2 blocks
VITS = {"s": ("s", {}), "splus": ("splus", {}), "b": ("b", {}), "l2": ("l", {"num_hidden_layers": 2}),
        "lplus2": ("lplus", {"num_hidden_layers": 2}), "hplus2": ("hplus", {"num_hidden_layers": 2})}
SLOW_VITS = {"7b2": ("7b", {"num_hidden_layers": 2}), "l": ("l", {})}


def hf_vit(size, overrides):
    fields = dinov3_vit_config(size, **overrides).to_dict()
    fields = {k: v for k, v in fields.items() if k not in ("model_type", "stage_names", "id2label", "label2id")}
    config = transformers.DINOv3ViTConfig(**fields)
    return perturb_(transformers.DINOv3ViTModel._from_config(config, attn_implementation="eager"))


def _compare_hf(ref, ours, sizes, report, label):
    worst = {}
    with torch.no_grad():
        for size in sizes:
            x = torch.randn(2, 3, *size)
            a, b = ref(x, output_hidden_states=True), ours(x, output_hidden_states=True)
            assert len(a.hidden_states) == len(b.hidden_states)
            diffs = [max_diff(a.last_hidden_state, b.last_hidden_state), max_diff(a.pooler_output, b.pooler_output)]
            diffs += [max_diff(p, q) for p, q in zip(a.hidden_states, b.hidden_states)]
            worst[size] = max(diffs)
    report(f"{label}: " + ", ".join(f"{h}x{w} {d:.1e}" for (h, w), d in worst.items()))
    for size, diff in worst.items():
        assert diff <= TOL, f"{label} at {size}: max abs diff {diff}"


def _vit_case(name, tmp_path, report, sizes=SIZES):
    size, overrides = {**VITS, **SLOW_VITS}[name]
    ref = hf_vit(size, overrides)
    ref.save_pretrained(tmp_path)
    ours = dinokit.AutoModel.from_pretrained(tmp_path)
    assert type(ours).__name__ == "DINOv3ViTModel" and ours.config == dinov3_vit_config(size, **overrides).replace(
        architectures=["DINOv3ViTModel"], dtype="float32")
    _compare_hf(ref, ours, sizes, report, f"transformers DINOv3ViTModel {name}")


@pytest.mark.parametrize("name", list(VITS))
def test_transformers_vit(name, tmp_path, report):
    _vit_case(name, tmp_path, report)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SLOW_VITS))
def test_transformers_vit_large_ones(name, tmp_path, report):
    _vit_case(name, tmp_path, report, sizes=[(224, 224), (320, 480)])


def test_transformers_backbone_and_round_trip(tmp_path):
    """AutoBackbone's feature maps (transformers' DINOv3 backbones), and save_pretrained → transformers loads the
    same numbers."""
    ref = hf_vit("s", {"num_hidden_layers": 4})
    ref.save_pretrained(tmp_path / "ref")
    ours = dinokit.AutoModel.from_pretrained(tmp_path / "ref")
    ours.save_pretrained(tmp_path / "ours")
    again = transformers.DINOv3ViTModel.from_pretrained(tmp_path / "ours").eval()
    x = torch.randn(1, 3, 224, 320)
    with torch.no_grad():
        assert max_diff(again(x).last_hidden_state, ours(x).last_hidden_state) <= TOL
    for kw in (dict(out_indices=[2, 4]), dict(out_indices=[1, 3], apply_layernorm=False),
               dict(out_indices=[4], reshape_hidden_states=False)):
        reference = transformers.DINOv3ViTBackbone.from_pretrained(tmp_path / "ref", **kw).eval()
        backbone = dinokit.AutoBackbone.from_pretrained(tmp_path / "ref", **kw)
        assert type(backbone).__name__ == "DINOv3ViTBackbone"
        with torch.no_grad():
            theirs, mine = reference(x).feature_maps, backbone(x).feature_maps
        assert [m.shape for m in theirs] == [m.shape for m in mine]
        assert max(max_diff(a, b) for a, b in zip(theirs, mine)) <= TOL, kw
    convnext = perturb_(transformers.DINOv3ConvNextModel(transformers.DINOv3ConvNextConfig(depths=[1, 1, 1, 1])))
    convnext.save_pretrained(tmp_path / "convnext")
    reference = transformers.DINOv3ConvNextBackbone.from_pretrained(tmp_path / "convnext", out_indices=[1, 4]).eval()
    backbone = dinokit.AutoBackbone.from_pretrained(tmp_path / "convnext", out_indices=[1, 4])
    with torch.no_grad():
        assert max(max_diff(a, b) for a, b in zip(reference(x).feature_maps, backbone(x).feature_maps)) <= TOL
    assert backbone.channels == [96, 768]


TIMM_VITS = {"vit_small_patch16_dinov3_qkvb": {}, "vit_small_plus_patch16_dinov3": {},
             "vit_base_patch16_dinov3_qkvb": {}, "vit_large_patch16_dinov3_qkvb": {"depth": 2},
             "vit_huge_plus_patch16_dinov3": {"depth": 2}}


def _timm_case(name, kwargs, tmp_path, report, sizes=SIZES):
    import timm

    ref = perturb_(timm.create_model(name, pretrained=False, num_classes=0, **kwargs))
    torch.save(ref.state_dict(), tmp_path / f"{name}.pth")
    ours = dinokit.AutoModel.from_pretrained(tmp_path / f"{name}.pth")
    worst = {}
    with torch.no_grad():
        for size in sizes:
            x = torch.randn(2, 3, *size)
            tokens = ours(x, output_hidden_states=True)
            final, inter = ref.forward_intermediates(x, indices=[0, 1], output_fmt="NLC", norm=False,
                                                     return_prefix_tokens=True)
            diffs = [max_diff(final, tokens.last_hidden_state)]
            for i, (patches, prefix) in enumerate(inter):
                diffs.append(max_diff(torch.cat([prefix, patches], dim=1), tokens.hidden_states[i + 1]))
            mine_final, mine = ours.forward_intermediates(x, indices=[0, 1], norm=True)  # timm's vocabulary, NCHW
            theirs = ref.forward_intermediates(x, indices=[0, 1], norm=True, intermediates_only=True)
            diffs += [max_diff(mine_final, final)] + [max_diff(a, b) for a, b in zip(mine, theirs)]
            worst[size] = max(diffs)
    report(f"timm {name}: " + ", ".join(f"{h}x{w} {d:.1e}" for (h, w), d in worst.items()))
    for size, diff in worst.items():
        assert diff <= TOL, f"timm {name} at {size}: max abs diff {diff}"


@pytest.mark.parametrize("name", list(TIMM_VITS))
def test_timm_vit(name, tmp_path, report):
    _timm_case(name, TIMM_VITS[name], tmp_path, report)


@pytest.mark.slow
def test_timm_vit_7b(tmp_path, report):
    _timm_case("vit_7b_patch16_dinov3", {"depth": 2}, tmp_path, report, sizes=[(224, 224)])


CONVNEXTS = {"tiny": {}, "small1": {"depths": [1, 1, 1, 1]}, "base1": {"depths": [1, 1, 1, 1]},
             "large1": {"depths": [1, 1, 1, 1]}}


@pytest.mark.parametrize("name", list(CONVNEXTS))
def test_transformers_convnext(name, tmp_path, report):
    config = dinov3_convnext_config(name.rstrip("1"), **CONVNEXTS[name])
    fields = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "stage_names", "id2label", "label2id")}
    ref = perturb_(transformers.DINOv3ConvNextModel(transformers.DINOv3ConvNextConfig(**fields)))
    ref.save_pretrained(tmp_path)
    ours = dinokit.AutoModel.from_pretrained(tmp_path)
    assert type(ours).__name__ == "DINOv3ConvNextModel"
    _compare_hf(ref, ours, SIZES, report, f"transformers DINOv3ConvNextModel {name}")


@pytest.mark.parametrize("name", ["convnext_tiny", "convnext_base"])
def test_timm_convnext(name, tmp_path, report):
    import timm

    kwargs = {} if name == "convnext_tiny" else {"depths": (1, 1, 1, 1)}
    ref = perturb_(timm.create_model(name, pretrained=False, **kwargs))
    torch.save(ref.state_dict(), tmp_path / "w.pth")  # with timm's classifier: left out by the loader
    ours = dinokit.AutoModel.from_pretrained(tmp_path / "w.pth")
    worst = 0.0
    with torch.no_grad():
        for size in SIZES:
            x = torch.randn(2, 3, *size)
            out = ours(x, output_hidden_states=True)
            features = ref.forward_features(x)
            worst = max(worst, max_diff(features, out.hidden_states[-1]),
                        max_diff(ref.forward_head(features, pre_logits=True), out.pooler_output))
    report(f"timm {name}: {worst:.1e}")
    assert worst <= TOL


@pytest.mark.skipif(not os.environ.get("DINOKIT_DINOV3_REPO"),
                    reason="set DINOKIT_DINOV3_REPO to a facebookresearch/dinov3 checkout to compare with the official code")
@pytest.mark.parametrize("entry", ["dinov3_vits16plus", "dinov3_convnext_tiny"])
def test_official_code(entry, tmp_path, report):
    sys.path.insert(0, os.environ["DINOKIT_DINOV3_REPO"])
    from dinov3.hub import backbones

    ref = getattr(backbones, entry)(pretrained=False)
    ref.init_weights()
    perturb_(ref)
    torch.save(ref.state_dict(), tmp_path / f"{entry}_pretrain_lvd1689m-00000000.pth")
    ours = dinokit.AutoModel.from_pretrained(tmp_path / f"{entry}_pretrain_lvd1689m-00000000.pth")
    x = torch.randn(2, 3, 224, 320)
    with torch.no_grad():
        a, b = ref.forward_features(x), ours.forward_features(x)
        assert a["x_storage_tokens"].shape == b["x_storage_tokens"].shape  # a ConvNeXt has none
        diff = max(max_diff(a[k], b[k]) for k in ("x_norm_clstoken", "x_storage_tokens", "x_norm_patchtokens")
                   if a[k].numel())
        extra = {"return_extra_tokens": True} if "vit" in entry else {}
        for p, q in zip(ref.get_intermediate_layers(x, n=2, reshape=True, return_class_token=True, **extra),
                        ours.get_intermediate_layers(x, n=2, reshape=True, return_class_token=True, **extra)):
            assert len(p) == len(q)
            diff = max(diff, *(max_diff(a, b) for a, b in zip(p, q)))
    report(f"official {entry}: {diff:.1e}")
    assert diff <= TOL


@pytest.mark.skipif(not os.environ.get("DINOKIT_DINOV3_REPO"),
                    reason="set DINOKIT_DINOV3_REPO to a facebookresearch/dinov3 checkout to compare with the official code")
def test_official_dinotxt(tmp_path, report):
    """DINOv3's dino.txt as its hub entry point builds it (a ViT-S/16 backbone and a small text tower here), saved
    as its files are laid out: the backbone checkpoint, one vision-head-and-text-encoder file, the vocabulary."""
    import json
    import math
    import shutil

    sys.path.insert(0, os.environ["DINOKIT_DINOV3_REPO"])
    from dinov3.eval.text.dinotxt_model import DINOTxt, DINOTxtConfig
    from dinov3.eval.text.text_transformer import TextTransformer
    from dinov3.hub.backbones import dinov3_vits16

    from dinokit.pretrained import DinoTxtModel
    from tests.helpers import clip_vocab

    config = DINOTxtConfig(
        embed_dim=768, vision_model_freeze_backbone=True, vision_model_train_img_size=224,
        vision_model_use_class_token=True, vision_model_use_patch_tokens=True, vision_model_num_head_blocks=2,
        vision_model_head_blocks_drop_path=0.3, vision_model_use_linear_projection=False,
        vision_model_patch_tokens_pooler_type="mean", vision_model_patch_token_layer=1, text_model_freeze_backbone=False,
        text_model_num_head_blocks=0, text_model_head_blocks_is_causal=False, text_model_head_blocks_drop_prob=0.0,
        text_model_tokens_pooler_type="argmax", text_model_use_linear_projection=True,
        init_logit_scale=math.log(1 / 0.07), init_logit_bias=None, freeze_logit_scale=False)
    text = TextTransformer(context_length=77, vocab_size=49408, dim=128, num_heads=4, num_layers=2, ffn_ratio=4,
                           is_causal=True, ls_init_value=None, dropout_prob=0.0)
    ref = DINOTxt(model_config=config, vision_backbone=dinov3_vits16(pretrained=False), text_backbone=text)
    ref.init_weights()
    perturb_(ref)
    sd = ref.state_dict()
    backbone = {k.removeprefix("visual_model.backbone."): v for k, v in sd.items() if k.startswith("visual_model.backbone.")}
    torch.save(backbone, tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
    torch.save({k: v for k, v in sd.items() if not k.startswith("visual_model.backbone.")},
               tmp_path / "dinov3_vitl16_dinotxt_vision_head_and_text_encoder-a442d8f5.pth")
    shutil.copy(clip_vocab(), tmp_path / "bpe_simple_vocab_16e6.txt.gz")
    (tmp_path / "dinotxt_config.json").write_text(json.dumps({"text_heads": 4}))
    ours = DinoTxtModel.from_pretrained(tmp_path)
    x, ids = torch.randn(2, 3, 224, 224), ours.tokenize(["a photo of a cat", "a satellite image of a harbour"])
    with torch.no_grad():
        diff = max(max_diff(ref.encode_image(x), ours.encode_image(x)), max_diff(ref.encode_text(ids), ours.encode_text(ids)))
    report(f"official DINOv3 dino.txt (image and text embeddings): {diff:.1e}")
    assert diff <= TOL
