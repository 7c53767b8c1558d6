"""The official linear segmentation probe (mmsegmentation's BNHead as DINOv2 uses it): the patch features of
the last block (or of four blocks, concatenated after resizing to the first one's grid), batch norm, and a
1×1 convolution to class logits at patch resolution; bilinear upsampling to the image happens outside."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LinearSegmentationHead(nn.Module):
    def __init__(self, embed_dim: int, num_classes: int, layers: int = 1):
        super().__init__()
        self.layers, self.num_classes = layers, num_classes
        self.bn = nn.BatchNorm2d(embed_dim * layers)
        self.conv_seg = nn.Conv2d(embed_dim * layers, num_classes, kernel_size=1)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        size = maps[0].shape[2:]
        x = torch.cat([m if m.shape[2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                       for m in maps], 1)
        return self.conv_seg(self.bn(x))
