"""Classification and backbone heads against transformers' classes and the official linear-head code."""
import pytest
import torch
import transformers

import dinokit
from dinokit import Dinov2Backbone, Dinov2ForImageClassification
from dinokit.heads import imagenet_labels
from tests.helpers import max_diff, perturb_
from tests.weights.references import official_model

SMALL = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, image_size=518, patch_size=14)


def hf_classifier(registers, num_labels):
    if registers:
        cfg = transformers.Dinov2WithRegistersConfig(num_register_tokens=4, num_labels=num_labels, **SMALL)
        return perturb_(transformers.Dinov2WithRegistersForImageClassification(cfg))
    cfg = transformers.Dinov2Config(num_labels=num_labels, **SMALL)
    return perturb_(transformers.Dinov2ForImageClassification(cfg))


@pytest.mark.parametrize("registers", [False, True], ids=["plain", "reg"])
def test_classifier_logits_and_losses_equal_transformers(registers, tmp_path, report):
    ref = hf_classifier(registers, num_labels=5)
    ref.save_pretrained(tmp_path)
    ours = dinokit.load_model(tmp_path, interpolate_mode="hf")
    assert isinstance(ours, Dinov2ForImageClassification) and ours.num_labels == 5
    x = torch.randn(3, 3, 224, 308)
    int_labels, multi = torch.tensor([0, 4, 2]), (torch.rand(3, 5) > 0.5).float()
    with torch.no_grad():
        a, b = ours(x, labels=int_labels), ref(pixel_values=x, labels=int_labels)
        assert ours.config.problem_type == ref.config.problem_type == "single_label_classification"
        ref.config.problem_type = ours.config.problem_type = None  # both store the type inferred on the first call
        ma, mb = ours(x, labels=multi).loss, ref(pixel_values=x, labels=multi).loss
    diff = max_diff(a.logits, b.logits)
    report(f"classifier vs transformers{' reg' if registers else ''}: logits {diff:.1e}, "
           f"CE loss {abs(a.loss - b.loss).item():.1e}, BCE loss {abs(ma - mb).item():.1e}")
    assert diff <= 1e-4 and abs(a.loss - b.loss) <= 1e-5 and abs(ma - mb) <= 1e-5


def test_regression_loss_and_round_trip_into_transformers(tmp_path):
    ref = hf_classifier(False, num_labels=1)
    ref.save_pretrained(tmp_path / "src")
    ours = Dinov2ForImageClassification.from_pretrained(tmp_path / "src", interpolate_mode="hf")
    x, y = torch.randn(2, 3, 224, 224), torch.randn(2)
    with torch.no_grad():
        assert abs(ours(x, labels=y).loss - ref(pixel_values=x, labels=y).loss) <= 1e-5
    ours.save_pretrained(tmp_path / "out")
    again = transformers.AutoModelForImageClassification.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        assert max_diff(again(pixel_values=x).logits, ours(x).logits) <= 1e-4


@pytest.mark.parametrize("layers", [1, 4])
def test_official_linear_heads(layers, tmp_path, monkeypatch, report):
    """The 2023 official package's create_linear_input on get_intermediate_layers, through `_lc` names."""
    from dinov2.eval.linear import create_linear_input

    backbone = official_model("s")
    head = {"weight": torch.randn(1000, (1 + layers) * 384) * 0.02, "bias": torch.randn(1000) * 0.02}
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(backbone.state_dict(), cache / "dinov2_vits14_pretrain.pth")
    torch.save(head, cache / f"dinov2_vits14_linear{'' if layers == 1 else layers}_head.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ours = dinokit.dinov2_vits14_lc(layers=layers)
    assert ours.config.id2label[0] == "tench, Tinca tinca" and len(imagenet_labels()) == 1000
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        tokens = backbone.get_intermediate_layers(x, n=layers, return_class_token=True)
        expected = create_linear_input(tokens, layers, True) @ head["weight"].T + head["bias"]
        diff = max_diff(ours(x).logits, expected)
    report(f"official linear{'' if layers == 1 else layers} head (create_linear_input): {diff:.1e}")
    assert diff <= 1e-4
    torch.save(backbone.state_dict(), tmp_path / "b.pth")
    from_files = Dinov2ForImageClassification.from_pretrained(tmp_path / "b.pth", head=cache / (
        f"dinov2_vits14_linear{'' if layers == 1 else layers}_head.pth"))
    with torch.no_grad():
        assert max_diff(from_files(x).logits, expected) <= 1e-4


@pytest.mark.parametrize("registers", [False, True], ids=["plain", "reg"])
@pytest.mark.parametrize("layernorm", [True, False])
def test_backbone_maps_equal_transformers(registers, layernorm, tmp_path):
    kw = dict(out_indices=[2, 5, 8, 11], apply_layernorm=layernorm, reshape_hidden_states=True, **SMALL)
    if registers:
        ref = transformers.Dinov2WithRegistersBackbone(transformers.Dinov2WithRegistersConfig(num_register_tokens=4, **kw))
        # transformers' backbone has no save of its own base layout: write through its base model
    else:
        ref = transformers.Dinov2Backbone(transformers.Dinov2Config(**kw))
    perturb_(ref)
    ref.save_pretrained(tmp_path)
    ours = Dinov2Backbone.from_pretrained(tmp_path, interpolate_mode=None if registers else "hf")
    assert ours.out_features == ["stage2", "stage5", "stage8", "stage11"]
    x = torch.randn(2, 3, 224, 308)
    with torch.no_grad():
        a, b = ours(x).feature_maps, ref(pixel_values=x).feature_maps
    assert [m.shape for m in a] == [m.shape for m in b] == [torch.Size([2, 384, 16, 22])] * 4
    assert max(max_diff(m, n) for m, n in zip(a, b)) <= 1e-4


def test_forward_intermediates_matches_official_depth_head_reads(tmp_path):
    backbone = official_model("s")
    torch.save(backbone.state_dict(), tmp_path / "w.pth")
    ours = Dinov2Backbone.from_pretrained(tmp_path / "w.pth")
    x = torch.randn(1, 3, 224, 280)
    with torch.no_grad():
        expected = backbone.get_intermediate_layers(x, n=[2, 5, 8, 11], reshape=True, norm=False)
        final, maps = ours.forward_intermediates(x, indices=[2, 5, 8, 11])
        only = ours.forward_intermediates(x, indices=2, norm=True, output_fmt="NLC", intermediates_only=True)
    assert all(max_diff(a, b) <= 1e-4 for a, b in zip(maps, expected))
    assert final.shape == (1, 1 + 16 * 20, 384) and [o.shape for o in only] == [torch.Size([1, 320, 384])] * 2
