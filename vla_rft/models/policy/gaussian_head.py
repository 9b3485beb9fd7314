"""Gaussian chunk head, the simpler alternative: one decoder pass gives the chunk's mean; the
stochastic policy adds one bounded Gaussian step (S = 1) around it. Same interface as the flow
head, so the policy, the trainers and GRPO take either."""

from __future__ import annotations

import torch

from vla_rft.models.policy.chunk_head import ChunkHead, ObsFeatures, masked_mean


class GaussianChunkHead(ChunkHead):
    """mean(obs) [B, K, A] from learned chunk queries; trained by mean squared error."""

    steps = 1

    def mean(self, obs: ObsFeatures, memory: torch.Tensor) -> torch.Tensor:
        queries = obs.tokens.new_zeros(obs.tokens.shape[0], *self.decoder.pos.shape[1:])
        return self.decoder(queries, obs.pooled, memory)  # [B, K, A]

    def step_mean(self, x, t, obs: ObsFeatures, memory: torch.Tensor) -> torch.Tensor:
        return self.mean(obs, memory)

    def loss(self, obs: ObsFeatures, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mean = self.mean(obs, self.decoder.memory(obs.tokens))
        return masked_mean((mean - actions) ** 2, mask)
