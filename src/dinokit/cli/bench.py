"""`dinokit bench`: its own parser (`dinokit bench --help`), in `dinokit.bench`."""
from __future__ import annotations


def register(sub) -> None:
    sub.add_parser("bench", help="speed against transformers, timm and the official code (see `dinokit bench --help`)")
