"""Flow-matching action head (as in VLA-RFT and pi0): a transformer over the chunk predicts the
velocity that carries noise to actions, integrated in S Euler steps.

Training (rectified flow): x_t = (1 - t) * noise + t * action, target velocity action - noise,
t ~ U[0, 1], `flow_samples` draws per observation. Deployment starts at x_0 = 0, the noise
distribution's mode, so the chunk is a deterministic function of the observation.
"""

from __future__ import annotations

import torch
from torch import nn

from vla_rft.models.policy.chunk_head import ChunkHead, ObsFeatures, masked_mean
from vla_rft.models.policy.configuration_policy import PolicyConfig
from vla_rft.models.policy.transformer import time_embedding


class FlowMatchingHead(ChunkHead):
    """Velocity field v(x_t, t, obs) over the chunk; step_mean = x + v / S."""

    def __init__(self, config: PolicyConfig):
        super().__init__(config)
        d = config.width
        self.steps = config.flow_steps
        self.samples = config.flow_samples
        self.embed = nn.Linear(config.action_dim, d)
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))

    def velocity(self, x, t, obs: ObsFeatures, memory: torch.Tensor) -> torch.Tensor:
        """x [B, K, A] at flow time t [B] (or [1], shared) -> velocity [B, K, A]."""
        cond = obs.pooled + self.time(time_embedding(t, obs.pooled.shape[-1]))  # [B, D]
        return self.decoder(self.embed(x), cond, memory)

    def step_mean(self, x, t, obs: ObsFeatures, memory: torch.Tensor) -> torch.Tensor:
        return x + self.velocity(x, t, obs, memory) / self.steps

    def loss(self, obs: ObsFeatures, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n = self.samples
        memory = self.decoder.memory(obs.tokens).repeat_interleave(n, dim=2)
        obs, actions = obs.repeat(n), actions.repeat_interleave(n, dim=0)  # [B*n, ...]
        noise = torch.randn_like(actions)  # [B*n, K, A]
        t = torch.rand(actions.shape[0], device=actions.device)  # [B*n]
        x_t = (1 - t[:, None, None]) * noise + t[:, None, None] * actions
        err = (self.velocity(x_t, t, obs, memory) - (actions - noise)) ** 2
        return masked_mean(err, mask.repeat_interleave(n, dim=0)).view(-1, n).mean(1)  # [B]
