"""`dinokit train` as a user runs it: resume, torchrun (DDP, FSDP) against one process, a short pretraining
that lifts k-NN accuracy, distillation, and the NaN stop."""
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import dinokit
from dinokit.cli import main
from dinokit.errors import EXIT_OK, EXIT_USAGE
from tests.helpers import cli, save_tiny_model, torchrun


def stripes(root, per_class, seed, size=64):
    """Three classes that only shape tells apart: horizontal stripes, vertical stripes, checkerboards, each
    in random colours, periods and phases (a random-weight ViT mostly sees the colours)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for name in ("horizontal", "vertical", "checker"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            period, phase = rng.uniform(6, 14), rng.uniform(0, 14)
            h = ((yy + phase) // (period / 2)) % 2
            v = ((xx + phase) // (period / 2)) % 2
            pattern = {"horizontal": h, "vertical": v, "checker": (h + v) % 2}[name]
            a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            image = np.where(pattern[..., None] > 0, a, b) + rng.normal(0, 12, (size, size, 3))
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return stripes(tmp_path_factory.mktemp("ssl") / "images", 16, seed=0)


def losses(folder):
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


SMALL = ["train.batch_size_per_gpu=8", "crops.local_crops_number=2", "optim.epochs=2", "train.epoch_length=6"]


def test_resume_continues_exactly(images, tmp_path):
    args = ["train", "--config", "smoke", f"train.dataset_path={images}", *SMALL, "student.drop_path_rate=0.2",
            "train.checkpoint_every=3"]
    straight = cli(*args, "train.max_steps=6", "-o", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    first = cli(*args, "train.max_steps=3", "-o", tmp_path / "resumed")
    assert first.returncode == 0, first.stderr
    again = cli(*args, "train.max_steps=6", "-o", tmp_path / "resumed", "--resume")
    assert again.returncode == 0, again.stderr
    a, b = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert [r["step"] for r in b] == list(range(6))
    for x, y in zip(a, b):
        for key in ("loss", "dino_local_crops_loss", "dino_global_crops_loss", "koleo_loss", "ibot_loss", "lr"):
            assert abs(x[key] - y[key]) < 1e-6, (x["step"], key)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_equal_one(images, tmp_path, strategy, report):
    common = [f"train.dataset_path={images}", "crops.local_crops_number=2", "optim.epochs=1", "train.epoch_length=4",
              "student.drop_path_rate=0.0", "train.max_steps=4", f"distributed.strategy={strategy}",
              "student.layerscale=1.0"]  # with 1e-5 every CLS token starts alike: KoLeo's neighbours are ties
    one = cli("train", "--config", "smoke", *common, "train.batch_size_per_gpu=8", "dino.koleo_groups=2",
              "-o", tmp_path / "one", env={"OMP_NUM_THREADS": "1"})
    assert one.returncode == 0, one.stderr
    two = torchrun(2, "train", "--config", "smoke", *common, "train.batch_size_per_gpu=4", "-o", tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    worst = max(abs(x[k] - y[k]) for x, y in zip(a, b)
                for k in ("loss", "dino_local_crops_loss", "dino_global_crops_loss", "koleo_loss", "ibot_loss"))
    report(f"train: 2 CPU processes ({strategy}, gloo) vs 1 process, same global batch, 4 steps: max loss diff {worst:.1e}")
    assert len(a) == len(b) == 4 and worst < 1e-5


def test_fsdp_resumes_with_its_adam_moments(images, tmp_path):
    common = ["train", "--config", "smoke", f"train.dataset_path={images}", "crops.local_crops_number=2",
              "optim.epochs=2", "train.epoch_length=3", "student.drop_path_rate=0.0", "distributed.strategy=fsdp",
              "train.batch_size_per_gpu=4", "train.checkpoint_every=3"]
    straight = torchrun(2, *common, "train.max_steps=6", "-o", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    first = torchrun(2, *common, "train.max_steps=3", "-o", tmp_path / "resumed")
    assert first.returncode == 0, first.stderr[-3000:]
    again = torchrun(2, *common, "train.max_steps=6", "-o", tmp_path / "resumed", "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    a, b = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert [r["step"] for r in b] == list(range(6)) and all(r["lr"] > 0 for r in a[3:])
    for x, y in zip(a, b):
        for key in ("loss", "dino_global_crops_loss", "ibot_loss", "koleo_loss"):
            assert abs(x[key] - y[key]) < 1e-6, (x["step"], key)


def photo_crops(root, photos, per_photo, seed, size=64):
    """A class per shared photo: random crops (15–50% of the area) resized to 64 px."""
    rng = np.random.default_rng(seed)
    for p in photos:
        image = Image.open(p).convert("RGB")
        (root / p.stem).mkdir(parents=True, exist_ok=True)
        for i in range(per_photo):
            share = rng.uniform(0.15, 0.5)
            w, h = int(image.width * share ** 0.5), int(image.height * share ** 0.5)
            x, y = int(rng.integers(0, image.width - w)), int(rng.integers(0, image.height - h))
            image.crop((x, y, x + w, y + h)).resize((size, size), Image.BICUBIC).save(root / p.stem / f"{i}.png")
    return root


@pytest.mark.parametrize("epochs", [20, pytest.param(60, marks=pytest.mark.slow)])
def test_short_pretraining_lifts_knn_accuracy(photos, tmp_path, report, epochs):
    """The smoke recipe from random initialisation on 264 unlabelled crops of the 11 shared photos; k-NN on
    other crops tells which photo a crop comes from. Random features already do well here (colours tell
    the photos apart), so the bar is both the run's own start and a random ViT with LayerScale 1. Runs
    differ by an image or two of the 88 (thread timing), so the bars leave that much room."""
    pool = photo_crops(tmp_path / "pool", photos, 24, seed=1)
    knn_train, knn_val = photo_crops(tmp_path / "knn_train", photos, 8, 2), photo_crops(tmp_path / "knn_val", photos, 8, 3)
    run = cli("train", "--config", "smoke", f"train.dataset_path={pool}", f"optim.epochs={epochs}",
              f"evaluation.knn_train={knn_train}", f"evaluation.knn_val={knn_val}", f"evaluation.knn_every={4 * epochs}",
              "-o", tmp_path / "out", "--json")
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    from dinokit.eval.features import folder_features
    from dinokit.eval.knn import knn_eval

    def knn(model):
        tr = folder_features(model, "m", knn_train, image_size=56, num_workers=0, progress=False)
        va = folder_features(model, "m", knn_val, image_size=56, num_workers=0, progress=False)
        return knn_eval(tr.final_cls(), tr.labels, va.final_cls(), va.labels, len(photos), ks=(20,))[0]["top1"]

    config = dinokit.Dinov2Model.from_pretrained(tmp_path / "out" / "model").config
    torch.manual_seed(0)
    start = knn(dinokit.Dinov2Model(config).eval())  # the run's own starting point (LayerScale 1e-5)
    random_features = knn(dinokit.Dinov2Model(config.replace(layerscale_value=1.0)).eval())
    trained = knn(dinokit.Dinov2Model.from_pretrained(tmp_path / "out" / "model"))
    during = ", ".join(f"{r['top1']:.0%}" for r in result["knn"])
    report(f"train smoke recipe, {result['steps']} steps in {result['seconds']}s on crops of the 11 shared photos: "
           f"k-NN top-1 (k=20) at initialisation {start:.1%}, random ViT with LayerScale 1 {random_features:.1%}, "
           f"trained {trained:.1%} (during the run: {during})")
    assert trained > start + 0.5 and trained > random_features + (0.05 if epochs == 60 else 0.02)
    assert abs(trained - result["knn"][-1]["top1"]) < 1e-6  # the exported model is the one evaluated


def test_distillation_moves_the_student_toward_the_teacher(images, tmp_path):
    teacher = save_tiny_model(tmp_path / "teacher", noise=0.1)  # 64 wide, 2 blocks: "the large model"
    run = cli("train", "--config", "smoke", f"train.dataset_path={images}", *SMALL, "optim.epochs=5",
              "distillation.enabled=true", f"distillation.teacher={teacher}", "student.embed_dim=48",
              "student.num_heads=2", "student.depth=2", "-o", tmp_path / "out")
    assert run.returncode == 0, run.stderr[-3000:]
    log = losses(tmp_path / "out")
    dino = [r["dino_local_crops_loss"] + r["dino_global_crops_loss"] for r in log]
    assert np.mean(dino[-5:]) < np.mean(dino[:5]) - 0.05
    student = dinokit.Dinov2Model.from_pretrained(tmp_path / "out" / "model")  # the EMA of the distilled student
    assert student.config.hidden_size == 48


def test_nan_stops_with_an_explanation(images, tmp_path):
    run = cli("train", "--config", "smoke", f"train.dataset_path={images}", *SMALL, "optim.lr=1.0e+30",
              "optim.clip_grad=0", "-o", tmp_path / "out")
    assert run.returncode == 1
    assert "the loss became" in run.stderr and "step" in run.stderr


def test_continued_pretraining_starts_from_the_checkpoint(images, tiny_model_dir, tmp_path):
    """student.pretrained_weights: the checkpoint's architecture; step 0 has lr 0 (warm-up), so after one
    step the exported EMA teacher is still exactly the checkpoint."""
    run = cli("train", "--config", "smoke", f"train.dataset_path={images}", *SMALL, "train.max_steps=1",
              f"student.pretrained_weights={tiny_model_dir}", "-o", tmp_path / "out")
    assert run.returncode == 0, run.stderr[-3000:]
    start = dinokit.Dinov2Model.from_pretrained(tiny_model_dir).state_dict()
    after = dinokit.Dinov2Model.from_pretrained(tmp_path / "out" / "model").state_dict()
    assert start.keys() == after.keys()
    assert max((start[k] - after[k]).abs().max().item() for k in start) < 1e-6


def test_resume_refuses_changed_settings_by_name(tmp_path, capsys):
    images = stripes(tmp_path / "images", 4, seed=0)
    out = tmp_path / "run"
    args = ["train", "--config", "smoke", f"train.dataset_path={images}", *SMALL]
    assert main([*args, "train.max_steps=1", "-o", str(out)]) == EXIT_OK
    config = (out / "config.yaml").read_text()
    capsys.readouterr()
    for change, name in (("optim.base_lr=0.5", "optim.base_lr"), ("student.arch=vit_base", "student.arch")):
        assert main([*args, "train.max_steps=2", change, "-o", str(out), "--resume"]) == EXIT_USAGE, change
        err = capsys.readouterr().err
        assert name in err and "other settings" in err and "Traceback" not in err, err
        assert (out / "config.yaml").read_text() == config
    assert main([*args, "train.max_steps=2", "train.num_workers=0", "-o", str(out), "--resume"]) == EXIT_OK
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["max_steps"] == 2
    log = (out / "log.jsonl").read_text()
    capsys.readouterr()
    # a finished run resumed: said so, nothing changed (before: "last loss nan")
    assert main([*args, "train.max_steps=2", "-o", str(out), "--resume"]) == EXIT_USAGE
    assert "already finished" in capsys.readouterr().err
    # the same output without --resume: refused instead of starting over on top of the run
    assert main([*args, "train.max_steps=2", "-o", str(out)]) == EXIT_USAGE
    assert "--resume continues it" in capsys.readouterr().err
    assert (out / "log.jsonl").read_text() == log
