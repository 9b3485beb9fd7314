"""What every action-chunk head shares: a chain of S steps from x_0 to the chunk x_S.

A head defines the mean of each step, `step_mean(x_k, t_k, obs, memory)`, and a behaviour-cloning
loss; `memory` holds the chunk decoder's keys and values of the observation tokens, computed once
per call (never cached across calls: they depend on the head's weights, which GRPO updates).
From that this base class derives, identically for every head:

  deterministic   x_{k+1} = step_mean(x_k, t_k)                         (deployment, traceable)
  sample          x_{k+1} = step_mean(x_k, t_k) + sigma_k * eps_k       eps_k ~ N(0, I)
  log_prob        sum_k log N(x_{k+1}; step_mean(x_k, t_k), sigma_k^2)  (a chain's exact density)

with t_k = k / S and sigma_k = SigmaNet(obs, t_k) bounded per dimension. The flow-matching head
takes S Euler steps of its velocity field; the Gaussian head is the one-step case whose mean
ignores x_0. The deployed chain starts at x_0 = 0, so the noise-free chain *is* the deterministic
policy. A sampled chain starts at x_0 = 0 ("zero") or at x_0 ~ N(0, I) ("noise", the released
VLA-RFT sampler, which explores from the flow's own noise distribution); either way x_0 is an
input, not a learned density, so the log-probability scores the S transitions only and a
recorded chain (x_0 included) re-scores to the same value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from vla_rft.models.policy.configuration_policy import PolicyConfig
from vla_rft.models.policy.sigma_net import SigmaNet
from vla_rft.models.policy.transformer import ChunkDecoder

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

CHAIN_STARTS = ("zero", "noise")
"""x_0 of a sampled chain: 0, or N(0, I) scaled by the sampler's noise_scale."""


def obs_tokens(config: PolicyConfig) -> int:
    """Observation tokens the chunk decoder attends to: one per camera, instruction, state,
    fused."""
    return len(config.cameras) + 3


@dataclass
class ObsFeatures:
    """The observation as the head sees it."""

    tokens: torch.Tensor
    """[B, M, D] tokens the chunk decoder attends to (images, instruction, state, fused)."""
    pooled: torch.Tensor
    """[B, D] the fused summary, conditioning every chunk token and the noise scale."""

    def repeat(self, n: int) -> ObsFeatures:
        """Each row n times in a row: [B, ...] -> [B * n, ...]."""
        return ObsFeatures(
            self.tokens.repeat_interleave(n, dim=0), self.pooled.repeat_interleave(n, dim=0)
        )


@dataclass
class ChunkSample:
    """A stochastic chunk and what is needed to recompute its log-probability."""

    actions: torch.Tensor
    """[B, K, A] normalised actions (the chain's last state)."""
    log_prob: torch.Tensor
    """[B] log-density of the whole chain under the policy that sampled it."""
    trajectory: torch.Tensor
    """[B, S + 1, K, A] the chain x_0 .. x_S; pass it to `log_prob` later."""


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Element-wise log N(x; mean, sigma^2)."""
    return -0.5 * ((x - mean) / sigma) ** 2 - sigma.log() - _LOG_SQRT_2PI


class ChunkHead(nn.Module):
    """Base of the action heads: a chunk decoder, a sigma net, and the chains built on
    `step_mean`; subclasses set `steps` and define step_mean and loss."""

    steps: int

    def __init__(self, config: PolicyConfig):
        super().__init__()
        c = config
        self.chunk_shape = (c.chunk_size, c.action_dim)
        self.decoder = ChunkDecoder(
            c.width, c.heads, c.decoder_layers, c.chunk_size, c.action_dim, obs_tokens(c)
        )
        self.sigma = SigmaNet(c.width, c.chunk_size, c.action_dim, c.sigma_min, c.sigma_max)

    def step_mean(
        self, x: torch.Tensor, t: torch.Tensor, obs: ObsFeatures, memory: torch.Tensor
    ) -> torch.Tensor:
        """Mean of x_{k+1} given x_k [B, K, A] at time t_k [B]."""
        raise NotImplementedError

    def loss(self, obs: ObsFeatures, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Behaviour-cloning loss per sample [B] on normalised actions [B, K, A], averaged over
        the chunk entries where mask [B, K] is True."""
        raise NotImplementedError

    def _start(self, obs: ObsFeatures) -> torch.Tensor:
        return obs.pooled.new_zeros(obs.pooled.shape[0], *self.chunk_shape)  # [B, K, A]

    def _time(self, k: int, obs: ObsFeatures) -> torch.Tensor:
        """t_k as a [1] tensor shared by the batch: the export folds the time MLPs to constants."""
        return obs.pooled.new_full((1,), k / self.steps)  # [1]

    def deterministic(self, obs: ObsFeatures) -> torch.Tensor:
        """The noise-free chunk [B, K, A]; the loop unrolls when traced."""
        x, memory = self._start(obs), self.decoder.memory(obs.tokens)
        for k in range(self.steps):
            x = self.step_mean(x, self._time(k, obs), obs, memory)
        return x

    def sample(
        self,
        obs: ObsFeatures,
        generator: torch.Generator | None,
        noise_scale: float = 1.0,
        start: str = "zero",
    ) -> ChunkSample:
        """A stochastic chain from x_0 as `start` says (CHAIN_STARTS). noise_scale scales every
        draw, x_0's included (0 gives the deterministic chunk); log_prob is always the density
        of the S transitions under the policy's own sigma.

        The noise is drawn on the generator's device and then moved to the observation's, so a
        CPU generator serves a model on any device and a seed gives the same chains on all."""
        if start not in CHAIN_STARTS:
            raise ValueError(f"start must be one of {CHAIN_STARTS}, got {start!r}")
        memory = self.decoder.memory(obs.tokens)
        x = self._start(obs)

        def normal() -> torch.Tensor:
            device = x.device if generator is None else generator.device
            eps = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
            return eps.to(x.device)

        if start == "noise":
            x = noise_scale * normal()
        chain, log_prob = [x], x.new_zeros(x.shape[0])
        for k in range(self.steps):
            t = self._time(k, obs)
            mean, sigma = self.step_mean(x, t, obs, memory), self.sigma(obs.pooled, t)
            x = mean + noise_scale * sigma * normal()
            log_prob = log_prob + gaussian_log_density(x, mean, sigma).sum((1, 2))
            chain.append(x)
        return ChunkSample(x, log_prob, torch.stack(chain, dim=1))

    def log_prob(self, obs: ObsFeatures, trajectory: torch.Tensor) -> torch.Tensor:
        """Log-density [B] of recorded chains [B, S + 1, K, A]; all steps in one batched pass,
        differentiable w.r.t. the head and the sigma net."""
        b, s = trajectory.shape[:2]
        if s != self.steps + 1 or trajectory.shape[2:] != self.chunk_shape:
            raise ValueError(
                f"trajectory must be [B, {self.steps + 1}, {self.chunk_shape[0]}, "
                f"{self.chunk_shape[1]}], got {list(trajectory.shape)}"
            )
        memory = self.decoder.memory(obs.tokens).repeat_interleave(self.steps, dim=2)
        x = trajectory[:, :-1].reshape(b * self.steps, *self.chunk_shape)  # [B*S, K, A]
        t = torch.arange(self.steps, device=x.device, dtype=x.dtype).repeat(b) / self.steps
        flat = obs.repeat(self.steps)
        mean, sigma = self.step_mean(x, t, flat, memory), self.sigma(flat.pooled, t)
        density = gaussian_log_density(trajectory[:, 1:].reshape_as(x), mean, sigma)
        return density.sum((1, 2)).view(b, self.steps).sum(1)


def masked_mean(err: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """err [B, K, A] averaged over A and the valid K of mask [B, K] -> [B]."""
    per_step = err.mean(-1) * mask  # [B, K]
    return per_step.sum(1) / mask.sum(1).clamp(min=1)
