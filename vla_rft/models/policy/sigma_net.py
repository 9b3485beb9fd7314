"""The stochastic sampler's noise scale: a small MLP, bounded per action dimension.

sigma(obs, t) = sigma_min + (sigma_max - sigma_min) * sigmoid(MLP(pooled obs + time features))

Bounded so that GRPO can neither collapse exploration to zero (the log-density would blow up)
nor drown the velocity field in noise. It starts at the middle of the range (zero-initialised
last layer) and is trained only by reinforcement fine-tuning; behaviour cloning leaves it alone.
"""

from __future__ import annotations

import torch
from torch import nn

from vla_rft.models.policy.transformer import time_embedding


class SigmaNet(nn.Module):
    """(pooled obs [B, D], t [B] or [1]) -> sigma [B, K, A] in [sigma_min, sigma_max]."""

    def __init__(self, width: int, chunk_size: int, action_dim: int, lo: float, hi: float):
        super().__init__()
        self.width, self.shape, self.lo, self.hi = width, (chunk_size, action_dim), lo, hi
        self.net = nn.Sequential(
            nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, chunk_size * action_dim)
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, pooled: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        time = time_embedding(t, self.width).expand(pooled.shape[0], -1)  # [B, D]
        h = torch.cat([pooled, time], dim=-1)  # [B, 2D]
        unit = torch.sigmoid(self.net(h)).view(-1, *self.shape)  # [B, K, A] in (0, 1)
        return self.lo + (self.hi - self.lo) * unit
