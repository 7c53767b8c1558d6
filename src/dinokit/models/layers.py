"""The building blocks of the DINOv2 ViT, one small module each, named for what they are."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .activations import activation
from .rope import apply_rope


class PatchEmbed(nn.Module):
    """Non-overlapping patches → tokens. Sides that are not multiples of the patch size are floored
    (the right/bottom remainder is dropped), as transformers does; the official code asserts instead."""

    def __init__(self, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # pixel values follow the weights' dtype (a .half() model takes float32 input, as in transformers)
        return self.proj(x.to(self.proj.weight.dtype)).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused QKV projection ([Q; K; V] rows, as the official weights).

    The default path is `scaled_dot_product_attention`; the explicit path runs only when the attention
    weights are asked for or a head mask is given. Dropout (training only) acts on the attention
    probabilities, as in transformers; the projection's output is not dropped (transformers ≥ 5).
    `rope` (DINOv3): (sin, cos) that rotate the patch queries and keys. `mask_k_bias` (DINOv3): the key
    part of the QKV bias never counts, as the official `bias_mask` makes it (loaders also zero it).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, causal: bool = False,
                 proj_bias: bool = True, mask_k_bias: bool = False):
        super().__init__()
        self.num_heads, self.causal, self.mask_k_bias = num_heads, causal, mask_k_bias and qkv_bias
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.attn_drop = attn_drop

    def project_qkv(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, 3·dim]: Q, K, V, the key bias taken out again (it enters and leaves: it never counts, and its
        gradient is 0)."""
        qkv = self.qkv(x)
        if not self.mask_k_bias:
            return qkv
        dim = x.shape[-1]
        return qkv - F.pad(self.qkv.bias[dim:2 * dim], (dim, dim))

    def heads(self, qkv: torch.Tensor, rope) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v as [B, heads, N, head_dim], the patch queries and keys rotated by `rope`."""
        B, N, _ = qkv.shape
        q, k, v = qkv.reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return q, k, v

    def forward(self, x: torch.Tensor, need_weights: bool = False, head_mask: torch.Tensor | None = None,
                queries: int | None = None, rope: tuple[torch.Tensor, torch.Tensor] | None = None):
        """`queries=n`: only the first n tokens ask (all tokens still answer); the output has n tokens."""
        B, N, C = x.shape
        q, k, v = self.heads(self.project_qkv(x), rope)
        if queries is not None:
            q, N = q[:, :, :queries], queries
        drop = self.attn_drop if self.training else 0.0
        weights = None
        if need_weights or head_mask is not None:
            weights = (q * self.scale) @ k.transpose(-2, -1)
            if self.causal:  # token i reads tokens 0..i (a text transformer)
                weights = weights.masked_fill(torch.ones(N, k.shape[2], dtype=torch.bool, device=x.device).triu(1),
                                              float("-inf"))
            weights = weights.softmax(dim=-1)
            weights = F.dropout(weights, drop, self.training)
            if head_mask is not None:
                weights = weights * head_mask
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=self.causal)
        out = self.proj(out.transpose(1, 2).reshape(B, N, C))
        return out, weights


class Mlp(nn.Module):
    """fc1 → activation (`hidden_act`, transformers' table) → fc2; no dropout inside, as transformers."""

    def __init__(self, dim: int, hidden: int, act: str = "gelu", bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = activation(act)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLUFFN(nn.Module):
    """silu(x1) * x2, then back: the fused form of ViT-g (one projection `w12` to [x1; x2]) or the split
    form of dino.txt's vision head and DINOv3 (`w1`, `w2`), as their checkpoints store them."""

    def __init__(self, dim: int, hidden: int, fused: bool = True, bias: bool = True, act: str = "silu"):
        super().__init__()
        self.act = activation(act)
        if fused:
            self.w12 = nn.Linear(dim, 2 * hidden, bias=bias)
        else:
            self.w1, self.w2 = nn.Linear(dim, hidden, bias=bias), nn.Linear(dim, hidden, bias=bias)
        self.w3 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1) if hasattr(self, "w12") else (self.w1(x), self.w2(x))
        return self.w3(self.act(x1) * x2)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample, scaling the kept ones."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def _residual_on_subset(x: torch.Tensor, residual, drop_rate: float) -> torch.Tensor:
    """Stochastic depth as the official training does above a rate of 0.1: the branch runs on a random
    (1 − rate) share of the batch only, scaled up, and is skipped for the rest — the same expectation as
    per-sample drop path, for less compute."""
    b = x.shape[0]
    keep = max(int(b * (1 - drop_rate)), 1)
    subset = torch.randperm(b, device=x.device)[:keep]
    out = residual(x[subset])
    return torch.index_add(x.flatten(1), 0, subset, out.to(x.dtype).flatten(1), alpha=b / keep).view_as(x)


class Block(nn.Module):
    """x + ls1(attn(norm1(x))); x + ls2(mlp(norm2(x)))."""

    def __init__(self, dim, num_heads, mlp_hidden, *, swiglu=False, qkv_bias=True, layerscale=1.0,
                 drop_path=0.0, eps=1e-6, attn_drop=0.0, act="gelu", causal=False, swiglu_fused=True,
                 proj_bias=True, mlp_bias=True, mask_k_bias=False, swiglu_act=False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, causal=causal,
                              proj_bias=proj_bias, mask_k_bias=mask_k_bias)
        self.ls1 = LayerScale(dim, layerscale) if layerscale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = (SwiGLUFFN(dim, mlp_hidden, swiglu_fused, bias=mlp_bias, act=act if swiglu_act else "silu") if swiglu
                    else Mlp(dim, mlp_hidden, act, bias=mlp_bias))
        self.ls2 = LayerScale(dim, layerscale) if layerscale else nn.Identity()
        self.drop_path = DropPath(drop_path)

    def forward(self, x, need_weights: bool = False, head_mask: torch.Tensor | None = None, rope=None):
        if self.training and self.drop_path.p > 0.1 and not need_weights and head_mask is None:
            x = _residual_on_subset(x, lambda y: self.ls1(self.attn(self.norm1(y), rope=rope)[0]), self.drop_path.p)
            return _residual_on_subset(x, lambda y: self.ls2(self.mlp(self.norm2(y))), self.drop_path.p), None
        attn, weights = self.attn(self.norm1(x), need_weights=need_weights, head_mask=head_mask, rope=rope)
        x = x + self.drop_path(self.ls1(attn))
        x = x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
        return x, weights

    def forward_first_token(self, x: torch.Tensor, rope=None) -> torch.Tensor:
        """The block's output for token 0 alone, [B, 1, D]: its attention still reads every token, but only
        the CLS token asks, and only it goes through the MLP — the last block's work for `pooler_output`."""
        cls = x[:, :1] + self.drop_path(self.ls1(self.attn(self.norm1(x), queries=1, rope=rope)[0]))
        return cls + self.drop_path(self.ls2(self.mlp(self.norm2(cls))))


def reset_parameters(module: nn.Module, std: float, layers: tuple[type, ...] = (nn.Linear,)) -> None:
    """transformers' initialisation of a DINO model: truncated-normal weights of `layers` (with zero biases),
    LayerNorms to identity."""
    for m in module.modules():
        if isinstance(m, layers):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
