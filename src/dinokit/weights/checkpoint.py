"""Reading checkpoint files safely, inferring their architecture, and loading them into a model."""
from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import DinokitError, InputFileError, first_line
from ..models.config import Dinov2Config
from .formats import to_dinokit, unwrap_checkpoint

SAFETENSORS_NAME = "model.safetensors"
PICKLE_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"
HEAD_WEIGHTS_NAME = "head.safetensors"  # a head `dinokit train-seg` saves, beside its HEAD_META_NAME
HEAD_META_NAME = "head.json"


class CheckpointFileError(InputFileError):
    """A checkpoint file that cannot be read: truncated, not a checkpoint, or a pickle that holds code."""


class CheckpointMismatchError(DinokitError, ValueError):
    """A state dict does not fit the model: names every missing, unexpected and wrongly shaped key."""

    def __init__(self, missing, unexpected, wrong_shape, source=""):
        self.missing, self.unexpected, self.wrong_shape = missing, unexpected, wrong_shape
        lines = [f"checkpoint {source} does not match the model:" if source else "checkpoint does not match the model:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        for k, got, want in wrong_shape:
            lines.append(f"  wrong shape: {k} is {list(got)} in the checkpoint, the model needs {list(want)}")
        super().__init__("\n".join(lines))


def read_state_dict(path: str | os.PathLike) -> dict:
    """Tensors of a .safetensors or pickled (.pth/.bin/.pt) file; pickles load with weights_only=True,
    so nothing in the file is executed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointFileError(path, f"not a readable .safetensors file ({first_line(e)})") from e
    try:
        with warnings.catch_warnings():  # a plain pickle's protocol note: the error below says what matters
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = next((line.strip() for line in str(e).splitlines() if "global" in line.lower()), first_line(e))
        raise CheckpointFileError(path, "the pickle holds more than tensors and plain containers, and dinokit never "
                                        f"runs code from a checkpoint (refused: {refused})") from e
    except Exception as e:  # truncated zip, not a pickle at all, ...
        raise CheckpointFileError(path, f"not a loadable checkpoint ({type(e).__name__}: {first_line(e)})") from e



def weights_fingerprint(model: nn.Module) -> str:
    """A hash of every tensor of a model's state (names, dtypes, shapes, values): two models give the same
    numbers only if their fingerprints agree, whatever file or name they came from."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:32]


def find_weights_file(folder: Path) -> Path:
    for name in (SAFETENSORS_NAME, PICKLE_NAME):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder} has neither {SAFETENSORS_NAME} nor {PICKLE_NAME}")


def infer_config(sd: dict[str, torch.Tensor]):
    """Architecture of a dinokit-named state dict (for files that come without config.json).
    The head count is not stored in a checkpoint: DINOv2 uses 64-dimensional heads; a DINOv3 width takes the
    released model's head count (the 7B's heads are 128 wide)."""
    if "downsample_layers.0.0.weight" in sd:
        return _infer_convnext_config(sd)
    if "cls_token" in sd and "pos_embed" not in sd:
        return _infer_dinov3_config(sd)
    dim = sd["cls_token"].shape[-1]
    patch = sd["patch_embed.proj.weight"].shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    swiglu = "blocks.0.mlp.w12.weight" in sd
    hidden = sd["blocks.0.mlp.w12.weight"].shape[0] // 2 if swiglu else sd["blocks.0.mlp.fc1.weight"].shape[0]
    grid = round((sd["pos_embed"].shape[1] - 1) ** 0.5)
    mlp_ratio = 4 if swiglu else (hidden // dim if hidden % dim == 0 else hidden / dim)
    return Dinov2Config(
        hidden_size=dim, num_hidden_layers=depth, num_attention_heads=max(1, dim // 64),
        mlp_ratio=mlp_ratio, use_swiglu_ffn=swiglu, patch_size=patch,
        image_size=grid * patch, num_channels=sd["patch_embed.proj.weight"].shape[1],
        num_register_tokens=sd["register_tokens"].shape[1] if "register_tokens" in sd else 0,
        qkv_bias="blocks.0.attn.qkv.bias" in sd, layerscale_value=1.0 if "blocks.0.ls1.gamma" in sd else 0.0,
    )


def load_converted(model: nn.Module, sd: dict[str, torch.Tensor], source: str = "") -> None:
    """Load a dinokit-named state dict, refusing any mismatch. The mask token may be absent (timm and
    mmpretrain drop it; it only matters for masked training) and then stays zero."""
    expected = model.state_dict()
    if "mask_token" not in expected:  # a model built with use_mask_token=False: unused there, as in transformers
        sd = {k: v for k, v in sd.items() if k != "mask_token"}
    missing = [k for k in expected if k not in sd and k != "mask_token"]
    unexpected = [k for k in sd if k not in expected]
    wrong = [(k, sd[k].shape, expected[k].shape) for k in sd if k in expected and sd[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(missing, unexpected, wrong, source)
    model.load_state_dict(sd, strict=False)


def state_dict_from_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A checkpoint file in any supported layout, as a dinokit-named state dict."""
    return read_checkpoint(path)[0]


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """(backbone state dict in dinokit names, classification head {weight, bias} or None) of a file."""
    raw = unwrap_checkpoint(read_state_dict(path))
    head = {k[len("classifier."):]: raw.pop(k) for k in list(raw) if k.startswith("classifier.")}
    return to_dinokit(raw), head or None


def _infer_dinov3_config(sd: dict[str, torch.Tensor]):
    from ..models.dinov3 import DINOv3ViTConfig, heads_for_width

    dim = sd["cls_token"].shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    gated = "blocks.0.mlp.w1.weight" in sd
    hidden = sd["blocks.0.mlp.w1.weight" if gated else "blocks.0.mlp.fc1.weight"].shape[0]
    heads = heads_for_width(dim)
    bias = "blocks.0.attn.qkv.bias" in sd
    fields = dict(
        hidden_size=dim, num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=hidden,
        use_gated_mlp=gated, hidden_act="silu" if gated else "gelu", patch_size=sd["patch_embed.proj.weight"].shape[-1],
        num_channels=sd["patch_embed.proj.weight"].shape[1], query_bias=bias, value_bias=bias,
        num_register_tokens=sd["storage_tokens"].shape[1] if "storage_tokens" in sd else 0,
        layerscale_value=1e-5 if "blocks.0.ls1.gamma" in sd else 0.0,
        mlp_bias="blocks.0.mlp.fc2.bias" in sd or "blocks.0.mlp.w3.bias" in sd,
        proj_bias="blocks.0.attn.proj.bias" in sd,
    )
    return DINOv3ViTConfig(**fields)


def _infer_convnext_config(sd: dict[str, torch.Tensor]):
    from ..models.convnext import DINOv3ConvNextConfig

    stages = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("stages."))
    depths = [1 + max(int(k.split(".")[2]) for k in sd if k.startswith(f"stages.{i}.")) for i in range(stages)]
    dims = [sd[f"stages.{i}.0.dwconv.weight"].shape[0] for i in range(stages)]
    return DINOv3ConvNextConfig(depths=depths, hidden_sizes=dims, num_channels=sd["downsample_layers.0.0.weight"].shape[1])
