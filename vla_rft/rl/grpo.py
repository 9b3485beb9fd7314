"""Group Relative Policy Optimisation (Shao et al. 2024) as used by VLA-RFT.

No value network: each start state's G sampled action chunks are scored against one another.
"""

from __future__ import annotations

import math

import torch


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(r - group mean) / (group std + eps): rewards [B, G] -> advantages [B, G].

    std is the unbiased sample std over the G members of a group (torch's default, as in the
    reference GRPO code); a group whose members all score the same gets advantages of 0.
    """
    if rewards.ndim != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be [B, G] with G >= 2, got {list(rewards.shape)}")
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)
    return (rewards - mean) / (std + eps)


def clipped_policy_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    clip: float = 0.2,
    dual_clip: float | None = 3.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate with dual clipping (Ye et al. 2020), to be minimised.

    log_prob, old_log_prob, advantages: [N] -> (loss scalar, stats).
    Per sample: l = max(-A r, -A clip(r, 1-clip, 1+clip)) with r = exp(log_prob - old_log_prob);
    for A < 0 the loss is further capped at -A * dual_clip, so one very unlikely old sample
    cannot dominate the update. stats: 'clip_fraction' (share where the ratio clip bound),
    'dual_clip_fraction' (share where the dual cap bound),
    'approx_kl' (mean of the k3 estimate of KL(old || new)), 'ratio_mean'.
    """
    if not log_prob.shape == old_log_prob.shape == advantages.shape:
        raise ValueError(
            f"shapes differ: {list(log_prob.shape)}, {list(old_log_prob.shape)}, "
            f"{list(advantages.shape)}"
        )
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    log_ratio = log_prob - old_log_prob
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    per_sample = torch.maximum(unclipped, clipped)
    dual_bound = torch.zeros_like(per_sample, dtype=torch.bool)
    if dual_clip is not None:
        cap = -advantages * dual_clip
        dual_bound = (advantages < 0) & (per_sample > cap)
        per_sample = torch.where(dual_bound, cap, per_sample)
    with torch.no_grad():
        stats = {
            "clip_fraction": (clipped > unclipped).float().mean(),
            "dual_clip_fraction": dual_bound.float().mean(),
            "approx_kl": kl_estimate(old_log_prob, log_prob, "k3").mean(),
            "ratio_mean": ratio.mean(),
        }
    return per_sample.mean(), stats


def kl_estimate(
    log_prob: torch.Tensor, ref_log_prob: torch.Tensor, kind: str = "k3"
) -> torch.Tensor:
    """Per-sample estimate of KL(pi || ref) from samples of pi (Schulman's estimators): [N] -> [N].

    k1 = log pi - log ref (unbiased, can be negative); k2 = (log pi - log ref)^2 / 2;
    k3 = exp(log ref - log pi) - (log ref - log pi) - 1 (unbiased and never negative).
    """
    delta = ref_log_prob - log_prob
    if kind == "k1":
        return -delta
    if kind == "k2":
        return 0.5 * delta.square()
    if kind == "k3":
        return torch.expm1(delta) - delta
    raise ValueError(f"kind must be k1, k2 or k3, got {kind!r}")


def gaussian_entropy(sigma: torch.Tensor) -> torch.Tensor:
    """Entropy of independent Gaussians with std sigma [..., D], summed over D -> [...]."""
    return (0.5 * math.log(2 * math.pi * math.e) + torch.log(sigma)).sum(dim=-1)
