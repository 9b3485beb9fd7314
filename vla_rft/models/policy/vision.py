"""The vision encoder: a small convolutional net whose whole feature map, flattened, becomes one
observation feature.

Trained from scratch with the policy: at 64x64 the reach goal is a dot of two pixels, which a
3x3 convolution at each scale keeps, and which an ImageNet backbone at this resolution would gain
little on. Two coordinate channels (CoordConv) are appended to the image so that filters can
report where they fire, and the final map is flattened (not pooled), so every cell keeps its own
weights: with a fixed camera, *where* the goal and the object are is what the actions depend on.
(Attention over the 8x8 cells as tokens learned this 2-3x more slowly; see docs/POLICY.md.)
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
        nn.GroupNorm(min(8, cout), cout),
        nn.SiLU(),
    )


class VisionEncoder(nn.Module):
    """float [B, 3, S, S] in [-1, 1] -> feature [B, width]."""

    def __init__(self, channels: tuple[int, ...], width: int, image_size: int, cell_dim: int):
        super().__init__()
        stages, cin = [], 3 + 2
        for cout in channels:
            stages += [_conv(cin, cout, stride=2), _conv(cout, cout, stride=1)]
            cin = cout
        self.net = nn.Sequential(*stages, nn.Conv2d(cin, cell_dim, 1))
        grid = image_size // 2 ** len(channels)
        self.out = nn.Sequential(nn.Linear(cell_dim * grid * grid, width), nn.LayerNorm(width))
        ramp = torch.linspace(-1, 1, image_size)
        coords = torch.stack(torch.meshgrid(ramp, ramp, indexing="ij"))  # [2, S, S]: row, column
        self.register_buffer("coords", coords[None], persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        coords = self.coords.expand(image.shape[0], -1, -1, -1)  # [B, 2, S, S]
        cells = self.net(torch.cat([image, coords], dim=1))  # [B, cell_dim, G, G]
        return self.out(cells.flatten(1))  # [B, width]
