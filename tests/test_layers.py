"""The layers of docs/architecture.md, read from the imports: nothing imports a layer above its own."""
import ast
from pathlib import Path

import dinokit

ROOT = Path(dinokit.__file__).parent
JOBS = {"features", "eval", "finetune", "classify", "zeroshot", "train", "curate", "dense", "bench", "serve"}
ABOVE = {  # unit → what it must never import
    "models": {"cli", "pretrained", "heads", "runtime", "embeddings", "data", *JOBS},  # weights: the config's files
    "weights": {"cli", "pretrained", "heads", "runtime", "embeddings", *JOBS},
    "data": {"cli", "pretrained", "heads", "models", "runtime", "embeddings", *JOBS},  # weights: hub downloads
    "heads": {"cli", "pretrained", "runtime", "embeddings", *JOBS},
    "runtime": {"cli", *JOBS},
    "embeddings": {"cli", "runtime", "pretrained", "heads", *JOBS},
    "pretrained": {"cli", "runtime", "embeddings", *JOBS},
    "optim": {"cli", *JOBS}, "io": {"cli", *JOBS}, "errors": {"cli", *JOBS}, "distributed": {"cli", *JOBS},
    **{job: {"cli"} for job in JOBS},
}


def imported_units(source: Path) -> set[str]:
    """The top-level dinokit units (packages or modules) `source` imports, relative or absolute."""
    depth = len(source.relative_to(ROOT).parts) - 1  # 0 for dinokit/x.py, 1 for dinokit/pkg/x.py
    units = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            up = node.level - 1
            if up == depth and node.module:
                units.add(node.module.split(".")[0])
            elif up == depth and not node.module:
                units.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dinokit."):
            units.add(node.module.split(".")[1])
    return units


def test_nothing_imports_a_layer_above_it():
    wrong = []
    for source in ROOT.rglob("*.py"):
        unit = source.relative_to(ROOT).parts[0].removesuffix(".py")
        for other in imported_units(source) & ABOVE.get(unit, set()):
            wrong.append(f"{source.relative_to(ROOT)} imports {other}")
    assert not wrong, wrong
    assert imported_units(ROOT / "runtime" / "cpu.py") >= {"models"}  # the reader sees real imports
