"""The command line as a newcomer meets it: the README's first command, every command's help, and exit
statuses that say what happened."""
import json

import pytest

from dinokit.cli import COMMANDS, build_parser
from dinokit.data import load_image
from dinokit.models.pos_embed import INTERPOLATE_MODES
from tests.helpers import cli


def test_the_readme_first_command_runs_on_the_bundled_samples(tmp_path, tiny_model_dir):
    """`dinokit samples photos && dinokit embed photos ...`, with a local model instead of the download."""
    run = cli("samples", tmp_path / "photos")
    assert run.returncode == 0, run.stderr
    files = sorted((tmp_path / "photos").glob("*.jpg"))
    assert len(files) == 5 and all(load_image(f).size[0] > 100 for f in files)
    run = cli("embed", tmp_path / "photos", "-o", tmp_path / "photos.parquet", "--model", tiny_model_dir, "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["done"] == 5


def test_every_command_has_help_and_runs_as_python_m(capsys):
    from dinokit.cli import main

    names = sorted(build_parser()._subparsers._group_actions[0].choices)
    assert len(names) == len(COMMANDS)
    for name in names:
        assert main([name, "--help"]) == 0, name
        assert "usage: dinokit" in capsys.readouterr().out, name
    run = cli("embed", "--help")  # and the same through `python -m dinokit`
    assert run.returncode == 0 and "usage: dinokit embed" in run.stdout


def test_choices_come_from_the_library():
    run = cli("info", "x", "--interpolate-mode", "nearest")
    assert run.returncode == 2 and all(mode in run.stderr for mode in INTERPOLATE_MODES)


@pytest.mark.parametrize("args, status, says", [
    (["embed", "nowhere", "-o", "out.parquet", "--model", "MODEL"], 2, "no images found"),
    (["info", "no/such/folder/model.pth"], 1, "no/such/folder/model.pth"),
    (["embed", "IMAGES", "-o", "out.parquet", "--model", "MODEL", "--backend", "tensorrt"], 2, "tensorrt"),
])
def test_errors_name_the_culprit_with_their_exit_status(tmp_path, tiny_model_dir, photos, args, status, says):
    (tmp_path / "nowhere").mkdir()
    args = [str(tiny_model_dir) if a == "MODEL" else str(photos[0]) if a == "IMAGES" else
            str(tmp_path / a) if a in ("nowhere", "out.parquet") else a for a in args]
    run = cli(*args)
    assert run.returncode == status and says in run.stderr, (run.returncode, run.stderr[-2000:])
    assert "Traceback" not in run.stderr
