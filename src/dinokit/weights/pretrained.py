"""`from_pretrained` / `save_pretrained`: names, folders and files → a loaded model, and back to the
Hugging Face layout."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..download import hub_file, url_file
from ..models.config import Dinov2Config, preset_config
from .checkpoint import (
    CONFIG_NAME, PICKLE_NAME, SAFETENSORS_NAME, find_weights_file, infer_config, load_converted, read_checkpoint,
    read_state_dict,
)
from .formats import to_hf
from .names import available_models, lookup, official_head_url


@dataclass
class ResolvedCheckpoint:
    config: Dinov2Config
    state_dict: dict[str, torch.Tensor]  # the backbone, dinokit names
    head: dict[str, torch.Tensor] | None = None  # a linear classification head {weight, bias}
    interpolate_mode: str | None = None  # the source library's own mode, when it is not the official one


def resolve_checkpoint(name_or_path: str | os.PathLike, *, head_layers: int | None = None) -> ResolvedCheckpoint:
    """A local folder or file, a published name (`dinov2_vits14`, `dinov2_vits14_lc`, `facebook/dinov2-small`,
    an mmpretrain name) or any Hugging Face repo id, as a config, a dinokit state dict and maybe a head.
    `head_layers` (1 or 4) picks the official linear head of `_lc` names (torch.hub's default: 4)."""
    path = Path(name_or_path)
    if path.is_dir():
        config = Dinov2Config.from_json_file(path / CONFIG_NAME) if (path / CONFIG_NAME).is_file() else None
        sd, head = read_checkpoint(find_weights_file(path))
        return ResolvedCheckpoint(config or infer_config(sd), sd, head)
    if path.is_file():
        sd, head = read_checkpoint(path)
        return ResolvedCheckpoint(infer_config(sd), sd, head)
    name = str(name_or_path)
    source = lookup(name)
    if source is not None and source.url:
        sd, _ = read_checkpoint(url_file(source.url))
        config = preset_config(source.size, source.registers)
        head = None
        if source.linear_head:
            layers = head_layers or 4
            head = read_state_dict(url_file(official_head_url(source.size, source.registers, layers)))
            config = with_linear_head(config, layers)
        return ResolvedCheckpoint(config, sd, head, source.interpolate_mode)
    if source is not None or name.count("/") == 1:
        repo_id = source.repo_id if source else name
        config = Dinov2Config.from_json_file(hub_file(repo_id, CONFIG_NAME))
        weights = hub_file(repo_id, SAFETENSORS_NAME, required=False) or hub_file(repo_id, PICKLE_NAME)
        sd, head = read_checkpoint(weights)
        return ResolvedCheckpoint(config, sd, head)
    raise ValueError(
        f"{name!r} is not a file, a folder, a Hugging Face repo id or a known model name. "
        f"Known names: {', '.join(available_models())}"
    )


def with_linear_head(config: Dinov2Config, layers: int, id2label: dict | None = None) -> Dinov2Config:
    """The config of a classifier: ImageNet-1k labels unless told otherwise; `classifier_layers` 1 or 4."""
    if id2label is None and config.id2label is None:
        from ..heads.classification import imagenet_id2label

        id2label = imagenet_id2label()
    extra = {**config.extra, "classifier_layers": layers} if layers != 1 else {
        k: v for k, v in config.extra.items() if k != "classifier_layers"}
    return config.replace(id2label=id2label or config.id2label, label2id=None, num_labels=None, extra=extra)


class PretrainedMixin:
    """Checkpoint I/O for the dinokit model classes; the modules themselves know nothing of files."""

    hf_architecture = "Dinov2Model"

    @classmethod
    def from_pretrained(cls, name_or_path, *, interpolate_mode: str | None = None, device="cpu",
                        dtype: torch.dtype = torch.float32, config: Dinov2Config | None = None, **kwargs):
        """Precedence of the interpolation mode: the argument, the checkpoint's config.json, the source
        library's own mode (mmpretrain names), then "official"."""
        found = resolve_checkpoint(name_or_path, head_layers=kwargs.get("layers"))
        return cls.from_resolved(found, str(name_or_path), interpolate_mode=interpolate_mode, device=device,
                                 dtype=dtype, config=config, **kwargs)

    @classmethod
    def from_resolved(cls, found: ResolvedCheckpoint, source: str, *, interpolate_mode: str | None = None,
                      device="cpu", dtype: torch.dtype = torch.float32, config: Dinov2Config | None = None, **kwargs):
        """The model of an already resolved checkpoint (so that a caller can look at it first)."""
        config = cls._config_for(config or found.config, found, **kwargs)
        mode = interpolate_mode or config.interpolate_mode or found.interpolate_mode or "official"
        model = cls(config.replace(interpolate_mode=mode))
        model._load_resolved(found, source=source, **kwargs)
        return model.to(device=device, dtype=dtype).eval()

    @classmethod
    def _config_for(cls, config: Dinov2Config, found: ResolvedCheckpoint, **kwargs) -> Dinov2Config:
        return config

    def _load_resolved(self, found: ResolvedCheckpoint, source: str, **kwargs) -> None:
        load_converted(self, found.state_dict, source=source)

    def _hf_state_dict(self) -> dict[str, torch.Tensor]:
        return to_hf(self.state_dict())

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """config.json + model.safetensors in the layout `transformers` loads."""
        from safetensors.torch import save_file

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._hf_state_dict().items()}
        tmp = folder / f".{SAFETENSORS_NAME}.tmp"
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, folder / SAFETENSORS_NAME)
        arch = self.hf_architecture
        if self.config.num_register_tokens:
            arch = arch.replace("Dinov2", "Dinov2WithRegisters", 1)
        self.config.to_json_file(folder / CONFIG_NAME, architectures=[arch])
        return folder
