"""The `dinokit` command: parse arguments, call a job, print. Every command also runs as `python -m dinokit`."""
from __future__ import annotations

import argparse
import json
import sys

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def _cmd_models(args) -> int:
    from .weights.names import MODEL_SOURCES

    rows = [dict(name=n, size=s.size, registers=s.registers, source=s.repo_id or s.url) for n, s in sorted(MODEL_SOURCES.items())]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:42s} {r['source']}")
    return EXIT_OK


def _cmd_info(args) -> int:
    from . import load_model

    model = load_model(args.model, interpolate_mode=args.interpolate_mode)
    info = {**model.config.to_dict(), "model": args.model, "parameters": model.num_parameters(),
            "interpolate_mode": model.interpolate_mode}
    print(json.dumps(info, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in info.items()))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dinokit", description="DINOv2 models, features and tools")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the published model names dinokit loads")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("info", help="load a model (name, folder or file) and print its configuration")
    p.add_argument("model")
    p.add_argument("--interpolate-mode", choices=["official", "hf", "timm"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"dinokit {args.command}: error: {e}", file=sys.stderr)
        return EXIT_FATAL
