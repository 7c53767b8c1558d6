"""Each piece of the recipe against the official implementation (dinov2 0.0.1.dev2) on the same inputs."""
import numpy as np
import pytest
import torch

from dinokit.optim import cosine_schedule, param_groups
from dinokit.train.augment import MultiCropAugmentation
from dinokit.train.config import load_config
from dinokit.train.heads import DINOHead
from dinokit.train.losses import DINOLoss, KoLeoLoss, iBOTPatchLoss, sinkhorn_knopp
from dinokit.train.masking import block_mask, sample_mask
from dinokit.train.schedules import Schedules


def test_dino_loss_and_centering_equal_official():
    from dinov2.loss import DINOLoss as Official

    torch.manual_seed(0)
    ours, ref = DINOLoss(64), Official(64)
    for _ in range(3):  # the centre moves between steps
        teacher, students = torch.randn(2 * 8, 64), [torch.randn(8, 64) for _ in range(4)]
        t_ours = ours.centered_softmax(teacher, 0.05).view(2, 8, 64)
        t_ref = ref.softmax_center_teacher(teacher, teacher_temp=0.05).view(2, 8, 64)
        assert torch.allclose(t_ours, t_ref, atol=1e-7)
        assert torch.allclose(ours(students, list(t_ours)), ref(students, t_ref), atol=1e-6)
        ours.update_center(teacher)
        ref.update_center(teacher)
    ref.apply_center_update()
    assert torch.allclose(ours.center, ref.center, atol=1e-7)


def test_sinkhorn_knopp_equals_official():
    from dinov2.loss import DINOLoss as Official

    scores = torch.randn(32, 100) * 0.3  # prototype scores: cosine-like, as the weight-normed layer gives
    expected = Official(100).sinkhorn_knopp_teacher(scores, teacher_temp=0.07)
    got = sinkhorn_knopp(scores, 0.07)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got.sum(1), torch.ones(32), atol=1e-5)  # each row an assignment
    large = torch.randn(32, 100, generator=torch.Generator().manual_seed(0)) * 2  # exp(s / T) overflows officially
    assert torch.isnan(Official(100).sinkhorn_knopp_teacher(large, teacher_temp=0.07)).any()
    assert torch.isfinite(sinkhorn_knopp(large, 0.07)).all()


def test_ibot_loss_and_centering_equal_official():
    from dinov2.loss import iBOTPatchLoss as Official

    torch.manual_seed(1)
    masks = torch.rand(6, 16) < 0.4
    masks[0] = False  # an image without masked patches
    m = int(masks.sum())
    student, teacher = torch.randn(m, 32), torch.randn(m, 32)
    ours, ref = iBOTPatchLoss(32), Official(32)
    t_ours = ours.centered_softmax(teacher.unsqueeze(0), 0.04).squeeze(0)
    t_ref = ref.softmax_center_teacher(teacher.unsqueeze(0), teacher_temp=0.04).squeeze(0)
    assert torch.allclose(t_ours, t_ref)
    weights = (1 / masks.sum(-1).clamp(min=1.0)).unsqueeze(-1).expand_as(masks)[masks]
    expected = ref.forward_masked(student, t_ref, student_masks_flat=masks, n_masked_patches=m, masks_weight=weights)
    assert torch.allclose(ours(student, t_ours, masks), expected, atol=1e-6)
    ours.update_center(teacher.unsqueeze(0))
    ref.update_center(teacher.unsqueeze(0))
    ref.apply_center_update()
    assert torch.allclose(ours.center, ref.center, atol=1e-7)


def test_koleo_equals_official_and_survives_duplicates():
    from dinov2.loss import KoLeoLoss as Official

    x = torch.randn(16, 24)
    assert torch.allclose(KoLeoLoss()(x), Official()(x), atol=1e-6)
    duplicated = torch.cat([x[:8], x[:8]])  # the same images twice in one batch
    loss = KoLeoLoss()(duplicated.requires_grad_())
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(duplicated.grad).all()


def test_dino_head_equals_official():
    from dinov2.layers import DINOHead as Official

    torch.manual_seed(2)
    ref = Official(48, 100, nlayers=3, hidden_dim=64, bottleneck_dim=32)
    ours = DINOHead(48, 100, nlayers=3, hidden_dim=64, bottleneck_dim=32)
    sd = {k: v for k, v in ref.state_dict().items() if not k.startswith("last_layer")}
    sd["last_layer.parametrizations.weight.original0"] = ref.state_dict()["last_layer.weight_g"]
    sd["last_layer.parametrizations.weight.original1"] = ref.state_dict()["last_layer.weight_v"]
    ours.load_state_dict(sd)
    x = torch.randn(5, 48)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)


def test_schedules_equal_official():
    from dinov2.utils.utils import CosineScheduler

    for args in [(0.1, 1e-6, 100, 10, 0.0, 0), (0.992, 1.0, 57, 0, 0, 0), (0.5, 0.1, 40, 5, 0.01, 3)]:
        assert np.allclose(cosine_schedule(*args), CosineScheduler(*args).schedule)
    cfg = load_config(None, ["optim.epochs=4", "optim.warmup_epochs=1", "optim.lr=0.01", "teacher.warmup_teacher_temp_epochs=2"])
    s = Schedules.from_config(cfg, epoch_length=10)
    assert len(s.lr) == 40 and s.lr[0] == 0 and s.lr[10] == pytest.approx(0.01)
    assert (s.last_layer_lr[:10] == 0).all() and s.last_layer_lr[10] == s.lr[10]  # prototypes frozen in epoch 1
    assert s.teacher_temp[0] == 0.04 and s.teacher_temp[19] == pytest.approx(0.07) and s.teacher_temp[-1] == 0.07
    assert s.weight_decay[0] == pytest.approx(0.04) and s.weight_decay[-1] == pytest.approx(0.4, rel=1e-2)
    assert s.momentum[0] == 0.992 and s.momentum[-1] == pytest.approx(1.0, abs=1e-4)


def test_param_groups_equal_official():
    from dinov2.layers import DINOHead as Official
    from dinov2.utils.param_groups import get_params_groups_with_decay

    import dinokit

    backbone = dinokit.Dinov2Model(dinokit.Dinov2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                                        layerscale_value=1e-5, num_register_tokens=4))
    ours = {g["name"]: g for g in param_groups(backbone, 0.9, 0.2)}
    for ref in get_params_groups_with_decay(backbone, lr_decay_rate=0.9, patch_embed_lr_mult=0.2):
        g = ours[ref["name"]]
        assert (g["lr_multiplier"], g["wd_multiplier"], g["is_last_layer"]) == pytest.approx(
            (ref["lr_multiplier"], ref["wd_multiplier"], ref["is_last_layer"])), ref["name"]
    head = DINOHead(32, 10, hidden_dim=16, bottleneck_dim=8)
    renamed = {"last_layer.weight_g": "last_layer.parametrizations.weight.original0",
               "last_layer.weight_v": "last_layer.parametrizations.weight.original1"}
    ours = param_groups(head, 0.9, 0.2)
    refs = get_params_groups_with_decay(Official(32, 10, hidden_dim=16, bottleneck_dim=8), 0.9, 0.2)
    assert len(ours) == len(refs)
    for ref, g in zip(refs, ours):
        assert (g["name"], g["lr_multiplier"], g["wd_multiplier"], g["is_last_layer"]) == (
            renamed.get(ref["name"], ref["name"]), ref["lr_multiplier"], ref["wd_multiplier"], ref["is_last_layer"])


def test_block_masks_have_the_requested_size_and_blocks():
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(200):
        target = int(rng.integers(5, 120))
        mask = block_mask(16, 16, target, rng)
        counts.append((mask.sum(), target))
        assert mask.sum() <= target
    assert np.mean([c / t for c, t in counts]) > 0.9  # rectangles fill almost all of the request
    masks = [sample_mask((16, 16), np.random.default_rng(i)) for i in range(400)]
    masked = [m.mean() for m in masks if m.any()]
    assert 0.4 < len(masked) / 400 < 0.6  # half of the crops are masked
    assert 0.08 < min(masked) and max(masked) <= 0.5 and 0.2 < np.mean(masked) < 0.35  # ratios in [0.1, 0.5]


@pytest.mark.parametrize("official", [False, True])
def test_blur_probabilities(official, photos):
    """The paper: blur global crop 1 always, crop 2 with p 0.1, local crops with p 0.5; the official code
    inverts them (RandomApply(p = 1 - p))."""
    aug = MultiCropAugmentation(official_blur=official)
    expected = {"global1": 0.0 if official else 1.0, "global2": 0.9 if official else 0.1, "local": 0.5}
    for name, p in expected.items():
        blur = getattr(aug, name).transforms[1] if name != "global2" else aug.global2.transforms[1]
        assert blur.p == pytest.approx(p)
    from PIL import Image

    image = Image.open(photos[0]).convert("RGB")
    a, b = aug(image, seed=5), aug(image, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a["global_crops"] + a["local_crops"], b["global_crops"] + b["local_crops"]))
    assert a["global_crops"][0].shape == (3, 224, 224) and a["local_crops"][0].shape == (3, 98, 98)


def test_training_configs_refuse_unknown_keys_at_any_depth(tmp_path):
    from dinokit.train.config import PRESETS, load_config

    for preset in PRESETS:  # every shipped preset uses only known keys
        load_config(preset)
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: 0.001\n  warmup_epoch: 3\ncrops:\n  global_crops_size: 98\n")
    with pytest.raises(ValueError, match="optim.warmup_epoch"):
        load_config(bad)
    with pytest.raises(ValueError, match="train.batch_size"):
        load_config("smoke", ["train.batch_size=4"])
    assert load_config("smoke", ["student.embed_dim=48"])["student"]["embed_dim"] == 48  # a custom tiny student
