"""Depth heads on DINOv2 block outputs: the official linear head (classification into uniform depth bins)
and DPT (Ranftl et al., 2021), with transformers' module names so their state dicts load as they are.

Both take a list of (patch map [B, D, h, w], CLS token [B, D]) pairs, as `get_intermediate_layers(...,
reshape=True, return_class_token=True)` gives them, and return depth [B, 1, H', W'] in metres (before the
final clamping and resizing to the image, which `dense.DepthModel` does)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Features = list[tuple[torch.Tensor, torch.Tensor]]


def center_pad(pixel_values: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad H and W up to a multiple, split evenly (the extra pixel after), as the official depthers do."""
    H, W = pixel_values.shape[-2:]
    ph, pw = -H % multiple, -W % multiple
    return F.pad(pixel_values, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)) if ph or pw else pixel_values


class LinearDepthHead(nn.Module):
    """The official linear depth probe: each block's patch features concatenated with its broadcast CLS token,
    resized ×upsample (bilinear), concatenated over blocks, a 1×1 convolution to n_bins logits; depth is the
    bin centres (uniform in [min_depth, max_depth]) weighted by relu(logits) + 0.1, normalised. The official
    hub code defines a batch norm here but does not apply it; neither does dinokit."""

    def __init__(self, embed_dim: int, layers: int = 4, n_bins: int = 256, min_depth: float = 0.001,
                 max_depth: float = 10.0, upsample: int = 4):
        super().__init__()
        self.layers, self.n_bins, self.upsample = layers, n_bins, upsample
        self.min_depth, self.max_depth = min_depth, max_depth
        self.conv_depth = nn.Conv2d(2 * embed_dim * layers, n_bins, kernel_size=1)

    def features(self, features: Features) -> torch.Tensor:
        maps = [torch.cat((x, cls[:, :, None, None].expand_as(x)), 1) for x, cls in features]
        size = [s * self.upsample for s in maps[0].shape[2:]]
        return torch.cat([F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps], 1)

    def forward(self, features: Features) -> torch.Tensor:
        weights = torch.relu(self.conv_depth(self.features(features))) + 0.1
        weights = weights / weights.sum(dim=1, keepdim=True)
        bins = torch.linspace(self.min_depth, self.max_depth, self.n_bins, device=weights.device, dtype=weights.dtype)
        return torch.einsum("bkhw,k->bhw", weights, bins).unsqueeze(1)


class _ReassembleLayer(nn.Module):
    def __init__(self, embed_dim: int, channels: int, factor: float):
        super().__init__()
        self.projection = nn.Conv2d(embed_dim, channels, kernel_size=1)
        if factor > 1:
            self.resize = nn.ConvTranspose2d(channels, channels, kernel_size=int(factor), stride=int(factor))
        elif factor == 1:
            self.resize = nn.Identity()
        else:
            self.resize = nn.Conv2d(channels, channels, kernel_size=3, stride=int(1 / factor), padding=1)


class _Reassemble(nn.Module):
    """Tokens → maps at four scales: readout projection of [patch, CLS], 1×1 conv, resampling."""

    def __init__(self, embed_dim: int, channels: list[int], factors: list[float]):
        super().__init__()
        self.layers = nn.ModuleList(_ReassembleLayer(embed_dim, c, f) for c, f in zip(channels, factors))
        self.readout_projects = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * embed_dim, embed_dim), nn.GELU()) for _ in channels)

    def forward(self, features: Features) -> list[torch.Tensor]:
        out = []
        for (x, cls), layer, readout in zip(features, self.layers, self.readout_projects):
            B, D, h, w = x.shape
            tokens = x.flatten(2).transpose(1, 2)
            tokens = readout(torch.cat((tokens, cls[:, None].expand_as(tokens)), -1))
            out.append(layer.resize(layer.projection(tokens.transpose(1, 2).reshape(B, D, h, w))))
        return out


class _ResidualConvUnit(nn.Module):
    def __init__(self, channels: int, bias: bool):
        super().__init__()
        self.convolution1 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.convolution2 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)

    def forward(self, x):
        return x + self.convolution2(torch.relu(self.convolution1(torch.relu(x))))


class _FusionLayer(nn.Module):
    """The first layer (the coarsest map) has no skip input, hence no residual_layer1 (as officially;
    transformers builds one it never uses, and its files' copy is dropped on loading)."""

    def __init__(self, channels: int, bias: bool, skip: bool = True):
        super().__init__()
        self.projection = nn.Conv2d(channels, channels, kernel_size=1)
        if skip:
            self.residual_layer1 = _ResidualConvUnit(channels, bias)
        self.residual_layer2 = _ResidualConvUnit(channels, bias)

    def forward(self, x, skip=None):
        if skip is not None:
            if skip.shape != x.shape:
                skip = F.interpolate(skip, size=x.shape[2:], mode="bilinear", align_corners=False)
            x = x + self.residual_layer1(skip)
        x = F.interpolate(self.residual_layer2(x), scale_factor=2, mode="bilinear", align_corners=True)
        return self.projection(x)


class _Neck(nn.Module):
    def __init__(self, embed_dim, channels, factors, fusion_channels, bias):
        super().__init__()
        self.reassemble_stage = _Reassemble(embed_dim, channels, factors)
        self.convs = nn.ModuleList(nn.Conv2d(c, fusion_channels, 3, padding=1, bias=False) for c in channels)
        self.fusion_stage = nn.Module()
        self.fusion_stage.layers = nn.ModuleList(_FusionLayer(fusion_channels, bias, skip=i > 0)
                                                 for i in range(len(channels)))

    def forward(self, features: Features) -> torch.Tensor:
        maps = [conv(m) for conv, m in zip(self.convs, self.reassemble_stage(features))]
        out = None
        for layer, skip in zip(self.fusion_stage.layers, maps[::-1]):
            out = layer(skip) if out is None else layer(out, skip)
        return out


class _DepthOutput(nn.Module):
    def __init__(self, channels: int, add_projection: bool):
        super().__init__()
        self.projection = nn.Conv2d(channels, channels, 3, padding=1) if add_projection else None
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels // 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(channels // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 1, 1), nn.ReLU())

    def forward(self, x):
        if self.projection is not None:
            x = torch.relu(self.projection(x))
        return self.head(x)


class DPTDepthHead(nn.Module):
    """DPT: reassemble four blocks into a pyramid (×4, ×2, ×1, ×½), fuse coarse to fine, predict depth at
    8× the patch grid (×16 after the head's upsampling: 224 px in → 256 px out). min_depth is added to the
    output as the official head does (transformers' port leaves it out: set 0 for its numbers)."""

    def __init__(self, embed_dim: int, neck_hidden_sizes: list[int] | None = None, fusion_hidden_size: int = 256,
                 reassemble_factors: tuple = (4, 2, 1, 0.5), add_projection: bool = True, bias: bool = False,
                 min_depth: float = 0.001, max_depth: float = 10.0):
        super().__init__()
        sizes = neck_hidden_sizes or [embed_dim // 2 ** (3 - i) for i in range(4)]
        self.min_depth, self.max_depth = min_depth, max_depth
        self.neck = _Neck(embed_dim, sizes, list(reassemble_factors), fusion_hidden_size, bias)
        self.head = _DepthOutput(fusion_hidden_size, add_projection)

    def forward(self, features: Features) -> torch.Tensor:
        return self.head(self.neck(features)) + self.min_depth
