"""`dinokit download`: every published file a name needs, into the caches the loaders read (for a
machine with network before going offline, or to see what to copy where)."""
from __future__ import annotations

from ..errors import EXIT_OK


def run(args) -> int:
    from ..weights.download import hub_repo, url_files, url_target
    from ..weights.names import CatalogueEntry, catalogue_entry
    from ..weights.pretrained import did_you_mean

    for name in args.names:
        entry = catalogue_entry(name)
        if entry is None and name.count("/") != 1:
            raise ValueError(f"{name!r} is not a published name or a Hugging Face repo id{did_you_mean(name)}; "
                             "`dinokit models` lists the names")
        entry = entry or CatalogueEntry(name, "backbone", (f"hf://{name}",))  # any other Hugging Face repo
        urls, repos = entry.urls, entry.repos
        if args.print:
            for url in urls:
                target = url_target(url)
                print(f"{name}: {url} → {target}{' (cached)' if target.is_file() else ''}")
            for repo in repos:
                print(f"{name}: Hugging Face repo {repo} → the huggingface_hub cache (`hf download {repo}`)")
            continue
        for path in url_files(urls):
            print(f"{name}: {path}")
        for repo in repos:
            print(f"{name}: {hub_repo(repo)}")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("download", help="fetch every file a published name needs into the caches (or --print them)")
    p.add_argument("names", nargs="+", help="published names or Hugging Face repo ids (see `dinokit models`)")
    p.add_argument("--print", action="store_true", help="only print each file's URL and the cache path it goes to")
    p.set_defaults(func=run)
