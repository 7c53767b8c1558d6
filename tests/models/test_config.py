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
