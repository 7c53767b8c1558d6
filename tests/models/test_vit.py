"""The model itself: sizes, outputs, masks, attention paths, tracing."""
from pathlib import Path

import pytest
import torch

from dinokit import Dinov2Config, Dinov2Model, preset_config
from tests.helpers import max_diff, perturb_

OFFICIAL_PARAMS = {"s": 22_056_576, "b": 86_580_480, "l": 304_368_640, "g": 1_136_480_768}


def tiny(**kw):
    return Dinov2Config(**{**dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56), **kw})


@pytest.mark.parametrize("size", ["s", "b", "l"])
def test_parameter_counts_equal_official(size):
    dim = preset_config(size).hidden_size
    assert Dinov2Model(preset_config(size)).num_parameters() == OFFICIAL_PARAMS[size]
    assert Dinov2Model(preset_config(size, registers=True)).num_parameters() == OFFICIAL_PARAMS[size] + 4 * dim


@pytest.mark.slow
def test_parameter_count_giant():
    model = Dinov2Model(preset_config("g", registers=True))
    assert model.num_parameters() == OFFICIAL_PARAMS["g"] + 4 * 1536
    assert model.blocks[0].mlp.w12.weight.shape == (8192, 1536) and model.blocks[0].mlp.w3.weight.shape == (1536, 4096)


def test_outputs_and_tuple_form():
    model = perturb_(Dinov2Model(tiny(num_register_tokens=4)))
    x = torch.randn(2, 3, 42, 70)
    out = model(x, output_hidden_states=True, output_attentions=True)
    assert out.last_hidden_state.shape == (2, 1 + 4 + 3 * 5, 64)
    assert torch.equal(out.pooler_output, out.last_hidden_state[:, 0])
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2
    assert out.attentions[0].shape == (2, 2, 20, 20)
    torch.testing.assert_close(model.norm(out.hidden_states[-1]), out.last_hidden_state)
    as_tuple = model(x, return_dict=False)
    assert len(as_tuple) == 2 and torch.equal(as_tuple[1], model(x).pooler_output)
    assert torch.equal(out["pooler_output"], out[1])


def test_explicit_attention_path_equals_sdpa():
    model = perturb_(Dinov2Model(tiny()))
    x = torch.randn(2, 3, 56, 56)
    fast = model(x).last_hidden_state
    explicit = model(x, output_attentions=True).last_hidden_state
    assert max_diff(fast, explicit) < 1e-5


def test_head_mask_masks_heads():
    model = perturb_(Dinov2Model(tiny()))
    x = torch.randn(1, 3, 56, 56)
    ones = model(x, head_mask=torch.ones(2)).last_hidden_state
    assert max_diff(ones, model(x).last_hidden_state) < 1e-5
    out = model(x, head_mask=torch.tensor([[1.0, 0.0], [1.0, 1.0]]), output_attentions=True)
    assert out.attentions[0][:, 1].abs().max() == 0 and out.attentions[0][:, 0].abs().max() > 0
    assert max_diff(out.last_hidden_state, ones) > 1e-3
    with pytest.raises(ValueError, match="head_mask"):
        model(x, head_mask=torch.ones(3))


def test_mask_token_replaces_masked_patches_before_position_embeddings():
    model = perturb_(Dinov2Model(tiny()))
    x = torch.randn(1, 3, 56, 56)
    masks = torch.zeros(1, 16, dtype=torch.bool)
    masks[0, 5] = True
    tokens = model.prepare_tokens(x, masks)
    pos = model.position_embeddings((56, 56))
    torch.testing.assert_close(tokens[0, 1 + 5], model.mask_token[0] + pos[0, 1 + 5])
    via_forward = model(x, bool_masked_pos=masks).last_hidden_state
    torch.testing.assert_close(via_forward, model.norm(model.forward_features(x, masks)["x_prenorm"]))
    assert max_diff(via_forward, model(x).last_hidden_state) > 1e-4


def test_jit_trace_matches_eager():
    model = perturb_(Dinov2Model(tiny(num_register_tokens=4)))
    x = torch.randn(2, 3, 70, 42)
    traced = torch.jit.trace(model, x)
    eager = model(x)
    traced_out = traced(x)
    assert max_diff(traced_out[0], eager.last_hidden_state) <= 1e-4
    assert max_diff(traced_out[1], eager.pooler_output) <= 1e-4


def test_sides_not_multiple_of_patch_are_floored():
    model = perturb_(Dinov2Model(tiny()))
    x = torch.randn(1, 3, 60, 71)  # 4x5 patches; the right/bottom remainder is dropped
    torch.testing.assert_close(model(x).last_hidden_state, model(x[:, :, :56, :70]).last_hidden_state)
    with pytest.raises(ValueError, match="smaller than one"):
        model(torch.randn(1, 3, 10, 56))


@pytest.mark.parametrize("registers", [0, 4])
def test_class_token_alone_equals_the_pooler_output(registers):
    model = perturb_(Dinov2Model(tiny(image_size=224, num_register_tokens=registers)))
    x = torch.randn(3, 3, 224, 224)
    with torch.inference_mode():
        pooled = model(x).pooler_output
        alone = model.forward_class_token(x)
    assert alone.shape == pooled.shape == (3, 64)
    assert max_diff(alone, pooled) < 1e-5
    with torch.no_grad():  # outside inference mode too (the plain, out-of-place layers)
        assert max_diff(model.forward_class_token(x), pooled) < 1e-5


def test_the_model_package_is_plain_pytorch():
    """No private torch APIs, globals, environment switches or hook-dependent paths in dinokit.models: the
    speed machinery lives in dinokit.runtime, which the jobs apply explicitly."""
    import re

    import dinokit.models

    banned = ("torch.ops", "._version", "_global_forward_hooks", "os.environ", "register_at_fork", "global ",
              "_forward_hooks", "import dinokit", "inference_mode", "open(", "os.path", "write_text", "read_text")
    for source in Path(dinokit.models.__file__).parent.glob("*.py"):
        text = source.read_text()
        assert not [b for b in banned if b in text], (source.name, [b for b in banned if b in text])
        # the only dinokit code it calls: the config's file methods, which `dinokit.weights` carries out, and
        # `dinokit.lazy` in the package's __init__ (its names load on first use; nothing of the model's)
        allowed = {"weights", "lazy"} if source.name == "__init__.py" else {"weights"}
        assert set(re.findall(r"from \.\.(\w+)", text)) <= allowed, source.name
    model = Dinov2Model(tiny())
    assert all(type(m).__module__.startswith(("torch.", "dinokit.models", "dinokit.pretrained")) for m in model.modules())
