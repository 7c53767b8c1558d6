"""A fine-tuning output holds one model: re-running into it continues it only with the same settings."""
import json
import shutil

import torch

from dinokit.cli import main
from dinokit.errors import EXIT_OK, EXIT_USAGE
from tests.helpers import save_tiny_model


def test_finetune_refuses_other_settings_and_continues_the_same(colour_dataset, tmp_path, monkeypatch, capsys):
    train, _ = colour_dataset
    save_tiny_model(tmp_path / "backbone", noise=0.1)
    save_tiny_model(tmp_path / "other", noise=0.2)  # the same architecture, other weights
    out = tmp_path / "clf"
    common = ["finetune", "--train", str(train), "-o", str(out), "--batch-size", "8", "--num-workers", "0"]
    assert main([*common, "--model", str(tmp_path / "backbone"), "--epochs", "1"]) == EXIT_OK
    weights = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    capsys.readouterr()
    for other, name in ((["--model", str(tmp_path / "other")], "model"), (["--lr", "0.5"], "lr"),
                        (["--mode", "full"], "mode")):
        args = [*common, "--model", str(tmp_path / "backbone"), "--epochs", "1", *other]
        assert main(args) == EXIT_USAGE, other
        err = capsys.readouterr().err
        assert f"{name}:" in err and "other settings" in err and "Traceback" not in err, err
    # the same model written otherwise is the same setting: nothing new to train, said so
    monkeypatch.chdir(tmp_path)
    assert main([*common, "--model", "./backbone/", "--epochs", "1", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["epochs_run"] == 0
    assert main([*common, "--model", "backbone", "--epochs", "1"]) == EXIT_OK
    assert "nothing new to train" in capsys.readouterr().out
    kept = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(weights[k], kept[k]) for k in weights)
    # more epochs continue it; fewer are refused
    assert main([*common, "--model", "backbone", "--epochs", "2", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["epochs_run"] == 1
    assert main([*common, "--model", "backbone", "--epochs", "1"]) == EXIT_USAGE
    assert "fewer" in capsys.readouterr().err


def test_finetune_of_another_architecture_is_refused_without_a_traceback(colour_dataset, tmp_path, capsys):
    import dinokit

    train, _ = colour_dataset
    save_tiny_model(tmp_path / "backbone", noise=0.1)
    wider = dinokit.Dinov2Model(dinokit.Dinov2Config(hidden_size=96, num_hidden_layers=2, num_attention_heads=2))
    wider.save_pretrained(tmp_path / "wider")
    out = tmp_path / "clf"
    common = ["finetune", "--train", str(train), "-o", str(out), "--batch-size", "8", "--num-workers", "0", "--epochs", "1"]
    assert main([*common, "--model", str(tmp_path / "backbone")]) == EXIT_OK
    shutil.copytree(tmp_path / "wider", tmp_path / "backbone", dirs_exist_ok=True)  # the folder now holds another model
    capsys.readouterr()
    assert main([*common, "--model", str(tmp_path / "backbone")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "weights:" in err and "Traceback" not in err
