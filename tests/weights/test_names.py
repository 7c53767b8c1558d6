"""Names as a newcomer types them: every name any command accepts is listed with the files it needs, a
name that needs several files reports every missing one at once, and a typo or a missing local path is
said at once instead of becoming a Hugging Face download."""
import re
from pathlib import Path

import pytest
import torch

import dinokit
from dinokit.cli import main
from dinokit.dense import load_depth_model, load_segmentation_model
from dinokit.weights.download import url_target
from dinokit.weights.names import DINOTXT_NAMES, MODEL_SOURCES, catalogue, parse_dense_name

README = Path(__file__).parents[2] / "README.md"


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_models_lists_every_name_the_readme_and_the_loaders_use(capsys):
    names = {e.name for e in catalogue()}
    assert set(MODEL_SOURCES) <= names
    for e in catalogue():  # each listed name is one a loader resolves
        assert (e.name in MODEL_SOURCES or parse_dense_name(e.name) or e.name.startswith("facebook/dpt-dinov2-")
                or e.name in DINOTXT_NAMES), e.name
        assert e.files and all(f.startswith(("https://", "hf://")) for f in e.files)
    used = set(re.findall(r"(?<![\w/.-])(dinov2_vit[sblg]14(?:_\w+)?|facebook/[\w-]+)(?![\w.])", README.read_text()))
    unlisted = {n for n in used if n not in names and not n.endswith(("_pretrain", "_head", "-"))}  # "-": {a,b} patterns
    assert not unlisted, f"the README uses names `dinokit models` does not list: {sorted(unlisted)}"
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for title in ("backbones", "classifiers", "depth", "segmentation", "dino.txt"):
        assert title in out
    line = next(line for line in out.splitlines() if line.split()[:1] == ["dinov2_vits14_lc"])
    assert "dinov2_vits14_pretrain.pth + dinov2_vits14_linear4_head.pth" in line
    assert main(["models", "--kind", "depth", "--json"]) == 0
    assert "facebook/dpt-dinov2-small-kitti" in capsys.readouterr().out


@pytest.mark.parametrize("load, name, files", [
    (dinokit.load_model, "dinov2_vits14_lc", ["dinov2_vits14_pretrain.pth", "dinov2_vits14_linear4_head.pth"]),
    (load_depth_model, "dinov2_vits14_nyu_dpt", ["dinov2_vits14_pretrain.pth", "dinov2_vits14_nyu_dpt_head.pth"]),
    (load_segmentation_model, "dinov2_vits14_ade20k_linear", ["dinov2_vits14_pretrain.pth",
                                                              "dinov2_vits14_ade20k_linear_head.pth"]),
])
def test_every_missing_file_is_reported_at_once(load, name, files, empty_caches):
    with pytest.raises(dinokit.WeightsNotAvailableError) as error:
        load(name)
    message = str(error.value)
    for file in files:  # the name, the URL and where to put it, for each file
        assert f"https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/{file} → {empty_caches / file}" in message
    assert "dinokit download" in message
    empty_caches.mkdir(parents=True)
    backbone = dinokit.Dinov2Model(dinokit.preset_config("s"))
    torch.save(backbone.state_dict(), empty_caches / files[0])  # the backbone arrives: only the head is missing
    with pytest.raises(dinokit.WeightsNotAvailableError, match=r"1 file \(" + re.escape(files[1]) + r"\) is not"):
        load(name)


def test_paths_and_typos_are_said_at_once(tmp_path, monkeypatch, empty_caches):
    """No Hugging Face call for these (HF_HUB_OFFLINE is unset here: a call would be a download attempt and a
    WeightsNotAvailableError): a missing local path is a FileNotFoundError, a near miss a ValueError."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    for path in ("./tiny", "/nowhere/model", "~/weights/dinov2.pth", "model.safetensors", "models/tiny"):
        with pytest.raises(FileNotFoundError, match="no such file or folder"):
            dinokit.load_model(path)
    for typo, meant in (("dinov2_vits41", "dinov2_vits14"), ("facebook/dinov2-smal", "facebook/dinov2-small"),
                        ("dinov2_vits14_nyu_dtp", "dinov2_vits14_nyu_dpt")):
        with pytest.raises(ValueError, match=f"did you mean {re.escape(meant)}"):
            dinokit.load_model(typo)
    with pytest.raises(ValueError, match="did you mean dinov2_vits14"):
        dinokit.AutoConfig.from_pretrained("dinov2_vits41")


def test_an_unknown_repo_offline_points_to_the_current_commands(empty_caches):
    with pytest.raises(dinokit.WeightsNotAvailableError) as error:
        dinokit.load_model("someone/their-dinov2")
    assert "`dinokit download someone/their-dinov2`" in str(error.value)
    assert "`hf download someone/their-dinov2`" in str(error.value) and "huggingface-cli" not in str(error.value)


def test_download_prints_and_fetches_into_the_caches(empty_caches, capsys):
    assert main(["download", "dinov2_vits14_lc", "facebook/dinov2-small", "--print"]) == 0
    out = capsys.readouterr().out
    for file in ("dinov2_vits14_pretrain.pth", "dinov2_vits14_linear4_head.pth"):
        assert f"/{file} → {empty_caches / file}" in out
    assert "hf download facebook/dinov2-small" in out
    empty_caches.mkdir(parents=True)
    for file in ("dinov2_vits14_pretrain.pth", "dinov2_vits14_linear4_head.pth"):
        torch.save({}, empty_caches / file)
    assert main(["download", "dinov2_vits14_lc"]) == 0  # cached: nothing to fetch, the paths said
    assert str(url_target("https://x/dinov2_vits14_linear4_head.pth")) in capsys.readouterr().out
    assert main(["download", "dinov2_vits41"]) == 1
    assert "did you mean dinov2_vits14" in capsys.readouterr().err
