"""`from_pretrained` / `save_pretrained`: names, folders and files → a loaded model, and back to the
Hugging Face layout."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.config import Dinov2Config, preset_config
from .checkpoint import (
    CONFIG_NAME, PICKLE_NAME, SAFETENSORS_NAME, find_weights_file, infer_config, load_converted,
    state_dict_from_file,
)
from ..download import hub_file, url_file
from .formats import to_hf
from .names import available_models, lookup


@dataclass
class ResolvedCheckpoint:
    config: Dinov2Config
    state_dict: dict[str, torch.Tensor]  # dinokit names
    interpolate_mode: str | None = None  # the source library's own mode, when it is not the official one


def resolve_checkpoint(name_or_path: str | os.PathLike) -> ResolvedCheckpoint:
    """A local folder or file, a published name (`dinov2_vits14`, `facebook/dinov2-small`, an mmpretrain
    name) or any Hugging Face repo id, as a config and a dinokit state dict."""
    path = Path(name_or_path)
    if path.is_dir():
        config = Dinov2Config.from_json_file(path / CONFIG_NAME) if (path / CONFIG_NAME).is_file() else None
        sd = state_dict_from_file(find_weights_file(path))
        return ResolvedCheckpoint(config or infer_config(sd), sd)
    if path.is_file():
        sd = state_dict_from_file(path)
        return ResolvedCheckpoint(infer_config(sd), sd)
    name = str(name_or_path)
    source = lookup(name)
    if source is not None and source.url:
        sd = state_dict_from_file(url_file(source.url))
        return ResolvedCheckpoint(preset_config(source.size, source.registers), sd, source.interpolate_mode)
    if source is not None or name.count("/") == 1:
        repo_id = source.repo_id if source else name
        config = Dinov2Config.from_json_file(hub_file(repo_id, CONFIG_NAME))
        weights = hub_file(repo_id, SAFETENSORS_NAME, required=False) or hub_file(repo_id, PICKLE_NAME)
        return ResolvedCheckpoint(config, state_dict_from_file(weights))
    raise ValueError(
        f"{name!r} is not a file, a folder, a Hugging Face repo id or a known model name. "
        f"Known names: {', '.join(available_models())}"
    )


class PretrainedMixin:
    """Checkpoint I/O for the dinokit model classes; the modules themselves know nothing of files."""

    hf_architecture = "Dinov2Model"

    @classmethod
    def from_pretrained(cls, name_or_path, *, interpolate_mode: str | None = None, device="cpu",
                        dtype: torch.dtype = torch.float32, config: Dinov2Config | None = None):
        """Precedence of the interpolation mode: the argument, the checkpoint's config.json, the source
        library's own mode (mmpretrain names), then "official"."""
        found = resolve_checkpoint(name_or_path)
        config = config or found.config
        mode = interpolate_mode or config.interpolate_mode or found.interpolate_mode or "official"
        model = cls(config.replace(interpolate_mode=mode))
        load_converted(model, found.state_dict, source=str(name_or_path))
        return model.to(device=device, dtype=dtype).eval()

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """config.json + model.safetensors in the layout `transformers` loads."""
        from safetensors.torch import save_file

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in to_hf(self.state_dict()).items()}
        tmp = folder / f".{SAFETENSORS_NAME}.tmp"
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, folder / SAFETENSORS_NAME)
        arch = self.hf_architecture
        if self.config.num_register_tokens and arch.startswith("Dinov2"):
            arch = arch.replace("Dinov2", "Dinov2WithRegisters", 1)
        self.config.to_json_file(folder / CONFIG_NAME, architectures=[arch])
        return folder
