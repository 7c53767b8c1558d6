"""Fetching published files once into the standard caches (Hugging Face hub cache, torch hub cache).

Offline (`HF_HUB_OFFLINE=1`, or no network) the caches are used alone, and a missing file is named
together with where to put it.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch

from ..errors import first_line


class WeightsNotAvailableError(FileNotFoundError):
    """A published checkpoint is neither in the local cache nor downloadable now."""


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


HUB_OPTIONS = ("revision", "cache_dir", "local_files_only", "token", "force_download", "subfolder")


def hub_file(repo_id: str, filename: str, *, required: bool = True, **hub_options) -> Path | None:
    """One file of a Hugging Face hub repository, through `huggingface_hub` and its cache. `hub_options`
    are `hf_hub_download`'s (`HUB_OPTIONS`: revision, cache_dir, local_files_only, token, …)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RemoteEntryNotFoundError

    options = {k: v for k, v in hub_options.items() if v is not None}
    try:
        return Path(hf_hub_download(repo_id, filename, **options))
    except GatedRepoError as e:
        raise WeightsNotAvailableError(gated_message(repo_id, e)) from None
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            raise WeightsNotAvailableError(gated_message(repo_id, e)) from None
        reason = e
    except LocalEntryNotFoundError as e:  # offline and not cached (a subclass of EntryNotFoundError)
        if not required and cached_snapshot_exists(repo_id, options.get("cache_dir")):
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
        f"downloaded{' (HF_HUB_OFFLINE is set)' if offline() else ''}: {first_line(reason)}. On a machine with "
        f"network run `dinokit download {repo_id}` (or `hf download {repo_id}`), or pass a local folder "
        f"(config.json + model.safetensors) or a checkpoint file instead of the name."
    )



def gated_message(repo_id: str, error: Exception) -> str:
    """What to do when a gated repository refuses us (401/403): the licence page, the token, a local file."""
    token = "HF_TOKEN is set but that account has not been granted access" if os.environ.get("HF_TOKEN") else (
        "no Hugging Face token was sent: set HF_TOKEN (or run `hf auth login`)")
    return (f"{repo_id} is a gated repository ({first_line(error)}). Accept its licence at "
            f"https://huggingface.co/{repo_id} while logged in; {token}. DINOv3 weights are under the DINOv3 License, "
            f"not dinokit's. Or request the official files at {_licence_url()} and pass the signed URL from the "
            "e-mail, or the downloaded .pth file, as the model.")


def _licence_url() -> str:
    from .names import DINOV3_LICENCE_URL

    return DINOV3_LICENCE_URL


def hub_repo(repo_id: str, **hub_options) -> Path:
    """A whole Hugging Face repository's model files (config, weights, processor) in the hub cache."""
    from huggingface_hub import snapshot_download

    options = {k: v for k, v in hub_options.items() if v is not None and k != "subfolder"}
    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt"], **options))
    except Exception as e:  # offline, unknown repository, network: all mean the same to the user
        raise WeightsNotAvailableError(f"{repo_id} could not be fetched into the Hugging Face cache "
                                       f"({_hf_cache_dir()}): {first_line(e)}") from None


def _hf_cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def cached_snapshot_exists(repo_id: str, cache_dir=None) -> bool:
    folder = Path(cache_dir or _hf_cache_dir()) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return folder.is_dir() and any(folder.iterdir())


def url_target(url: str) -> Path:
    """Where `torch.hub.load_state_dict_from_url` keeps the file of `url`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def url_files(urls: list[str], *, local_files_only: bool = False, gated: bool = False) -> list[Path]:
    """Every file of a name that needs several (backbone and head): the cached ones as they are, the others
    downloaded; when any cannot be had, one `WeightsNotAvailableError` lists each missing file with its
    URL and the cache path to put it in (not just the first)."""
    missing = [u for u in dict.fromkeys(urls) if not url_target(u).is_file()]
    if missing and gated:  # the bare URL is refused without the signature of the licence e-mail
        raise WeightsNotAvailableError(
            f"{_listing(missing)} not in the torch hub cache. DINOv3 weights are gated under the DINOv3 License: "
            f"request them at {_licence_url()}, then pass the signed URL from the e-mail (or the downloaded file) "
            f"as the model, or put the file at {url_target(missing[0])}; or use the Hugging Face repository with "
            "HF_TOKEN set after accepting its licence.")
    if missing and (offline() or local_files_only):
        why = "local_files_only is set" if local_files_only else "HF_HUB_OFFLINE is set"
        raise WeightsNotAvailableError(f"{_listing(missing)} not in the torch hub cache and {why}. "
                                       f"{_where_to_put(missing)}")
    failed = []
    for url in missing:
        target = url_target(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(target), progress=True)  # a temp file, then a rename
        except Exception as e:  # urllib raises several types; all mean the same to the user
            failed.append((url, e))
    if failed:
        raise WeightsNotAvailableError(f"could not download {_listing([u for u, _ in failed])} "
                                       f"({first_line(failed[0][1])}). {_where_to_put([u for u, _ in failed])}")
    return [url_target(u) for u in urls]


def _listing(urls: list[str]) -> str:
    names = ", ".join(url_target(u).name for u in urls)
    return f"{len(urls)} files ({names}) are" if len(urls) > 1 else f"1 file ({names}) is"


def _where_to_put(urls: list[str]) -> str:
    steps = "; ".join(f"{u} → {url_target(u)}" for u in urls)
    return (f"On a machine with network, `dinokit download NAME` fetches them, or download each to its place: {steps}; "
            "or pass local files instead of the name.")

