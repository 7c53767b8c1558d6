"""From the model's tokens to one vector per image."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

POOLINGS = ("cls", "mean", "cls+mean")


def pool(last_hidden_state: torch.Tensor, num_prefix_tokens: int, pooling: str = "cls",
         normalize: bool = False) -> torch.Tensor:
    """cls: the CLS token after the final norm (`pooler_output`); mean: mean of the patch tokens (registers
    excluded); cls+mean: both concatenated, the input of transformers' classification head."""
    import torch  # here, so that the command line reads POOLINGS without loading torch
    import torch.nn.functional as F

    cls = last_hidden_state[:, 0]
    if pooling == "cls":
        out = cls
    elif pooling in ("mean", "cls+mean"):
        mean = last_hidden_state[:, num_prefix_tokens:].mean(dim=1)
        out = mean if pooling == "mean" else torch.cat([cls, mean], dim=-1)
    else:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    return F.normalize(out, dim=-1) if normalize else out
