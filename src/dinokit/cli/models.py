"""`dinokit models`: every published name any command accepts, grouped by kind, with the files it needs."""
from __future__ import annotations

import json

from ..errors import EXIT_OK

KIND_TITLES = {
    "backbone": "backbones (embed, search, eval, viz, finetune, info, …)",
    "classifier": "classifiers (classify): backbone + official linear head",
    "depth": "depth (depth): backbone + head, or a transformers DPT repository",
    "segmentation": "segmentation (segment --head): backbone + official linear head",
    "text": "text and images (dino.txt: classify --labels, search --text, segment --labels)",
}


def run(args) -> int:
    from ..weights.names import catalogue

    entries = [e for e in catalogue() if args.kind in (None, e.kind)]
    if args.json:
        print(json.dumps([{"name": e.name, "kind": e.kind, "files": list(e.files)} for e in entries], indent=2))
        return EXIT_OK
    for kind, title in KIND_TITLES.items():
        group = [e for e in entries if e.kind == kind]
        if group:
            print(f"{title} — {len(group)} names")
            for e in group:
                print(f"  {e.name:42s} {' + '.join(_short(f) for f in e.files)}")
    print("Local files and folders work everywhere a name does; `dinokit download NAME` fetches a name's files.")
    return EXIT_OK


def _short(file: str) -> str:
    return f"Hugging Face repo {file.removeprefix('hf://')}" if file.startswith("hf://") else file.rsplit("/", 1)[-1]


def register(sub) -> None:
    p = sub.add_parser("models", help="list every published name dinokit loads, by kind, with the files each needs")
    p.add_argument("--kind", choices=list(KIND_TITLES), help="only names of this kind (default: all)")
    p.add_argument("--json", action="store_true", help="print the list as JSON (name, kind, files)")
    p.set_defaults(func=run)
