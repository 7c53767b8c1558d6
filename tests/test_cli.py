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


def test_every_option_has_a_spelling_that_passes_through_torchrun():
    """torchrun reads the whole command line and refuses an ambiguous abbreviation of its own options even
    after `-m dinokit` (`--n` could be its --nnodes or --nproc-per-node): every option needs one spelling it
    lets through. (`download` runs without torchrun.)"""
    import argparse

    from torch.distributed.run import get_args_parser

    from dinokit.cli import _all_parsers

    torchrun = get_args_parser()
    torchrun.error = lambda message: (_ for _ in ()).throw(argparse.ArgumentError(None, message))
    refused = []
    for parser in _all_parsers(build_parser()):
        if parser.prog.startswith("dinokit download"):
            continue
        for action in parser._actions:
            spellings = [o for o in action.option_strings if o not in ("-h", "--help")]
            passing = []
            for option in spellings:
                try:
                    torchrun.parse_args(["--nproc-per-node", "2", "-m", "dinokit", *parser.prog.split()[1:], option, "1"])
                    passing.append(option)
                except argparse.ArgumentError:
                    pass
            if spellings and not passing:
                refused.append(f"{parser.prog} {spellings[0]}")
    assert not refused


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


def mistakes(folder, model_dir):
    """Files a user gets wrong, each with what the one-line message must name."""
    import os
    import pickle

    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "cut.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes()[:500])

    class RunsCode:
        def __reduce__(self):
            return os.system, (f"touch {folder / 'ran'}",)

    (folder / "code.pth").write_bytes(pickle.dumps({"model": RunsCode()}))
    pq.write_table(pa.table({"path": ["a.jpg"], "embedding": [[1.0, 2.0]]}), folder / "e.parquet")
    (folder / "syntax.yaml").write_text("pool: e.parquet\nsteps:\n  - dedup: {threshold: 0.9\n")
    (folder / "typo.yaml").write_text("pool: e.parquet\nsteps:\n  - dedup: {treshold: 0.9}\n")
    return [
        (["info", "cut.safetensors"], 1, "cut.safetensors: not a readable .safetensors file"),
        (["info", "code.pth"], 1, "never runs code from a checkpoint"),
        (["curate", "pipeline", "syntax.yaml"], 1, "syntax.yaml: not valid YAML at line 4"),
        (["curate", "pipeline", "typo.yaml"], 1, "has no setting treshold"),
        (["viz", "attention", "missing.jpg", "-o", "x.png", "--model", str(model_dir)], 1, "missing.jpg: file not found"),
        (["viz", "pca", "missing.jpg", "-o", "x.png", "--model", str(model_dir)], 1, "missing.jpg: file not found"),
        (["search", "q.jpg", "--index", "nowhere"], 1, "nowhere is not a dinokit index"),
        (["search", "q.jpg", "--index", "nowhere", "-k", "0"], 2, "argument -k: must be at least 1, got 0"),
        (["curate", "balance", "e.parquet", "-o", "b.parquet", "--target", "-5"], 2, "--target: must be at least 1"),
        (["curate", "dedup", "e.parquet", "-o", "d.parquet", "--k", "0"], 2, "--k: must be at least 1"),
    ]


def test_user_mistakes_are_one_line_with_the_culprit_and_debug_shows_where(tmp_path, tiny_model_dir, monkeypatch, capsys):
    from dinokit.cli import main

    monkeypatch.chdir(tmp_path)
    for args, status, says in mistakes(tmp_path, tiny_model_dir):
        assert main(args) == status, args
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, (args, err)
        if status == 1:
            assert len(err.strip().splitlines()) == 1 and "--debug" in err, (args, err)
    assert not (tmp_path / "ran").exists(), "a checkpoint ran code"
    with pytest.raises(Exception, match="not a readable .safetensors file"):  # --debug: the error itself
        main(["--debug", "info", "cut.safetensors"])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("command", [["embed", "IMAGES", "-o", "out"], ["search", "IMAGES", "--index", "idx"],
                                     ["depth", "IMAGES", "-o", "out"], ["eval", "knn", "--train", "a", "--val", "b"]])
def test_a_missing_gpu_is_said_before_any_work(command, tmp_path, photos, capsys):
    from dinokit.cli import main

    args = [str(photos[0]) if a == "IMAGES" else str(tmp_path / a) if a in ("out", "idx") else a for a in command]
    assert main([*args, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda: no CUDA GPU is visible on this machine" in err and "--device cpu" in err
    assert main([*args, "--device", "gpu0"]) == 2
    assert "not a device torch knows" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_index_says_it_replaced_an_index(tmp_path, capsys):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dinokit.cli import main

    vectors = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    pq.write_table(pa.table({"path": [f"{i}.jpg" for i in range(20)],
                             "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 8)}),
                   tmp_path / "e.parquet")
    assert main(["index", str(tmp_path / "e.parquet"), "-o", str(tmp_path / "idx")]) == 0
    assert "replaced" not in capsys.readouterr().err
    assert main(["index", str(tmp_path / "e.parquet"), "-o", str(tmp_path / "idx")]) == 0
    assert f"replaced the index that was at {tmp_path / 'idx'}" in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("not an index")
    assert main(["index", str(tmp_path / "e.parquet"), "-o", str(tmp_path / "notes")]) == 2  # never replaces a stranger
    assert (tmp_path / "notes" / "mine.txt").read_text() == "not an index"


def test_every_option_says_what_it_does_and_its_default(capsys):
    import argparse

    from dinokit.cli import _all_parsers, main

    missing = [f"{parser.prog} {action.option_strings or action.dest}" for parser in _all_parsers(build_parser())
               for action in parser._actions
               if not action.help and not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))]
    assert not missing, missing
    assert main(["embed", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: cls)" in text and "(default: dinov2_vits14)" in text
    for args, model in ((["classify"], "dinov2_vits14_lc"), (["depth"], "dinov2_vits14_nyu_dpt"),
                        (["viz", "pca"], "dinov2_vits14"), (["finetune"], "dinov2_vits14")):
        assert main([*args, "--help"]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert f"(default: {model})" in out, args
    assert main(["--version"]) == 0 and capsys.readouterr().out.startswith("dinokit ")


def test_help_listing_and_argument_errors_load_no_torch():
    """`dinokit --help`, `models`, `--version` and a mistyped option answer without importing torch (the
    packages load their names on first use; 5.4 s → 0.2 s on the 2-core CI host, measured in the note)."""
    import subprocess
    import sys

    code = ("import sys\nfrom dinokit.cli import main\n"
            "for args in (['--help'], ['models'], ['--version'], ['embed', 'x', '--bogus'], ['curate', 'dedup', 'e', '-o', 'o', '--k', '0']):\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            "print('torch loaded' if 'torch' in sys.modules else 'no torch')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "no torch"
    import dinokit  # and the library's names still load on first use
    assert dinokit.Dinov2Model.__name__ == "Dinov2Model" and callable(dinokit.curate.dedup) and callable(dinokit.embed)
