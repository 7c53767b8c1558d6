"""Fetching published files once into the standard caches (Hugging Face hub cache, torch hub cache).

Offline (`HF_HUB_OFFLINE=1`, or no network) the caches are used alone, and a missing file is named
together with where to put it.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch


class WeightsNotAvailableError(FileNotFoundError):
    """A published checkpoint is neither in the local cache nor downloadable now."""


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


HUB_OPTIONS = ("revision", "cache_dir", "local_files_only", "token", "force_download", "subfolder")


def hub_file(repo_id: str, filename: str, *, required: bool = True, **hub_options) -> Path | None:
    """One file of a Hugging Face hub repository, through `huggingface_hub` and its cache. `hub_options`
    are `hf_hub_download`'s (`HUB_OPTIONS`: revision, cache_dir, local_files_only, token, …)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

    options = {k: v for k, v in hub_options.items() if v is not None}
    try:
        return Path(hf_hub_download(repo_id, filename, **options))
    except LocalEntryNotFoundError as e:  # offline and not cached (a subclass of EntryNotFoundError)
        if not required and _cached_snapshot_exists(repo_id, options.get("cache_dir")):
            return None  # the repo is cached; this optional file is simply not part of it
        reason = e
    except RemoteEntryNotFoundError:
        if required:
            raise WeightsNotAvailableError(f"{repo_id} has no file {filename!r}") from None
        return None
    except OSError as e:  # network errors
        reason = e
    raise WeightsNotAvailableError(
        f"{repo_id}/{filename} is not in the Hugging Face cache ({options.get('cache_dir') or _hf_cache_dir()}) and could not be "
        f"downloaded{' (HF_HUB_OFFLINE is set)' if offline() else ''}: {reason}. On a machine with network "
        f"run `huggingface-cli download {repo_id}`, or pass a local folder (config.json + model.safetensors) "
        f"or a checkpoint file instead of the name."
    )


def _hf_cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _cached_snapshot_exists(repo_id: str, cache_dir=None) -> bool:
    folder = Path(cache_dir or _hf_cache_dir()) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return folder.is_dir() and any(folder.iterdir())


def url_file(url: str, *, local_files_only: bool = False) -> Path:
    """A published single-file checkpoint, cached where `torch.hub.load_state_dict_from_url` keeps it."""
    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    if target.is_file():
        return target
    if offline() or local_files_only:
        why = "local_files_only is set" if local_files_only else "HF_HUB_OFFLINE is set"
        raise WeightsNotAvailableError(
            f"{target.name} is not in the torch hub cache ({target.parent}) and {why}. "
            f"Download {url} to {target}, or pass the local file path instead of the name."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(target), progress=True)  # writes a temp file, then renames
    except Exception as e:  # urllib raises several types; all mean the same to the user
        raise WeightsNotAvailableError(
            f"could not download {url} ({e}). Download it to {target} on a machine with network, "
            f"or pass the local file path instead of the name."
        ) from None
    return target
