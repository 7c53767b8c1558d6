"""The DINOv2 Vision Transformer (and the base it shares with DINOv3's): pure `nn.Module`s, tensors in, tensors out.

Token order is [CLS, registers, patches]; registers get no position embedding; masked patches are
replaced by the mask token before position embeddings are added (iBOT). Parameter names follow the
official checkpoints; other layouts are translated in `dinokit.weights`.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import Dinov2Config
from .layers import Block, PatchEmbed, reset_parameters
from .outputs import BaseModelOutputWithPooling, wants_tuple
from .pos_embed import interpolate_patch_pos_embed, needs_interpolation


class VisionTransformerBase(nn.Module):
    """What the DINOv2 and DINOv3 ViTs share: the transformers, official and fast-path forwards over
    `prepare_tokens` → blocks (with `rope_for`'s rotation, if any) → `norm`. A subclass builds `blocks`,
    `norm`, `patch_size`, `num_register_tokens` and says how tokens are made."""

    config: Dinov2Config
    register_tokens_key = "x_norm_regtokens"  # forward_features' name for the normalised registers
    chunked_blocks = False  # the official attribute beside `n_blocks` (FSDP block chunks are unchunked on load)

    @property
    def num_prefix_tokens(self) -> int:
        return 1 + self.num_register_tokens

    @property
    def n_blocks(self) -> int:
        """The official name of the depth: blocks whose outputs `get_intermediate_layers` can return."""
        return len(self.blocks)

    def rope_for(self, image_hw: tuple[int, int]):
        """(sin, cos) of the rotary position embedding for an image of (H, W) pixels; None without RoPE."""
        return None

    def prepare_tokens(self, pixel_values: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def check_pixels(self, pixel_values) -> None:
        """A ValueError naming what is wrong with an input, instead of an error deep inside a layer."""
        if not isinstance(pixel_values, torch.Tensor):
            raise ValueError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
        if pixel_values.dim() != 4:
            raise ValueError(f"pixel_values must be [batch, {self.config.num_channels}, height, width], "
                             f"got {pixel_values.dim()}-D shape {list(pixel_values.shape)}")
        if pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(f"pixel_values must have {self.config.num_channels} channels (dimension 1), got "
                             f"shape {list(pixel_values.shape)}")
        if not pixel_values.is_floating_point():
            raise ValueError(f"pixel_values must be a floating-point tensor (normalised pixels), got "
                             f"{pixel_values.dtype}; a processor or dinokit.data gives the right input")
        if pixel_values.shape[0] == 0:
            raise ValueError("pixel_values holds no image (batch size 0)")
        H, W = pixel_values.shape[-2:]
        if H < self.patch_size or W < self.patch_size:
            raise ValueError(f"an image of {H}x{W} px is smaller than one {self.patch_size}-px patch")

    def _patch_and_class_tokens(self, config) -> None:
        """What every ViT starts with: its config, patch size, register count, patch embedding and CLS token."""
        self.config = config
        self.patch_size = config.patch_size
        self.num_register_tokens = config.num_register_tokens
        self.patch_embed = PatchEmbed(config.patch_size, config.num_channels, config.hidden_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))

    def embed_patches(self, pixel_values: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
        """[B, h*w, D] patch tokens, masked ones replaced by the mask token (iBOT)."""
        x = self.patch_embed(pixel_values)
        if masks is not None:
            if self.mask_token is None:
                raise ValueError("bool_masked_pos needs a mask token, and this model has none (use_mask_token=False)")
            x = torch.where(masks.reshape(x.shape[0], -1, 1), self.mask_token.to(x.dtype).reshape(1, 1, -1), x)
        return x

    # --- transformers vocabulary ---------------------------------------------------------------------
    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ):
        """transformers' `Dinov2Model.forward`; the output flags left as None follow the config."""
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        head_masks = self._head_masks(head_mask)
        x = self.prepare_tokens(pixel_values, bool_masked_pos)
        rope = self.rope_for(pixel_values.shape[-2:])
        hidden_states = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        if hidden_states is None and attentions is None and head_mask is None:
            x = self.run_blocks(x, rope=rope)
        else:
            for blk, mask in zip(self.blocks, head_masks):
                x, weights = blk(x, need_weights=bool(output_attentions), head_mask=mask, rope=rope)
                if hidden_states is not None:
                    hidden_states.append(x)
                if attentions is not None:
                    attentions.append(weights)
        x = self.norm(x)
        out = BaseModelOutputWithPooling(
            last_hidden_state=x,
            pooler_output=x[:, 0],
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
            attentions=tuple(attentions) if attentions is not None else None,
        )
        return out.to_tuple() if wants_tuple(config, return_dict) else out

    def run_blocks(self, x: torch.Tensor, class_token_only: bool = False, rope=None) -> torch.Tensor:
        """Tokens through every block; `class_token_only`: the last block computes token 0 alone, [B, 1, D]."""
        if not len(self.blocks):
            return x[:, :1] if class_token_only else x
        *body, last = self.blocks
        for blk in body:
            x, _ = blk(x, rope=rope)
        if class_token_only:
            return last.forward_first_token(x, rope=rope)
        return last(x, rope=rope)[0]

    def forward_class_token(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`pooler_output` alone, [B, D]: the normalised final CLS token, without the last block's work on
        the patch tokens (its attention from them, its projection and MLP for them). The same numbers as
        `forward(...).pooler_output` to float32 rounding."""
        tokens, rope = self.prepare_tokens(pixel_values), self.rope_for(pixel_values.shape[-2:])
        return self.norm(self.run_blocks(tokens, class_token_only=True, rope=rope))[:, 0]

    def _head_masks(self, head_mask: torch.Tensor | None) -> list:
        """transformers' head_mask: [heads] for every layer or [layers, heads]; 1 keeps a head, 0 masks it."""
        depth = len(self.blocks)
        if head_mask is None:
            return [None] * depth
        head_mask = torch.as_tensor(head_mask)
        if head_mask.dim() == 1:
            head_mask = head_mask.expand(depth, -1)
        if head_mask.shape != (depth, self.config.num_attention_heads):
            raise ValueError(
                f"head_mask must have shape [{self.config.num_attention_heads}] or "
                f"[{depth}, {self.config.num_attention_heads}], got {list(head_mask.shape)}"
            )
        return [m.view(1, -1, 1, 1) for m in head_mask]

    # --- official vocabulary -------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        rope = self.rope_for(x.shape[-2:])
        x = self.prepare_tokens(x, masks)
        for blk in self.blocks:
            x, _ = blk(x, rope=rope)
        x_norm = self.norm(x)
        r = self.num_prefix_tokens
        return {
            "x_norm_clstoken": x_norm[:, 0],
            self.register_tokens_key: x_norm[:, 1:r],
            "x_norm_patchtokens": x_norm[:, r:],
            "x_prenorm": x,
            "masks": masks,
        }

    def get_intermediate_layers(self, x: torch.Tensor, n: int | list[int] = 1, reshape: bool = False,
                                return_class_token: bool = False, norm: bool = True, return_extra_tokens: bool = False):
        """Outputs of the last `n` blocks (or of the blocks listed in `n`), oldest first, as the official code;
        `return_extra_tokens` (DINOv3's official signature) adds the register tokens after the class token."""
        depth = len(self.blocks)
        if isinstance(n, int):
            if not 1 <= n <= depth:
                raise ValueError(f"n must be between 1 and the depth {depth} (the last n blocks), got {n}")
            take = set(range(depth - n, depth))
        else:
            wrong = [i for i in n if not -depth <= i < depth]
            if wrong or not n:
                raise ValueError(f"n lists blocks {list(n)}; this model has blocks 0…{depth - 1} (or -{depth}…-1)")
            take = {i % depth for i in n}
        B, _, H, W = x.shape
        tokens, rope = self.prepare_tokens(x), self.rope_for((H, W))
        outputs = []
        for i, blk in enumerate(self.blocks):
            tokens, _ = blk(tokens, rope=rope)
            if i in take:
                outputs.append(tokens)
            if len(outputs) == len(take):
                break
        if norm:
            outputs = [self.norm(o) for o in outputs]
        class_tokens = [o[:, 0] for o in outputs]
        extra_tokens = [o[:, 1:self.num_prefix_tokens] for o in outputs]
        outputs = [o[:, self.num_prefix_tokens:] for o in outputs]
        if reshape:
            h, w = H // self.patch_size, W // self.patch_size
            outputs = [o.reshape(B, h, w, -1).permute(0, 3, 1, 2).contiguous() for o in outputs]
        parts = [outputs] + ([class_tokens] if return_class_token else []) + ([extra_tokens] if return_extra_tokens else [])
        return tuple(zip(*parts)) if len(parts) > 1 else tuple(outputs)

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False,
                              return_prefix_tokens: bool = False):
        """timm's vocabulary: block outputs (an int n: the last n blocks; a list: those blocks), as NCHW maps
        or NLC tokens, optionally with the prefix (CLS, registers) tokens; plus the final normed tokens."""
        depth = len(self.blocks)
        take = list(range(depth - indices, depth)) if isinstance(indices, int) else (
            [i % depth for i in indices] if indices is not None else list(range(depth)))
        B, _, H, W = x.shape
        h, w = H // self.patch_size, W // self.patch_size
        tokens, rope = self.prepare_tokens(x), self.rope_for((H, W))
        intermediates = []
        for i, blk in enumerate(self.blocks):
            tokens, _ = blk(tokens, rope=rope)
            if i in take:
                y = self.norm(tokens) if norm else tokens
                prefix, patches = y[:, :self.num_prefix_tokens], y[:, self.num_prefix_tokens:]
                if output_fmt == "NCHW":
                    patches = patches.reshape(B, h, w, -1).permute(0, 3, 1, 2).contiguous()
                intermediates.append((patches, prefix) if return_prefix_tokens else patches)
        if intermediates_only:
            return intermediates
        return self.norm(tokens), intermediates

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

class DinoVisionTransformer(VisionTransformerBase):
    """The DINOv2 ViT: learned position embeddings, interpolated to the input's patch grid."""

    def __init__(self, config: Dinov2Config):
        super().__init__()
        self._patch_and_class_tokens(config)
        dim = config.hidden_size
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.grid_size**2, dim))
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, config.num_register_tokens, dim)) if config.num_register_tokens else None
        )
        # transformers' use_mask_token; register models always carry one (their config has no such switch)
        keep_mask = config.use_mask_token or config.num_register_tokens > 0
        self.mask_token = nn.Parameter(torch.zeros(1, dim)) if keep_mask else None
        self.dropout = nn.Dropout(config.hidden_dropout_prob)  # on the embeddings, where transformers has it
        self.blocks = nn.ModuleList(
            Block(
                dim, config.num_attention_heads, config.mlp_hidden_size,
                swiglu=config.use_swiglu_ffn, qkv_bias=config.qkv_bias, layerscale=config.layerscale_value,
                drop_path=config.drop_path_rate, eps=config.layer_norm_eps,
                attn_drop=config.attention_probs_dropout_prob, act=config.hidden_act,
            )
            for _ in range(config.num_hidden_layers)
        )
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.init_weights()

    def init_weights(self) -> None:
        std = self.config.initializer_range
        nn.init.trunc_normal_(self.pos_embed, std=std)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        reset_parameters(self, std)

    @property
    def interpolate_mode(self) -> str:
        return self.config.interpolate_mode or "official"

    # --- embeddings --------------------------------------------------------------------------------
    def position_embeddings(self, image_hw: tuple[int, int]) -> torch.Tensor:
        """[1, 1 + h*w, D] for an image of (H, W) pixels."""
        grid_hw = (image_hw[0] // self.patch_size, image_hw[1] // self.patch_size)
        mode = self.interpolate_mode
        side = self.config.grid_size
        if not needs_interpolation(side, grid_hw, image_hw, mode):
            return self.pos_embed
        patch_pos = interpolate_patch_pos_embed(
            self.pos_embed[:, 1:], side, grid_hw, mode, registers=self.num_register_tokens > 0
        )
        return torch.cat((self.pos_embed[:, :1], patch_pos), dim=1)

    def prepare_tokens(self, pixel_values: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        self.check_pixels(pixel_values)
        B, _, H, W = pixel_values.shape
        x = self.embed_patches(pixel_values, masks)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + self.position_embeddings((H, W))
        if self.register_tokens is not None:
            x = torch.cat((x[:, :1], self.register_tokens.expand(B, -1, -1), x[:, 1:]), dim=1)
        return self.dropout(x)
