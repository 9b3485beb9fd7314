"""Flow-matching action head (as in VLA-RFT and pi0): a transformer over the chunk predicts the
velocity that carries noise to actions, integrated in S Euler steps.

Training (rectified flow): x_t = (1 - t) * noise + t * action, t ~ U[0, 1]. The network either
predicts the velocity (target action - noise, as pi0) or, by default, the clean chunk a_hat, the
velocity then being (a_hat - x_t) / (1 - t): the same ODE, with the loss on a_hat (velocity
loss weighted by (1 - t)^2), which trains several times faster on our data and budget.
Deployment starts at x_0 = 0, the noise distribution's mode, so the chunk is a deterministic
function of the observation; the last Euler step (t = 1 - 1/S) lands exactly on a_hat.
"""

from __future__ import annotations

import torch
from torch import nn

from vla_rft.models.policy.chunk_head import ChunkHead, ObsFeatures, masked_mean
from vla_rft.models.policy.configuration_policy import PolicyConfig
from vla_rft.models.policy.transformer import time_embedding

_MIN_REMAINING = 0.05
"""1 - t is clamped here: Euler steps stop at t = 1 - 1/S, training draws t up to 1."""


class FlowMatchingHead(ChunkHead):
    """Velocity field v(x_t, t, obs) over the chunk; step_mean = x + v / S."""

    def __init__(self, config: PolicyConfig):
        super().__init__(config)
        d = config.width
        self.steps = config.flow_steps
        self.samples = config.flow_samples
        self.predict_actions = config.flow_target == "actions"
        self.embed = nn.Linear(config.action_dim, d)
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))

    def network(self, x, t, obs: ObsFeatures, memory: torch.Tensor) -> torch.Tensor:
        """x [B, K, A] at flow time t [B] -> the clean chunk or the velocity [B, K, A]."""
        cond = obs.pooled + self.time(time_embedding(t, obs.pooled.shape[-1]))  # [B, D]
        return self.decoder(self.embed(x), cond, memory)

    def velocity(self, x, t, obs: ObsFeatures, memory: torch.Tensor) -> torch.Tensor:
        out = self.network(x, t, obs, memory)
        if self.predict_actions:  # the straight line from x_t to a_hat, reached at t = 1
            return (out - x) / (1 - t).clamp(min=_MIN_REMAINING)[:, None, None]
        return out

    def step_mean(self, x, t, obs: ObsFeatures, memory: torch.Tensor) -> torch.Tensor:
        return x + self.velocity(x, t, obs, memory) / self.steps

    def loss(self, obs: ObsFeatures, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n = self.samples
        memory = self.decoder.memory(obs.tokens).repeat_interleave(n, dim=2)
        obs, actions = obs.repeat(n), actions.repeat_interleave(n, dim=0)  # [B*n, ...]
        noise = torch.randn_like(actions)  # [B*n, K, A]
        t = torch.rand(actions.shape[0], device=actions.device)  # [B*n]
        x_t = (1 - t[:, None, None]) * noise + t[:, None, None] * actions
        out = self.network(x_t, t, obs, memory)
        target = actions if self.predict_actions else actions - noise
        err = (out - target) ** 2
        return masked_mean(err, mask.repeat_interleave(n, dim=0)).view(-1, n).mean(1)  # [B]
