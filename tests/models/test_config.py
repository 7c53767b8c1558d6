"""Dinov2Config against transformers.Dinov2Config: same fields, same defaults, same config.json."""
import json

import pytest
import transformers

from dinokit import Dinov2Config, preset_config

FIELDS = [
    "hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio", "hidden_act", "hidden_dropout_prob",
    "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps", "image_size", "patch_size",
    "num_channels", "qkv_bias", "layerscale_value", "drop_path_rate", "use_swiglu_ffn", "use_mask_token",
    "out_features", "out_indices", "apply_layernorm", "reshape_hidden_states",
]


def test_defaults_equal_transformers():
    ours, theirs = Dinov2Config().to_dict(), transformers.Dinov2Config().to_dict()
    for name in FIELDS:
        assert ours[name] == theirs[name], name


def test_config_json_round_trip_through_transformers(tmp_path):
    cfg = preset_config("g", registers=True, interpolate_mode="hf")
    cfg.to_json_file(tmp_path / "config.json")
    hf = transformers.Dinov2WithRegistersConfig.from_pretrained(tmp_path)
    assert (hf.hidden_size, hf.num_hidden_layers, hf.num_attention_heads) == (1536, 40, 24)
    assert hf.use_swiglu_ffn and hf.num_register_tokens == 4 and hf.image_size == 518
    back = Dinov2Config.from_json_file(tmp_path / "config.json")
    assert back.to_dict() == cfg.to_dict()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "dinov2_with_registers"


def test_reads_a_transformers_config(tmp_path):
    transformers.Dinov2Config(hidden_size=64, num_hidden_layers=3, num_attention_heads=2, image_size=56).save_pretrained(tmp_path)
    cfg = Dinov2Config.from_json_file(tmp_path / "config.json")
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.image_size, cfg.num_register_tokens) == (64, 3, 56, 0)
    assert cfg.backbone_out_indices == [3]


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="interpolate_mode"):
        Dinov2Config(interpolate_mode="nearest")
    with pytest.raises(ValueError, match="num_attention_heads"):
        Dinov2Config(hidden_size=100, num_attention_heads=3)


@pytest.mark.parametrize("field, value, says", [
    ("patch_size", 0, "patch_size must be a whole number ≥ 1, got 0"),
    ("num_attention_heads", 0, "num_attention_heads must be a whole number ≥ 1"),
    ("hidden_size", "64", "hidden_size must be a whole number ≥ 1, got '64'"),
    ("num_register_tokens", -1, "num_register_tokens must be a whole number ≥ 0"),
    ("mlp_ratio", -4.0, "mlp_ratio must be > 0"),
    ("drop_path_rate", 1.5, "drop_path_rate must be in [0, 1)"),
    ("hidden_act", "swishy", "swishy"),
    ("out_indices", [5], "out_indices"),
])
def test_config_values_are_checked_by_name(field, value, says):
    """A ValueError naming the field and what it accepts, before any layer is built (before: a
    ZeroDivisionError, a layer of negative width, or an out_indices that wrapped round)."""
    with pytest.raises(ValueError) as error:
        Dinov2Config(**{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, field: value})
    assert says in str(error.value)
    if field == "hidden_act":
        assert "gelu" in str(error.value)  # the allowed values are listed


def test_model_inputs_are_checked_by_name():
    import torch

    from dinokit import Dinov2Model

    model = Dinov2Model(Dinov2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2)).eval()
    wrong = {
        "4 channels": (torch.zeros(1, 4, 28, 28), "must have 3 channels"),
        "3-D": (torch.zeros(3, 28, 28), "got 3-D shape"),
        "5-D": (torch.zeros(1, 1, 3, 28, 28), "got 5-D shape"),
        "uint8": (torch.zeros(1, 3, 28, 28, dtype=torch.uint8), "floating-point"),
        "batch 0": (torch.zeros(0, 3, 28, 28), "batch size 0"),
    }
    for pixels, says in wrong.values():
        with torch.inference_mode(), pytest.raises(ValueError, match=says):
            model(pixels)
    x = torch.zeros(1, 3, 28, 28)
    with pytest.raises(ValueError, match=r"blocks 0…1"):
        model.get_intermediate_layers(x, n=[5])  # before: block 5 % 2 = 1, silently
    with pytest.raises(ValueError, match="between 1 and the depth 2"):
        model.get_intermediate_layers(x, n=3)
    assert len(model.get_intermediate_layers(x, n=[0, -1])) == 2
