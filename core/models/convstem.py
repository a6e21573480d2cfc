"""A convolutional patch embedding for small ViTs trained from scratch (the demo model).

Three stride-2 3x3 convolutions and a 1x1 projection replace the single ``patch x patch`` convolution
("early convolutions help transformers see better"): a ViT trained from scratch on little data learns
shapes much faster with them. The output is the usual ``(B, gh * gw, D)`` token sequence, row-major, so
everything downstream (prefix tokens, position embedding, PHS, ROI mapping) is unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class ConvStem(nn.Module):
    """Patch embedding ``(B, 3, S, S) -> (B, (S/8)^2, D)`` with a stride-8 convolutional stem.

    Takes the keyword arguments timm's ``VisionTransformer`` passes to ``embed_layer`` and exposes the
    attributes the rest of timm and PHS read (``img_size``, ``patch_size``, ``grid_size``, ``num_patches``).

    Args:
        img_size: square input side ``S`` (a multiple of 8).
        patch_size: must be 8 (three stride-2 convolutions).
        in_chans: input channels.
        embed_dim: token width ``D``.
    """

    def __init__(
        self,
        img_size: int = 96,
        patch_size: int = 8,
        in_chans: int = 3,
        embed_dim: int = 128,
        bias: bool = True,
        **_: object,
    ) -> None:
        super().__init__()
        if patch_size != 8 or img_size % 8:
            raise ValueError("ConvStem needs patch_size 8 and an input side divisible by 8.")
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.flatten = True
        self.output_fmt = "NLC"
        widths = (in_chans, embed_dim // 4, embed_dim // 2, embed_dim)
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU()]
        self.stem = nn.Sequential(*layers)
        self.proj = nn.Conv2d(embed_dim, embed_dim, 1, bias=bias)
        self.norm = nn.Identity()

    def feat_ratio(self, as_scalar: bool = True) -> int:
        """Reduction factor of the stem (8)."""
        return self.patch_size[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S) -> (B, gh * gw, D)``."""
        return self.proj(self.stem(x)).flatten(2).transpose(1, 2)
