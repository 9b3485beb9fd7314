"""Pre-norm transformer blocks shared by the observation encoder and the chunk decoder.

Written out rather than taken from nn.Transformer*: no fast paths that change numerics between
train and eval, and every op traces to ONNX (scaled_dot_product_attention, no masks needed).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention of `queries` tokens x [B, N, D] over `keys` tokens of a context.

    The token counts are fixed by the config and given here, so that every reshape uses
    constants and only the batch is dynamic: the exported graph then needs no shape arithmetic
    (it was a third of ONNX Runtime's nodes)."""

    def __init__(self, width: int, heads: int, queries: int, keys: int):
        super().__init__()
        self.heads, self.head_dim, self.queries, self.keys = heads, width // heads, queries, keys
        self.scale = self.head_dim**-0.5
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def keys_values(self, context: torch.Tensor) -> torch.Tensor:
        """context [B, M, D] -> stacked keys and values [2, B, h, M, D/h]."""
        kv = self.kv(context).reshape(-1, self.keys, 2, self.heads, self.head_dim)
        return kv.permute(2, 0, 3, 1, 4)

    def forward(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        n, h, e = self.queries, self.heads, self.head_dim
        q = self.q(x).reshape(-1, n, h, e).transpose(1, 2)  # [B, h, N, D/h]
        y = F.scaled_dot_product_attention(q, kv[0], kv[1], scale=self.scale)  # [B, h, N, D/h]
        return self.out(y.transpose(1, 2).reshape(-1, n, h * e))  # [B, N, D]


class Block(nn.Module):
    """x + SelfAttn(x) [+ CrossAttn(x, memory)] + MLP(x), each on a LayerNorm'd input; x has
    `tokens` tokens and the memory `memory_tokens` (0: no cross-attention)."""

    def __init__(self, width: int, heads: int, tokens: int, memory_tokens: int = 0):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, tokens, tokens)
        cross = memory_tokens > 0
        self.cross = Attention(width, heads, tokens, memory_tokens) if cross else None
        self.norm_x = nn.LayerNorm(width) if cross else None
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        """memory: this block's cross-attention keys and values (Attention.keys_values)."""
        y = self.norm1(x)
        x = x + self.attn(y, self.attn.keys_values(y))
        if self.cross is not None:
            x = x + self.cross(self.norm_x(x), memory)
        return x + self.mlp(self.norm2(x))


def time_embedding(t: torch.Tensor, width: int) -> torch.Tensor:
    """Sinusoidal features of flow time t [B] in [0, 1] -> [B, width]."""
    half = width // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
    angles = 1000.0 * t[:, None] * freqs[None]  # [B, half]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ChunkDecoder(nn.Module):
    """Chunk tokens [B, K, D] (plus a conditioning vector [B, D]) attend to the observation
    tokens; returns [B, K, out_dim].

    The observation's keys and values are computed once (`memory`) and reused by every Euler
    step and every (noise, time) draw: they are most of the decoder's cost.
    """

    def __init__(
        self, width: int, heads: int, layers: int, chunk_size: int, out_dim: int, memory_tokens: int
    ):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, chunk_size, width) * 0.02)
        self.blocks = nn.ModuleList(
            Block(width, heads, chunk_size, memory_tokens) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, out_dim)

    def memory(self, obs_tokens: torch.Tensor) -> torch.Tensor:
        """obs tokens [B, M, D] -> keys and values of every layer [L, 2, B, h, M, D/h]."""
        return torch.stack([block.cross.keys_values(obs_tokens) for block in self.blocks])

    def forward(self, tokens: torch.Tensor, cond: torch.Tensor, memory: torch.Tensor):
        x = tokens + self.pos + cond[:, None]  # [B, K, D]
        for block, kv in zip(self.blocks, memory, strict=True):
            x = block(x, kv)
        return self.out(self.norm(x))  # [B, K, out_dim]
