"""The DINOv3 modules themselves: sizes, RoPE, the masked key bias, outputs, fast paths, and clear errors."""
import pytest
import torch

import dinokit
from dinokit.models.convnext import ConvNeXt, dinov3_convnext_config
from dinokit.models.dinov3 import DINOv3VisionTransformer, DINOv3ViTConfig, dinov3_vit_config
from dinokit.models.rope import patch_coordinates, rope_sin_cos
from dinokit.runtime.cpu import fast_path
from tests.helpers import max_diff, perturb_


def tiny(**kw):
    return DINOv3ViTConfig(**{**dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                                     num_register_tokens=4, layerscale_value=1e-5), **kw})


@pytest.mark.parametrize("size, heads, hidden, gated", [("s", 6, 1536, False), ("splus", 6, 1536, True),
                                                         ("hplus", 20, 5120, True), ("7b", 32, 8192, True)])
def test_presets_match_transformers_and_timm_shapes(size, heads, hidden, gated):
    import timm

    config = dinov3_vit_config(size, num_hidden_layers=1)
    assert config.num_attention_heads == heads and config.intermediate_size == hidden and config.use_gated_mlp == gated
    name = {"s": "vit_small_patch16_dinov3", "splus": "vit_small_plus_patch16_dinov3",
            "hplus": "vit_huge_plus_patch16_dinov3", "7b": "vit_7b_patch16_dinov3"}[size]
    with torch.device("meta"):
        reference = timm.create_model(name, pretrained=False, num_classes=0, depth=1)
        ours = DINOv3VisionTransformer(config)
    fc = reference.blocks[0].mlp.fc1_g if gated else reference.blocks[0].mlp.fc1
    assert fc.out_features == hidden and reference.blocks[0].attn.num_heads == heads
    assert (ours.blocks[0].attn.qkv.bias is None) == (size == "7b")


def test_rope_equals_transformers():
    from transformers.models.dinov3_vit.modeling_dinov3_vit import DINOv3ViTRopePositionEmbedding

    config = transformers_config = __import__("transformers").DINOv3ViTConfig(hidden_size=384, num_attention_heads=6)
    reference = DINOv3ViTRopePositionEmbedding(transformers_config).eval()
    for h, w in ((14, 14), (20, 30)):
        cos, sin = reference(torch.zeros(1, 3, 16 * h, 16 * w))
        ours_sin, ours_cos = rope_sin_cos(patch_coordinates(h, w), config.hidden_size // 6, 100.0)
        assert max_diff(cos, ours_cos) < 1e-5 and max_diff(sin, ours_sin) < 1e-5


def test_the_key_bias_never_counts_and_never_learns():
    model = perturb_(DINOv3VisionTransformer(tiny()))
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        before = model(x).last_hidden_state
        for block in model.blocks:
            block.attn.qkv.bias[64:128] += 1.0  # a key bias set anyway (the official bias_mask hides it)
        assert max_diff(model(x).last_hidden_state, before) < 1e-5
    model.train()
    model(x).last_hidden_state.square().sum().backward()
    grad = model.blocks[0].attn.qkv.bias.grad
    assert grad[64:128].abs().max() == 0 and grad[:64].abs().max() > 0


def test_outputs_sizes_and_vocabularies():
    model = perturb_(DINOv3VisionTransformer(tiny()))
    x = torch.randn(2, 3, 48, 80)
    out = model(x, output_hidden_states=True, output_attentions=True)
    assert out.last_hidden_state.shape == (2, 1 + 4 + 3 * 5, 64) and len(out.hidden_states) == 3
    assert out.attentions[0].shape == (2, 2, 20, 20)
    assert max_diff(model.forward_class_token(x), out.pooler_output) < 1e-5
    features = model.forward_features(x)
    assert features["x_storage_tokens"].shape == (2, 4, 64) and features["x_norm_patchtokens"].shape == (2, 15, 64)
    with torch.inference_mode():  # the fast path gives the same numbers
        assert max_diff(fast_path(model)(x).last_hidden_state, out.last_hidden_state) < 1e-5
    odd = model(torch.randn(1, 3, 50, 83)).last_hidden_state  # floored to 48 × 80, as transformers
    assert odd.shape == (1, 20, 64)
    with pytest.raises(ValueError, match="smaller than one 16-px patch"):
        model(torch.randn(1, 3, 8, 64))
    with pytest.raises(ValueError, match="multiple of 4 × num_attention_heads"):
        tiny(hidden_size=66, num_attention_heads=3)


def test_coordinate_augmentation_only_in_training():
    model = DINOv3VisionTransformer(tiny(pos_embed_rescale=2.0))
    evaluated = model.eval().rope_for((64, 96))
    assert all(torch.equal(a, b) for a, b in zip(evaluated, model.rope_for((64, 96))))
    assert all(torch.equal(a, b) for a, b in zip(evaluated, rope_sin_cos(patch_coordinates(4, 6), 32, 100.0)))
    torch.manual_seed(0)
    trained = model.train().rope_for((64, 96))
    assert max_diff(trained[0], evaluated[0]) > 1e-2  # the coordinates were zoomed


def test_convnext_outputs_and_what_it_refuses():
    model = perturb_(ConvNeXt(dinov3_convnext_config("tiny", depths=[1, 1, 1, 1])))
    x = torch.randn(2, 3, 96, 128)
    out = model(x, output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 1 + 3 * 4, 768) and model.patch_size == 32
    assert [h.shape[1] for h in out.hidden_states] == [3, 96, 192, 384, 768]
    assert max_diff(model.forward_class_token(x), out.pooler_output) < 1e-5
    with pytest.raises(ValueError, match="no attention maps"):
        model(x, output_attentions=True)
    with pytest.raises(ValueError, match="smaller than the ConvNeXt's 32-px stride"):
        model(torch.randn(1, 3, 16, 64))
    assert dinokit.AutoModel.from_config(model.config).__class__.__name__ == "DINOv3ConvNextModel"
