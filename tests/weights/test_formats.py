"""Checkpoint layouts: detection, conversion both ways, wrappers, and the errors a user sees."""
import pickle

import pytest
import torch

import dinokit
from dinokit.weights import (
    CheckpointMismatchError,
    detect_format,
    load_converted,
    to_dinokit,
    to_hf,
    to_mmpretrain,
    to_timm,
    unwrap_checkpoint,
)
from tests.helpers import max_diff, perturb_


def tiny_model(**kw):
    cfg = dinokit.Dinov2Config(**{**dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=1, image_size=56), **kw})
    return perturb_(dinokit.Dinov2Model(cfg))


@pytest.mark.parametrize("kw", [{}, {"num_register_tokens": 4}, {"use_swiglu_ffn": True}], ids=["plain", "reg", "swiglu"])
@pytest.mark.parametrize("fmt,writer", [("hf", to_hf), ("timm", to_timm), ("mmpretrain", to_mmpretrain)])
def test_every_layout_round_trips(fmt, writer, kw):
    if fmt == "mmpretrain" and kw.get("num_register_tokens"):
        pytest.skip("mmpretrain publishes no register models")
    sd = tiny_model(**kw).state_dict()
    foreign = writer(sd)
    assert detect_format(unwrap_checkpoint(foreign)) == fmt
    back = to_dinokit(unwrap_checkpoint(foreign))
    expected = {k: v for k, v in sd.items() if fmt == "hf" or k != "mask_token"}
    assert back.keys() == expected.keys()
    for k in expected:
        assert torch.equal(back[k], expected[k]) or (fmt == "timm" and k in ("cls_token", "pos_embed")), k


def test_timm_folded_class_position_gives_identical_outputs(tmp_path):
    model = tiny_model(num_register_tokens=4)
    torch.save(to_timm(model.state_dict()), tmp_path / "timm.pth")
    loaded = dinokit.load_model(tmp_path / "timm.pth", config=model.config)
    x = torch.randn(1, 3, 56, 84)
    assert max_diff(loaded(x).last_hidden_state, model.eval()(x).last_hidden_state) == 0.0


def test_mmpretrain_file_with_meta(tmp_path):
    model = tiny_model()
    torch.save({"meta": {"epoch": 1}, "state_dict": to_mmpretrain(model.state_dict())}, tmp_path / "mm.pth")
    loaded = dinokit.load_model(tmp_path / "mm.pth", config=model.config)
    x = torch.randn(1, 3, 56, 56)
    assert max_diff(loaded(x).pooler_output, model(x).pooler_output) == 0.0


def test_training_checkpoint_block_chunks_and_teacher_prefix(tmp_path):
    model = tiny_model()
    sd = model.state_dict()
    chunked = {}
    for k, v in sd.items():  # 3 blocks in chunks of 2: blocks.0.{0,1}, blocks.1.{2}
        if k.startswith("blocks."):
            i = int(k.split(".")[1])
            k = f"blocks.{i // 2}.{i}." + k.split(".", 2)[2]
        chunked[k] = v
    ckpt = {"model": {**{f"teacher.backbone.{k}": v for k, v in chunked.items()},
                      **{f"student.backbone.{k}": torch.zeros_like(v) for k, v in chunked.items()},
                      "teacher.dino_head.mlp.0.weight": torch.zeros(8, 64)},
            "iteration": 10}
    torch.save(ckpt, tmp_path / "training.pth")
    loaded = dinokit.load_model(tmp_path / "training.pth", config=model.config)
    x = torch.randn(1, 3, 56, 56)
    assert max_diff(loaded(x).pooler_output, model(x).pooler_output) == 0.0


def test_config_is_inferred_from_an_official_file(tmp_path):
    model = dinokit.Dinov2Model(dinokit.preset_config("s", registers=True, num_hidden_layers=2))
    torch.save(model.state_dict(), tmp_path / "w.pth")
    cfg = dinokit.load_model(tmp_path / "w.pth").config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_register_tokens, cfg.image_size) == (
        384, 2, 6, 4, 518)


def test_mismatch_names_missing_unexpected_and_misshaped_keys(tmp_path):
    model = tiny_model()
    sd = model.state_dict()
    del sd["blocks.1.norm1.weight"]
    sd["blocks.0.extra.weight"] = torch.zeros(3)
    sd["norm.bias"] = torch.zeros(65)
    with pytest.raises(CheckpointMismatchError) as err:
        load_converted(dinokit.Dinov2Model(model.config), sd, source="w.pth")
    text = str(err.value)
    assert "blocks.1.norm1.weight" in text and "blocks.0.extra.weight" in text
    assert "norm.bias is [65]" in text and "needs [64]" in text and "w.pth" in text


class _Exploit:
    def __reduce__(self):
        return (print, ("executed",))


def test_pickled_code_is_never_executed(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"cls_token": _Exploit()}, f)
    with pytest.raises(ValueError, match="weights_only"):
        dinokit.load_model(path)
    assert "executed" not in capsys.readouterr().out


def test_unknown_name_and_layout():
    with pytest.raises(ValueError, match="known model name"):
        dinokit.load_model("dinov2_vitx14")
    with pytest.raises(ValueError, match="unrecognised checkpoint layout"):
        to_dinokit({"foo.weight": torch.zeros(1)})
