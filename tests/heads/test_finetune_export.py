"""Fine-tuning end to end, classification from the command line, export per format, attention maps."""
import json

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import dinokit
from dinokit.runtime.export import export_model
from tests.helpers import HANG, cli, perturb_, save_tiny_model


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("backbone"), noise=0.1)


@pytest.mark.parametrize("mode", ["linear", "full"])
def test_finetune_reaches_better_than_chance_and_loads_everywhere(mode, colour_dataset, backbone_dir, tmp_path, report):
    train, val = colour_dataset
    out = tmp_path / "clf"
    result = cli("finetune", "--train", train, "--val", val, "--model", backbone_dir, "-o", out, "--mode", mode,
                 "--epochs", "4", "--batch-size", "8", "--lr", "3e-3" if mode == "linear" else "3e-4",
                 "--num-workers", "0", "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    report(f"finetune {mode}: validation accuracy {metrics['val_accuracy']:.3f} (chance 0.333), {metrics['seconds']}s")
    assert metrics["val_accuracy"] >= 0.8
    ours = dinokit.Dinov2ForImageClassification.from_pretrained(out)
    assert ours.config.id2label == {0: "blue", 1: "green", 2: "red"}
    theirs = transformers.AutoModelForImageClassification.from_pretrained(out).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (theirs(pixel_values=x).logits - ours(x).logits).abs().max() < 1e-4
    image = next((val / "red").glob("*.png"))
    shown = cli("classify", image, "--model", out, "--top-k", "2", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)[0]["predictions"][0]["label"] == "red"


def test_killed_finetune_resumes_to_the_uninterrupted_result(colour_dataset, backbone_dir, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    train, _ = colour_dataset
    args = ["finetune", "--train", train, "--model", backbone_dir, "--batch-size", "8", "--num-workers", "0",
            "--mode", "full", "--epochs", "3", "--json"]
    proc = subprocess.Popen([sys.executable, "-m", "dinokit", *map(str, args), "-o", str(tmp_path / "a")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + HANG  # waits for progress, however slow the host; stops if the run ended
    while not (tmp_path / "a" / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epochs_done = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= epochs_done < 3, "the run was not interrupted"
    resumed = cli(*args, "-o", tmp_path / "a")
    straight = cli(*args, "-o", tmp_path / "b")
    assert resumed.returncode == straight.returncode == 0, resumed.stderr
    a, b = json.loads(resumed.stdout)["history"], json.loads(straight.stdout)["history"]
    assert [h["epoch"] for h in a] == [1, 2, 3]
    assert max(abs(x["train_loss"] - y["train_loss"]) for x, y in zip(a, b)) < 1e-5


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "exported-program"])
@pytest.mark.parametrize("registers", [False, True], ids=["plain", "reg"])
def test_export_matches_eager(fmt, registers, tmp_path, report):
    torch.manual_seed(0)
    config = dinokit.preset_config("s", registers=registers, num_hidden_layers=4)
    model = perturb_(dinokit.Dinov2Model(config))
    r = export_model(model, fmt, tmp_path / f"model.{fmt}", image_size=224)
    report(f"export {fmt}{' reg' if registers else ''} (S width, 4 blocks, 224 px, batch 3): {r.max_abs_diff:.1e}")
    assert r.max_abs_diff <= 1e-4


def test_export_classifier_command(tmp_path):
    torch.manual_seed(0)
    cfg = dinokit.preset_config("s", num_hidden_layers=2).replace(id2label={0: "a", 1: "b"})
    perturb_(dinokit.Dinov2ForImageClassification(cfg)).save_pretrained(tmp_path / "clf")
    result = cli("export", tmp_path / "clf", "--format", "onnx", "-o", tmp_path / "clf.onnx")
    assert result.returncode == 0, result.stderr
    assert "max abs difference from eager PyTorch" in result.stdout
    import onnxruntime as ort

    outputs = [o.name for o in ort.InferenceSession(str(tmp_path / "clf.onnx")).get_outputs()]
    assert outputs == ["logits"]


def test_attention_maps_for_every_mode(tmp_path, photos):
    torch.manual_seed(0)
    for mode in ("official", "hf", "timm"):
        for registers in (False, True):
            model = perturb_(dinokit.Dinov2Model(dinokit.preset_config("s", registers=registers, num_hidden_layers=2,
                                                                       interpolate_mode=mode)))
            out = model(torch.randn(1, 3, 224, 308), output_attentions=True)
            assert all(a is not None and a.shape == (1, 6, 1 + 4 * registers + 16 * 22, 1 + 4 * registers + 16 * 22)
                       for a in out.attentions)
            torch.testing.assert_close(out.attentions[-1].sum(-1), torch.ones(1, 6, out.attentions[-1].shape[-1]))
    folder = tmp_path / "m"
    model.save_pretrained(folder)
    result = cli("viz", "attention", photos[0], "-o", tmp_path / "att.png", "--model", folder)
    assert result.returncode == 0, result.stderr
    picture = np.asarray(Image.open(tmp_path / "att.png"))
    assert picture.shape[0] == 2 * 224 + 4  # input + 6 heads, 5 per row
