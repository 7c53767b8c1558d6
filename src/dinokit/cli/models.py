"""`dinokit models`: the published model names dinokit loads."""
from __future__ import annotations

import json

from ..errors import EXIT_OK


def run(args) -> int:
    from ..weights.names import MODEL_SOURCES

    rows = [dict(name=n, size=s.size, registers=s.registers, source=s.repo_id or s.url) for n, s in sorted(MODEL_SOURCES.items())]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:42s} {r['source']}")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("models", help="list the published model names dinokit loads")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
