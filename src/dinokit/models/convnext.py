"""The DINOv3 ConvNeXt (distilled from the 7B ViT) and its config: a plain `nn.Module` with the official
parameter names, whose outputs read like a ViT's — [pooled, patches] tokens after the final norm — so that
every job that pools tokens runs on it unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .activations import activation
from .config import HubConfig
from .layers import DropPath, reset_parameters
from .outputs import BaseModelOutputWithPooling, wants_tuple


@dataclass(eq=False)
class DINOv3ConvNextConfig(HubConfig):
    """transformers' `DINOv3ConvNextConfig`: the same fields and defaults (ConvNeXt-T)."""

    num_channels: int = 3
    hidden_sizes: list[int] = field(default_factory=lambda: [96, 192, 384, 768])
    depths: list[int] = field(default_factory=lambda: [3, 3, 9, 3])
    hidden_act: str = "gelu"
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-6
    layer_scale_init_value: float = 1e-6
    drop_path_rate: float = 0.0
    image_size: int = 224

    model_type = "dinov3_convnext"
    interpolate_mode = None

    def _check_values(self) -> None:
        self._check_whole_numbers("num_channels", "image_size")
        if len(self.hidden_sizes) != len(self.depths) or not self.depths:
            raise ValueError(f"hidden_sizes {self.hidden_sizes} and depths {self.depths} must name the same stages")
        for name in ("hidden_sizes", "depths"):
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in getattr(self, name)):
                raise ValueError(f"{name} must be whole numbers ≥ 1, got {getattr(self, name)!r}")
        self._check_numbers("layer_norm_eps", "layer_scale_init_value", "initializer_range")
        self._check_rates("drop_path_rate")
        self._check_activation()

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def hidden_size(self) -> int:
        """The width of the final features (the last stage's)."""
        return self.hidden_sizes[-1]

    def _defaults(self) -> DINOv3ConvNextConfig:
        return DINOv3ConvNextConfig()


_SIZES = {"tiny": ([3, 3, 9, 3], [96, 192, 384, 768]), "small": ([3, 3, 27, 3], [96, 192, 384, 768]),
          "base": ([3, 3, 27, 3], [128, 256, 512, 1024]), "large": ([3, 3, 27, 3], [192, 384, 768, 1536])}
CONVNEXT_SIZES = tuple(_SIZES)


def dinov3_convnext_config(size: str, **overrides) -> DINOv3ConvNextConfig:
    try:
        depths, dims = _SIZES[size]
    except KeyError:
        raise ValueError(f"unknown DINOv3 ConvNeXt size {size!r}; expected one of {CONVNEXT_SIZES}") from None
    return DINOv3ConvNextConfig(**{"depths": list(depths), "hidden_sizes": list(dims), **overrides})


class ChannelsFirstLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of [B, C, H, W]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """x + gamma * pwconv2(act(pwconv1(norm(dwconv(x))))), the MLP channels-last."""

    def __init__(self, dim: int, eps: float, layer_scale: float, act: str, drop_path: float):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = activation(act)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x).permute(0, 2, 3, 1)))))
        return x + self.drop_path((y * self.gamma).permute(0, 3, 1, 2))


class ConvNeXt(nn.Module):
    """Stem (4×4 stride 4) and three 2×2 downsamplings: features at 1/32 of the input; `patch_size` is that
    stride, `num_prefix_tokens` 1 (the pooled token in front of the flattened map)."""

    num_prefix_tokens = 1
    num_register_tokens = 0
    chunked_blocks = False  # the official attribute beside `n_blocks`

    def __init__(self, config: DINOv3ConvNextConfig):
        super().__init__()
        self.config = config
        dims, eps = config.hidden_sizes, config.layer_norm_eps
        self.downsample_layers = nn.ModuleList([nn.Sequential(
            nn.Conv2d(config.num_channels, dims[0], kernel_size=4, stride=4), ChannelsFirstLayerNorm(dims[0], eps=eps))])
        for i in range(1, len(dims)):
            self.downsample_layers.append(nn.Sequential(
                ChannelsFirstLayerNorm(dims[i - 1], eps=eps), nn.Conv2d(dims[i - 1], dims[i], kernel_size=2, stride=2)))
        total = sum(config.depths)
        rates = [config.drop_path_rate * i / max(1, total - 1) for i in range(total)]  # transformers' linspace
        self.stages, start = nn.ModuleList(), 0
        for dim, depth in zip(dims, config.depths):
            self.stages.append(nn.Sequential(*(
                ConvNeXtBlock(dim, eps, config.layer_scale_init_value, config.hidden_act, rates[start + j])
                for j in range(depth))))
            start += depth
        self.norm = nn.LayerNorm(dims[-1], eps=eps)
        self.patch_size = 4 * 2 ** (len(dims) - 1)
        self.init_weights()

    def init_weights(self) -> None:
        reset_parameters(self, self.config.initializer_range, (nn.Linear, nn.Conv2d))

    @property
    def interpolate_mode(self) -> str:
        return "none"

    @property
    def n_blocks(self) -> int:
        """The official name: stages whose outputs `get_intermediate_layers` can return (their widths differ,
        so heads over several of them do not apply)."""
        return len(self.stages)

    def check_pixels(self, pixel_values) -> None:
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4 or not pixel_values.is_floating_point():
            got = list(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            raise ValueError(f"pixel_values must be a float tensor [batch, {self.config.num_channels}, height, width], "
                             f"got {got}")
        if pixel_values.shape[1] != self.config.num_channels or pixel_values.shape[0] == 0:
            raise ValueError(f"pixel_values must hold ≥ 1 image of {self.config.num_channels} channels, got shape "
                             f"{list(pixel_values.shape)}")
        if min(pixel_values.shape[-2:]) < self.patch_size:
            raise ValueError(f"an image of {pixel_values.shape[-2]}x{pixel_values.shape[-1]} px is smaller than the "
                             f"ConvNeXt's {self.patch_size}-px stride")

    def stage_outputs(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """[B, C_i, H/s_i, W/s_i] after every stage."""
        self.check_pixels(pixel_values)
        x, outputs = pixel_values.to(self.norm.weight.dtype), []
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
            outputs.append(x)
        return outputs

    def tokens(self, feature_map: torch.Tensor) -> torch.Tensor:
        """[B, 1 + h*w, C]: the mean-pooled map in front of its flattened positions, normalised together."""
        flat = feature_map.flatten(2).transpose(1, 2)
        return self.norm(torch.cat([flat.mean(dim=1, keepdim=True), flat], dim=1))

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **unused):
        """transformers' `DINOv3ConvNextModel.forward`: `hidden_states` are the input and every stage's map."""
        if unused.get("output_attentions"):
            raise ValueError("a ConvNeXt has no attention maps (output_attentions=True applies to the ViTs)")
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        stages = self.stage_outputs(pixel_values)
        x = self.tokens(stages[-1])
        out = BaseModelOutputWithPooling(last_hidden_state=x, pooler_output=x[:, 0],
                                         hidden_states=(pixel_values, *stages) if output_hidden_states else None)
        return out.to_tuple() if wants_tuple(self.config, return_dict) else out

    def forward_class_token(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`pooler_output` alone: the normalised mean of the last map."""
        return F.layer_norm(self.stage_outputs(pixel_values)[-1].mean(dim=(2, 3)), self.norm.normalized_shape,
                            self.norm.weight, self.norm.bias, self.norm.eps)

    def forward_features(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The official vocabulary (masks are not supported by a ConvNeXt and must be None)."""
        if masks is not None:
            raise ValueError("a ConvNeXt takes no masks")
        last = self.stage_outputs(x)[-1]
        tokens = self.tokens(last)
        return {"x_norm_clstoken": tokens[:, 0], "x_storage_tokens": tokens[:, 1:1],
                "x_norm_patchtokens": tokens[:, 1:], "x_prenorm": last, "masks": None}

    def get_intermediate_layers(self, x: torch.Tensor, n: int | list[int] = 1, reshape: bool = False,
                                return_class_token: bool = False, norm: bool = True):
        """The official ConvNeXt's: the last n stages (or those listed), each as its patch tokens (or map with
        `reshape`) and its mean-pooled token; only the last stage has a norm, as there."""
        depth = len(self.stages)
        take = list(range(depth - n, depth)) if isinstance(n, int) else [i % depth for i in n]
        if isinstance(n, int) and not 1 <= n <= depth:
            raise ValueError(f"n must be between 1 and the number of stages {depth}, got {n}")
        stages = self.stage_outputs(x)
        outputs, class_tokens = [], []
        for i in take:
            fmap = stages[i]
            pooled, patches = fmap.mean(dim=(2, 3)), fmap.flatten(2).transpose(1, 2)
            if norm and i == depth - 1:
                pooled, patches = self.norm(pooled), self.norm(patches)
            outputs.append(patches.transpose(1, 2).reshape(fmap.shape).contiguous() if reshape else patches)
            class_tokens.append(pooled)
        return tuple(zip(outputs, class_tokens)) if return_class_token else tuple(outputs)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
