"""`from_pretrained` / `save_pretrained`: names, folders and files → a loaded model, and back to the
Hugging Face layout."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..io import atomic_write
from ..models.config import Dinov2Config, generic_labels, preset_config
from .checkpoint import (
    CONFIG_NAME,
    PICKLE_NAME,
    SAFETENSORS_NAME,
    find_weights_file,
    infer_config,
    load_converted,
    read_checkpoint,
    read_state_dict,
)
from .config_files import config_class, read_any_config
from .download import HUB_OPTIONS, cached_snapshot_exists, hub_file, url_files
from .formats import to_hf, unwrap_checkpoint
from .labels import imagenet_id2label
from .names import close_names, lookup, official_head_url

CLASS_FOR_TYPE = {"dinov2": "Dinov2Model", "dinov2_with_registers": "Dinov2Model", "dinov3_vit": "DINOv3ViTModel",
                  "dinov3_convnext": "DINOv3ConvNextModel"}


@dataclass
class ResolvedCheckpoint:
    config: Dinov2Config
    state_dict: dict[str, torch.Tensor]  # the backbone, dinokit names
    head: dict[str, torch.Tensor] | None = None  # a linear classification head {weight, bias}
    interpolate_mode: str | None = None  # the source library's own mode, when it is not the official one


def resolve_checkpoint(name_or_path: str | os.PathLike, *, head_layers: int | None = None,
                       hub: dict | None = None) -> ResolvedCheckpoint:
    """A local folder or file, a published name (`dinov2_vits14`, `dinov2_vits14_lc`, `facebook/dinov2-small`,
    an mmpretrain name) or any Hugging Face repo id, as a config, a dinokit state dict and maybe a head.
    `head_layers` (1 or 4) picks the official linear head of `_lc` names (torch.hub's default: 4); `hub` holds
    `hf_hub_download`'s options (revision, cache_dir, local_files_only, token, …)."""
    hub = hub or {}
    path = Path(name_or_path)
    if path.is_dir():
        config = read_any_config(path / CONFIG_NAME) if (path / CONFIG_NAME).is_file() else None
        sd, head = read_checkpoint(find_weights_file(path))
        return ResolvedCheckpoint(config or infer_config(sd), sd, head)
    if path.is_file():
        sd, head = read_checkpoint(path)
        return ResolvedCheckpoint(infer_config(sd), sd, head)
    name = str(name_or_path)
    source = lookup(name)
    if name.startswith(("https://", "http://")):  # e.g. the signed URL of a DINOv3 file, sent by e-mail
        sd, head = read_checkpoint(url_files([name], local_files_only=bool(hub.get("local_files_only")))[0])
        return ResolvedCheckpoint(infer_config(sd), sd, head)
    if source is not None and source.family != "dinov2":
        return _resolve_dinov3(source, hub)
    if source is not None and source.url:
        layers = head_layers or 4
        urls = [source.url, official_head_url(source.size, source.registers, layers)] if source.linear_head else [source.url]
        files = url_files(urls, local_files_only=bool(hub.get("local_files_only")))  # all, or all that are missing
        sd, _ = read_checkpoint(files[0])
        config = preset_config(source.size, source.registers)
        head = None
        if source.linear_head:
            head = read_state_dict(files[1])
            config = with_linear_head(config, layers)
        return ResolvedCheckpoint(config, sd, head, source.interpolate_mode)
    refuse_missing_path(name)
    if source is not None or name.count("/") == 1:
        repo_id = source.repo_id if source else name
        config = read_hub_config(repo_id, hub)
        weights = hub_file(repo_id, SAFETENSORS_NAME, required=False, **hub) or hub_file(repo_id, PICKLE_NAME, **hub)
        sd, head = read_checkpoint(weights)
        return ResolvedCheckpoint(config or infer_config(sd), sd, head)
    raise ValueError(f"{name!r} is not a file, a folder, a Hugging Face repo id or a known model name"
                     f"{did_you_mean(name)}; `dinokit models` lists the names")


def model_family(name_or_path) -> str:
    """dinov2, dinov3_vit or dinov3_convnext, known without loading the weights: a name's catalogue entry, a
    folder's config.json, or a file's key names (read memory-mapped, no tensor is loaded)."""
    from .dinov3_formats import detect_family

    source = lookup(str(name_or_path))
    if source is not None:
        return source.family
    path = Path(name_or_path)
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        from ..io import read_json

        return {"dinov3_vit": "dinov3_vit", "dinov3_convnext": "dinov3_convnext"}.get(
            read_json(path / CONFIG_NAME).get("model_type"), "dinov2")
    if path.is_dir():
        path = find_weights_file(path)
    if path.is_file():
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                keys = dict.fromkeys(f.keys(), torch.empty(0))
        else:
            keys = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return detect_family(unwrap_checkpoint(keys))
    return "dinov2"


def read_hub_config(repo_id: str, hub: dict):
    """A hub repo's config.json as a dinokit config; None for a timm repo (its config.json describes timm's
    model, and the architecture is read from the weights instead)."""
    from ..io import read_json

    d = read_json(hub_file(repo_id, CONFIG_NAME, **hub))
    if "model_type" not in d and "architecture" in d:
        return None
    return config_class(d.get("model_type")).from_dict(d)


def _resolve_dinov3(source, hub: dict) -> ResolvedCheckpoint:
    """A DINOv3 name: the official file (from the torch hub cache, or its signed URL) or a hub repo (gated)."""
    if source.repo_id:
        config = read_hub_config(source.repo_id, hub)
        sd, head = read_checkpoint(hub_file(source.repo_id, SAFETENSORS_NAME, **hub))
        return ResolvedCheckpoint(config or infer_config(sd), sd, head)
    sd, head = read_checkpoint(url_files([source.url], local_files_only=bool(hub.get("local_files_only")),
                                         gated=True)[0])
    return ResolvedCheckpoint(infer_config(sd), sd, head)


CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".json")


def refuse_missing_path(name: str) -> None:
    """A model argument written as a local path that does not exist is a `FileNotFoundError` at once, not
    a Hugging Face repo id to try over the network (retries, then a message about the hub), and a near
    miss of a published repo name says what it is close to."""
    first = name.split("/")[0]
    looks_local = (name.startswith((".", "/", "~")) or name.lower().endswith(CHECKPOINT_SUFFIXES)
                   or ("/" in name and first not in ("", ".") and Path(first).is_dir()))
    if looks_local:
        raise FileNotFoundError(f"no such file or folder: {name}{did_you_mean(name)}")
    if (name.count("/") == 1 and lookup(name) is None and any(n != name for n in close_names(name, cutoff=0.85))
            and not cached_snapshot_exists(name)):
        raise ValueError(f"{name!r} is not a published name{did_you_mean(name)}; a Hugging Face repo of that name "
                         "is not in the cache either (pass it as a local folder, or fetch it with `dinokit download`)")


def did_you_mean(name: str) -> str:
    near = [n for n in close_names(name) if n != name]
    return f" (did you mean {' or '.join(near)}?)" if near else ""


def model_identity(name_or_path: str | os.PathLike) -> str:
    """A model argument written the same however it was typed: a local folder or file as its absolute,
    resolved path (`tiny`, `./tiny/` and `/abs/tiny` agree), a published name or repo id as given."""
    path = Path(name_or_path)
    return str(path.resolve()) if path.exists() else str(name_or_path)


def with_linear_head(config: Dinov2Config, layers: int, id2label: dict | None = None) -> Dinov2Config:
    """The config of a classifier: ImageNet-1k labels unless told otherwise; `classifier_layers` 1 or 4."""
    if id2label is None and generic_labels(config.id2label):
        id2label = imagenet_id2label()
    extra = {**config.extra, "classifier_layers": layers} if layers != 1 else {
        k: v for k, v in config.extra.items() if k != "classifier_layers"}
    return config.replace(id2label=id2label or config.id2label, label2id=None, num_labels=None, extra=extra)


def _config_fields() -> frozenset[str]:
    from ..models.convnext import DINOv3ConvNextConfig
    from ..models.dinov3 import DINOv3ViTConfig

    classes = (Dinov2Config, DINOv3ViTConfig, DINOv3ConvNextConfig)
    return frozenset(f.name for c in classes for f in dataclasses.fields(c)) - {"extra"}


CONFIG_FIELDS = _config_fields()
# transformers options with nothing to do here: no code in a checkpoint ever runs, and weights are read once
_NO_OP_OPTIONS = ("trust_remote_code", "low_cpu_mem_usage")
ATTN_IMPLEMENTATIONS = (None, "sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")


def split_kwargs(owner: str, kwargs: dict, options: tuple[str, ...] = ()) -> tuple[dict, dict, dict]:
    """(hub options, class options, config overrides) of `from_pretrained`'s keywords; anything else is
    a TypeError that names it, as a misspelt keyword is in any Python call."""
    unknown = sorted(set(kwargs) - CONFIG_FIELDS - set(options) - set(HUB_OPTIONS) - set(_NO_OP_OPTIONS))
    if unknown:
        raise TypeError(f"{owner}() got unexpected keyword argument{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(repr(k) for k in unknown)} (neither a loading option nor a Dinov2Config field)")
    hub = {k: kwargs[k] for k in HUB_OPTIONS if kwargs.get(k) is not None}
    extra = {k: kwargs[k] for k in options if k in kwargs}
    overrides = {k: v for k, v in kwargs.items() if k in CONFIG_FIELDS}
    return hub, extra, overrides


def config_from_pretrained(name_or_path, **kwargs) -> Dinov2Config:
    """`AutoConfig.from_pretrained`: the config of a folder, a config.json, a checkpoint file, a published
    name or a hub id, with keyword overrides of its fields."""
    hub, _, overrides = split_kwargs("Dinov2Config.from_pretrained", kwargs)
    path = Path(name_or_path)
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        path = path / CONFIG_NAME
    if path.is_file() and path.suffix == ".json":
        config = read_any_config(path)
    elif path.exists():
        config = resolve_checkpoint(path).config
    else:
        source = lookup(str(name_or_path))
        if source is not None and source.family != "dinov2":
            config = dinov3_preset(source)
        elif source is not None and source.url:
            config = preset_config(source.size, source.registers, interpolate_mode=source.interpolate_mode)
            config = with_linear_head(config, 4) if source.linear_head else config
        elif source is not None:
            config = read_any_config(hub_file(source.repo_id, CONFIG_NAME, **hub))
        else:
            name = str(name_or_path)
            refuse_missing_path(name)
            if name.count("/") != 1:
                raise ValueError(f"{name!r} is not a file, a folder, a Hugging Face repo id or a known model name"
                                 f"{did_you_mean(name)}; `dinokit models` lists the names")
            config = read_any_config(hub_file(name, CONFIG_NAME, **hub))
    return config.replace(**overrides) if overrides else config


def dinov3_preset(source):
    """The config of a DINOv3 name, known without its (gated) files."""
    from ..models.convnext import dinov3_convnext_config
    from ..models.dinov3 import dinov3_vit_config

    return dinov3_vit_config(source.size) if source.family == "dinov3_vit" else dinov3_convnext_config(source.size)


def torch_dtype_of(value, config: Dinov2Config) -> torch.dtype:
    """transformers' `dtype` / `torch_dtype`: a torch.dtype, its name, or "auto" (the checkpoint's own);
    float32 when not given (dinokit's default everywhere)."""
    if value is None:
        return torch.float32
    if value == "auto":
        return config.torch_dtype or torch.float32
    if isinstance(value, str):
        found = getattr(torch, value.removeprefix("torch."), None)
        if not isinstance(found, torch.dtype):
            raise ValueError(f"unknown dtype {value!r}")
        return found
    return value


def device_of(device_map, device=None):
    """transformers' `device_map` as one device: "cpu", "cuda", "cuda:1", 0, {"": "cuda"} or "auto" (a GPU
    when there is one). dinokit keeps a model on one device, so a map over several devices is refused."""
    if device is not None and device_map is not None:
        raise TypeError("pass device= or device_map=, not both")
    value = device if device is not None else device_map
    if value is None:
        return "cpu"
    if isinstance(value, dict):
        targets = set(value.values())
        if len(targets) != 1:
            raise ValueError(f"device_map {value} spreads the model over several devices; dinokit keeps a model on one")
        value = targets.pop()
    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return f"cuda:{value}" if isinstance(value, int) else value


class PretrainedMixin:
    """Checkpoint I/O and transformers' `PreTrainedModel` conveniences for the dinokit model classes; the
    modules themselves know nothing of files."""

    hf_architecture = "Dinov2Model"
    config_class = Dinov2Config
    base_model_prefix = "dinov2"
    main_input_name = "pixel_values"
    load_options: tuple[str, ...] = ()  # keywords of this class's from_pretrained beyond the config fields

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, torch_dtype=None, dtype=None,
                        device_map=None, device=None, attn_implementation=None, interpolate_mode=None, **kwargs):
        """transformers' signature: `config` (a Dinov2Config or where to read one), `dtype`/`torch_dtype`,
        `device_map` (one device), `attn_implementation` (any: dinokit runs SDPA, and the explicit weights when
        attentions are asked for), the hub options (`revision`, `cache_dir`, `local_files_only`, `token`,
        `force_download`, `subfolder`) and config fields as overrides (`output_hidden_states=True`, `num_labels=…`).
        Precedence of the interpolation mode: the argument, the checkpoint's config.json, the source library's
        own mode (mmpretrain names), then "official"."""
        return load_pretrained(lambda found, options: cls, f"{cls.__name__}.from_pretrained",
                               pretrained_model_name_or_path, model_args, cls.load_options, config=config,
                               dtype=dtype if dtype is not None else torch_dtype, device_map=device_map, device=device,
                               attn_implementation=attn_implementation, interpolate_mode=interpolate_mode, **kwargs)

    @classmethod
    def from_resolved(cls, found: ResolvedCheckpoint, source: str, *, interpolate_mode: str | None = None,
                      device="cpu", dtype: torch.dtype = torch.float32, config: Dinov2Config | None = None, **options):
        """The model of an already resolved checkpoint (so that a caller can look at it first)."""
        config = cls._config_for(config or found.config, found, **options)
        if not isinstance(config, cls.config_class):
            raise ValueError(f"{source} is a {config.model_type} checkpoint, which {cls.__name__} does not build; "
                             f"load it with {CLASS_FOR_TYPE.get(config.model_type, 'AutoModel')} or dinokit.AutoModel")
        if isinstance(config, Dinov2Config):
            mode = interpolate_mode or config.interpolate_mode or found.interpolate_mode or "official"
            config = config.replace(interpolate_mode=mode)
        elif interpolate_mode is not None and interpolate_mode != ("rope" if hasattr(config, "rope_theta") else "none"):
            raise ValueError(f"interpolate_mode={interpolate_mode!r} applies to DINOv2's learned position embeddings; "
                             f"{source} ({config.model_type}) has none to interpolate (RoPE or convolutions "
                             "handle any input size)")
        model = cls(config)
        model._load_resolved(found, source=source)
        return model.to(device=device, dtype=dtype).eval()

    @classmethod
    def _config_for(cls, config: Dinov2Config, found: ResolvedCheckpoint, **options) -> Dinov2Config:
        return config

    def _load_resolved(self, found: ResolvedCheckpoint, source: str) -> None:
        load_converted(self, found.state_dict, source=source)

    def _hf_state_dict(self) -> dict[str, torch.Tensor]:
        return to_hf(self.state_dict())

    # --- transformers' PreTrainedModel conveniences ---------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def get_input_embeddings(self) -> torch.nn.Module:
        """The patch embedding (transformers returns its `Dinov2PatchEmbeddings`)."""
        vit = getattr(self, "dinov2", self)
        return vit.patch_embed

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """As transformers: `exclude_embeddings` leaves out `nn.Embedding` weights, of which a ViT has none."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not only_trainable)

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """config.json + model.safetensors in the layout `transformers` loads."""
        from safetensors.torch import save_file

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._hf_state_dict().items()}
        with atomic_write(folder / SAFETENSORS_NAME) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        arch = self.hf_architecture
        config = self.config.replace(dtype=str(self.dtype).removeprefix("torch."))
        if isinstance(config, Dinov2Config):
            if self.config.num_register_tokens:
                arch = arch.replace("Dinov2", "Dinov2WithRegisters", 1)
            # the mode in effect is written out, so that the folder reloads with the same numbers at every size
            config = config.replace(interpolate_mode=self.interpolate_mode)
        config.to_json_file(folder / CONFIG_NAME, architectures=[arch])
        return folder


def load_pretrained(choose_class, owner: str, name_or_path, model_args: tuple, options: tuple[str, ...], *,
                    config=None, dtype=None, device_map=None, device=None, attn_implementation=None,
                    interpolate_mode=None, **kwargs):
    """The one path from a name or path to a loaded model: validate every keyword, resolve the checkpoint,
    apply the config overrides, build the class `choose_class(found, options)` picks, load, place."""
    if model_args:
        raise TypeError(f"{owner}() takes the name or path as its only positional argument "
                        f"(got {len(model_args)} more); pass config=… and options by keyword")
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS[1:]}, got {attn_implementation!r}")
    hub, extra, overrides = split_kwargs(owner, kwargs, options)
    found = resolve_checkpoint(name_or_path, head_layers=extra.get("layers"), hub=hub)
    if isinstance(config, (str, os.PathLike)):
        config = config_from_pretrained(config, **hub)
    base = config if config is not None else found.config
    if overrides:
        base = base.replace(**overrides)
    extra["labels_asked"] = "num_labels" in overrides or "id2label" in overrides
    cls = choose_class(found, extra)
    return cls.from_resolved(found, str(name_or_path), interpolate_mode=interpolate_mode,
                             device=device_of(device_map, device), dtype=torch_dtype_of(dtype, base),
                             config=base, **{k: v for k, v in extra.items() if k in cls.load_options or k == "labels_asked"})
