"""`dinokit samples DIR`: a few photos that ship with dinokit, to try the other commands on."""
from __future__ import annotations

from ..errors import EXIT_OK


def run(args) -> int:
    from ..data.sample_photos import write_samples

    written = write_samples(args.folder)
    print(f"wrote {len(written)} sample photos → {args.folder}/ ({', '.join(f.name for f in written)})")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("samples", help="write a few sample photos into a folder (to try the other commands)")
    p.add_argument("folder", help="where to write the five sample photos")
    p.set_defaults(func=run)
