"""transformers' API surface, field by field and argument by argument, against the installed transformers
(and the documented 4.37.2 signatures): every Dinov2Config field is honoured, the documented forward
arguments come in the documented order, `from_pretrained` takes transformers' keywords and refuses unknown
ones, tracing works in every interpolation mode, and half-precision models take float32 pixels."""
import inspect

import pytest
import torch
import transformers

import dinokit
from tests.helpers import max_diff, perturb_

BASE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56, patch_size=14)
NOT_MODEL_FIELDS = {  # fields of transformers' config that no DINOv2 model reads, in transformers either
    "transformers_version", "_name_or_path", "chunk_size_feed_forward", "is_encoder_decoder",
}


def pair(tmp_path, kind="Model", **changes):
    """A transformers model with `changes` and random weights, and dinokit's load of its saved folder."""
    cfg = transformers.Dinov2Config(**{**BASE, **changes})
    ref = getattr(transformers, f"Dinov2{kind}")._from_config(cfg, attn_implementation="eager")
    perturb_(ref)
    ref.save_pretrained(tmp_path)
    ours = getattr(dinokit, f"Dinov2{kind}").from_pretrained(tmp_path, interpolate_mode="hf")
    return ref, ours


def same_outputs(tmp_path, x=None, **changes):
    ref, ours = pair(tmp_path, **changes)
    x = torch.randn(2, changes.get("num_channels", 3), 42, 56) if x is None else x
    with torch.no_grad():
        assert max_diff(ours(x).last_hidden_state, ref(pixel_values=x).last_hidden_state) <= 1e-4


def dropout_matches(tmp_path, field):
    ref, ours = pair(tmp_path, **{field: 0.3})
    ref.train(), ours.train()
    x = torch.randn(2, 3, 42, 56)
    torch.manual_seed(1)
    a = ours(x).last_hidden_state
    torch.manual_seed(1)
    b = ref(pixel_values=x).last_hidden_state
    assert max_diff(a, b) <= 1e-4  # the same tensors dropped: the same random draws in the same places
    assert max_diff(a, ours.eval()(x).last_hidden_state) > 1e-3


def drop_path_is_active(tmp_path):
    _, ours = pair(tmp_path, drop_path_rate=0.5)
    x = torch.randn(8, 3, 42, 56)
    with torch.no_grad():
        train = [ours.train()(x).last_hidden_state for _ in range(2)]
        assert max_diff(*train) > 1e-3 and max_diff(ours.eval()(x).last_hidden_state, ours(x).last_hidden_state) == 0


def initialisation(tmp_path, **changes):
    ours = dinokit.Dinov2Model(dinokit.Dinov2Config(**{**BASE, "hidden_size": 256, **changes}))
    if "layerscale_value" in changes:
        assert torch.all(ours.blocks[0].ls1.gamma == changes["layerscale_value"])
    else:
        std = ours.blocks[0].attn.qkv.weight.std().item()
        assert abs(std - changes["initializer_range"]) < 0.1 * changes["initializer_range"]


def mask_token_switch(tmp_path):
    ref, ours = pair(tmp_path, use_mask_token=False)
    assert ours.get_input_embeddings() is ours.patch_embed and ours.mask_token is None
    assert ours.num_parameters() == ref.num_parameters()
    with pytest.raises(ValueError, match="mask token"):
        ours(torch.randn(1, 3, 28, 28), bool_masked_pos=torch.zeros(1, 4, dtype=torch.bool))


def output_flags(tmp_path, field):
    ref, ours = pair(tmp_path, **{field: True})
    x = torch.randn(1, 3, 42, 56)
    name = "hidden_states" if field == "output_hidden_states" else "attentions"
    with torch.no_grad():
        a, b = getattr(ours(x), name), getattr(ref(pixel_values=x), name)
    assert a is not None and len(a) == len(b) and max(max_diff(u, v) for u, v in zip(a, b)) <= 1e-4


def return_dict_false(tmp_path):
    ref, ours = pair(tmp_path, return_dict=False)
    ref.config.return_dict = True  # transformers 5 itself fails with return_dict=False (its encoder's tuple)
    x = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        a = ours(x)
    assert isinstance(a, tuple) and max_diff(a[0], ref(pixel_values=x).last_hidden_state) <= 1e-4


def backbone_maps(tmp_path, **changes):
    ref, ours = pair(tmp_path, kind="Backbone", **changes)
    assert ours.out_features == ref.out_features and ours.config.out_indices == list(ref.config.out_indices)
    x = torch.randn(1, 3, 42, 56)
    with torch.no_grad():
        a, b = ours(x).feature_maps, ref(pixel_values=x).feature_maps
    assert len(a) == len(b) and max(max_diff(u, v) for u, v in zip(a, b)) <= 1e-4


def classifier_labels(tmp_path, **changes):
    ref, ours = pair(tmp_path, kind="ForImageClassification", **changes)
    assert ours.config.id2label == ref.config.id2label
    assert ours.config.label2id == (ref.config.label2id or {v: k for k, v in ref.config.id2label.items()})
    assert ours.num_labels == ref.num_labels == len(ref.config.id2label)
    x = torch.randn(2, 3, 28, 28)
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 0]]) if ref.num_labels == 3 else torch.tensor([0, 1])
    with torch.no_grad():
        a, b = ours(x, labels=labels), ref(pixel_values=x, labels=labels)
    assert abs(a.loss - b.loss) <= 1e-5 and ours.config.problem_type == ref.config.problem_type


def dtype_auto(tmp_path):
    ref = transformers.Dinov2Model(transformers.Dinov2Config(**BASE)).to(torch.float16)
    ref.save_pretrained(tmp_path)
    assert dinokit.AutoModel.from_pretrained(tmp_path, dtype="auto").dtype == torch.float16
    assert dinokit.AutoModel.from_pretrained(tmp_path).dtype == torch.float32  # dinokit's default


def architectures_written(tmp_path):
    dinokit.Dinov2Model(dinokit.Dinov2Config(**BASE)).save_pretrained(tmp_path)
    assert transformers.AutoConfig.from_pretrained(tmp_path).architectures == ["Dinov2Model"]


ACTIVATIONS = ["relu", "gelu_new", "quick_gelu", "silu", "gelu_pytorch_tanh", "mish", "gelu_10", "relu2"]
FIELD_CHECKS = {
    "hidden_size": lambda t: same_outputs(t, hidden_size=96, num_attention_heads=3),
    "num_hidden_layers": lambda t: same_outputs(t, num_hidden_layers=3),
    "num_attention_heads": lambda t: same_outputs(t, num_attention_heads=4),
    "mlp_ratio": lambda t: same_outputs(t, mlp_ratio=2),
    "hidden_act": lambda t: [same_outputs(t / act, hidden_act=act) for act in ACTIVATIONS],
    "hidden_dropout_prob": lambda t: dropout_matches(t, "hidden_dropout_prob"),
    "attention_probs_dropout_prob": lambda t: dropout_matches(t, "attention_probs_dropout_prob"),
    "initializer_range": lambda t: initialisation(t, initializer_range=0.05),
    "layer_norm_eps": lambda t: same_outputs(t, layer_norm_eps=0.5),
    "image_size": lambda t: same_outputs(t, image_size=84),
    "patch_size": lambda t: same_outputs(t, patch_size=7),
    "num_channels": lambda t: same_outputs(t, num_channels=1),
    "qkv_bias": lambda t: same_outputs(t, qkv_bias=False),
    "layerscale_value": lambda t: initialisation(t, layerscale_value=0.25),
    "drop_path_rate": drop_path_is_active,
    "use_swiglu_ffn": lambda t: same_outputs(t, use_swiglu_ffn=True),
    "use_mask_token": mask_token_switch,
    "out_features": lambda t: backbone_maps(t, out_features=["stem", "stage1"]),
    "out_indices": lambda t: backbone_maps(t, out_indices=[1, -1]),
    "apply_layernorm": lambda t: backbone_maps(t, apply_layernorm=False, out_indices=[1, 2]),
    "reshape_hidden_states": lambda t: backbone_maps(t, reshape_hidden_states=False),
    "stage_names": lambda t: backbone_maps(t, num_hidden_layers=3, out_features=["stage3"]),
    "output_hidden_states": lambda t: output_flags(t, "output_hidden_states"),
    "output_attentions": lambda t: output_flags(t, "output_attentions"),
    "return_dict": return_dict_false,
    "dtype": dtype_auto,
    "architectures": architectures_written,
    "model_type": lambda t: backbone_maps(t),
    "id2label": lambda t: classifier_labels(t, id2label={0: "cat", 1: "dog", 2: "fox"}),
    "label2id": lambda t: classifier_labels(t, num_labels=3),
    "problem_type": lambda t: classifier_labels(t, num_labels=3, problem_type="multi_label_classification"),
}


@pytest.mark.parametrize("registers", [False, True], ids=["plain", "registers"])
def test_defaults_equal_transformers_field_by_field(registers):
    theirs = transformers.Dinov2WithRegistersConfig() if registers else transformers.Dinov2Config()
    ours = dinokit.Dinov2WithRegistersConfig() if registers else dinokit.Dinov2Config()
    for field in theirs.to_dict():
        if field not in ("transformers_version", "_name_or_path"):
            assert getattr(ours, field) == getattr(theirs, field), (field, getattr(ours, field), getattr(theirs, field))


def test_every_transformers_field_has_a_check():
    """A field transformers adds and dinokit does not check (and so may ignore) fails here."""
    fields = set(transformers.Dinov2Config().to_dict()) | set(transformers.Dinov2WithRegistersConfig().to_dict())
    assert fields - NOT_MODEL_FIELDS - {"num_register_tokens"} == set(FIELD_CHECKS)


@pytest.mark.parametrize("field", sorted(FIELD_CHECKS))
def test_field_is_honoured(field, tmp_path):
    FIELD_CHECKS[field](tmp_path)


def test_config_methods_as_transformers(tmp_path):
    config = dinokit.Dinov2Config(hidden_size=96, num_attention_heads=3)
    config.save_pretrained(tmp_path)
    theirs = transformers.Dinov2Config.from_pretrained(tmp_path)
    assert theirs.hidden_size == 96 and dinokit.AutoConfig.from_pretrained(tmp_path) == config
    assert dinokit.Dinov2Config.from_pretrained(tmp_path, hidden_act="relu").hidden_act == "relu"
    assert '"hidden_size": 96' in config.to_json_string() and '"layer_norm_eps"' not in config.to_json_string()
    assert '"layer_norm_eps"' in config.to_json_string(use_diff=False)
    config.update({"hidden_dropout_prob": 0.1})
    assert config.hidden_dropout_prob == 0.1 and config.use_return_dict and config.to_dict()["hidden_dropout_prob"] == 0.1
    assert dinokit.Dinov2Config(num_hidden_layers=4).out_features == ["stage4"]
    assert dinokit.Dinov2Config().replace(num_hidden_layers=3).out_indices == [3]


def documented_signature(name):
    """The forward arguments of transformers 4.37.2 (the documented API), written out."""
    return {
        "Dinov2Model": ["pixel_values", "bool_masked_pos", "head_mask", "output_attentions", "output_hidden_states",
                        "return_dict"],
        "Dinov2ForImageClassification": ["pixel_values", "head_mask", "labels", "output_attentions",
                                         "output_hidden_states", "return_dict"],
        "Dinov2Backbone": ["pixel_values", "output_hidden_states", "output_attentions", "return_dict"],
    }[name]


@pytest.mark.parametrize("name", ["Dinov2Model", "Dinov2ForImageClassification", "Dinov2Backbone"])
def test_forward_arguments_in_the_documented_order(name):
    ours = list(inspect.signature(getattr(dinokit, name).forward).parameters)[1:]
    assert ours == documented_signature(name)


def test_positional_calls(tmp_path):
    ref, ours = pair(tmp_path, kind="ForImageClassification", num_labels=3)
    x, labels = torch.randn(2, 3, 28, 28), torch.tensor([0, 2])
    with torch.no_grad():
        loss = ours(x, None, labels).loss  # (pixel_values, head_mask, labels)
        assert abs(loss - ref(pixel_values=x, labels=labels).loss) <= 1e-5
        out = ours(x, torch.ones(2), labels, True, True, False)
    assert isinstance(out, tuple) and len(out) == 4  # loss, logits, hidden_states, attentions


def test_from_pretrained_keywords(tmp_path):
    ref = perturb_(transformers.Dinov2Model(transformers.Dinov2Config(**BASE)))
    ref.save_pretrained(tmp_path)
    model = dinokit.AutoModel.from_pretrained(tmp_path, torch_dtype=torch.float16, device_map="cpu",
                                              attn_implementation="sdpa", output_hidden_states=True,
                                              local_files_only=True, revision="main")
    x = torch.randn(1, 3, 28, 28)
    assert model.dtype == torch.float16 and model.device.type == "cpu" and model.config.output_hidden_states
    out = model(x)  # float32 pixels into a half model, as transformers casts them
    assert out.last_hidden_state.dtype == torch.float16 and len(out.hidden_states) == 3
    assert max_diff(out.last_hidden_state, ref(pixel_values=x).last_hidden_state) < 5e-2
    with pytest.raises(TypeError, match="devcie"):
        dinokit.Dinov2Model.from_pretrained(tmp_path, devcie="cuda")
    with pytest.raises(TypeError, match="layerss"):
        dinokit.load_model(tmp_path, layerss=1)
    for loader in (dinokit.AutoModel.from_pretrained, dinokit.AutoConfig.from_pretrained,
                   dinokit.AutoImageProcessor.from_pretrained, dinokit.Dinov2Backbone.from_pretrained):
        with pytest.raises(TypeError, match="devcie"):
            loader(tmp_path, devcie="cuda")
    # the options transformers users pass still load
    assert dinokit.AutoImageProcessor.from_pretrained(tmp_path, use_fast=True, revision="main", crop_size=196).crop_size == \
        {"height": 196, "width": 196}
    new = dinokit.AutoModelForImageClassification.from_pretrained(tmp_path, num_labels=7)  # a new head, warned
    assert new.num_labels == 7 and new.config.id2label[6] == "LABEL_6"
    config = dinokit.AutoConfig.from_pretrained(tmp_path)
    assert isinstance(dinokit.AutoModel.from_config(config), dinokit.Dinov2Model)
    assert dinokit.AutoModel.from_pretrained(tmp_path).main_input_name == "pixel_values"


@pytest.mark.parametrize("mode", ["official", "hf", "timm"])
@pytest.mark.parametrize("registers", [False, True], ids=["plain", "registers"])
def test_jit_trace_equals_eager_in_every_mode(mode, registers, report):
    config = dinokit.preset_config("s", registers, num_hidden_layers=2, interpolate_mode=mode)
    models = {"model": perturb_(dinokit.Dinov2Model(config))}
    if not registers:
        models["classifier"] = perturb_(dinokit.Dinov2ForImageClassification(config.replace(num_labels=5)))
    worst = 0.0
    for _kind, model in models.items():
        model.config.return_dict = False
        for h, w in [(224, 224), (518, 518), (308, 448)]:
            x, other = torch.randn(2, 3, h, w), torch.randn(3, 3, h, w)
            with torch.no_grad():
                traced = torch.jit.trace(model, [x])
                for batch in (x, other):
                    worst = max(worst, max_diff(traced(batch)[0], model(batch)[0]))
    report(f"torch.jit.trace vs eager, {mode}{' reg' if registers else ''} (224, 518, 308x448; batch 2 and 3): {worst:.1e}")
    assert worst <= 1e-4


def test_torch_export_in_official_mode_at_224():
    model = perturb_(dinokit.Dinov2Model(dinokit.preset_config("s", num_hidden_layers=2)))
    x = torch.randn(2, 3, 224, 224)
    program = torch.export.export(model, (x,), kwargs={"return_dict": False})
    with torch.no_grad():
        assert max_diff(program.module()(x, return_dict=False)[0], model(x).last_hidden_state) <= 1e-4


def test_save_pretrained_writes_the_mode_and_the_round_trip_holds_where_it_can(tmp_path):
    """official → dinokit → save_pretrained: config.json holds `interpolate_mode`, so dinokit reloads the
    folder with the same numbers at every size. transformers ignores the key and interpolates its own way:
    it gives the official model's output at the native size (518 px here, no interpolation) and dinokit's
    `interpolate_mode="hf"` output at other sizes (224 px)."""
    import json

    torch.manual_seed(0)
    config = dinokit.Dinov2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=518)
    official = perturb_(dinokit.Dinov2Model(config), std=0.05)
    official.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["interpolate_mode"] == "official"
    reloaded = dinokit.Dinov2Model.from_pretrained(tmp_path)
    theirs = transformers.AutoModel.from_pretrained(tmp_path).eval()
    hf_mode = dinokit.Dinov2Model.from_pretrained(tmp_path, interpolate_mode="hf")
    for side in (518, 224):
        x = torch.randn(1, 3, side, side)
        with torch.no_grad():
            ours = official(x).last_hidden_state
            assert max_diff(reloaded(x).last_hidden_state, ours) == 0, side
            reference = theirs(pixel_values=x).last_hidden_state
            if side == 518:
                assert max_diff(reference, ours) < 1e-4
            else:
                assert max_diff(reference, hf_mode(x).last_hidden_state) < 1e-4
                assert max_diff(reference, ours) > 1e-3  # the modes really differ here
