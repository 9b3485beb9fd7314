"""Group Relative Policy Optimisation (Shao et al. 2024) as used by VLA-RFT.

No value network: each start state's G sampled action chunks are scored against one another.
"""

from __future__ import annotations

import math

import torch

ADVANTAGE_SCALES = ("group", "batch")
LOG_PROB_REDUCTIONS = ("sum", "mean")


def groups_with_spread(rewards: torch.Tensor, min_spread: float) -> torch.Tensor:
    """Which groups carry a signal: rewards [B, G] -> keep [B] bool, True where the group's
    unbiased reward std is at least min_spread (0 keeps every group).

    A group whose members score alike within the world model's own error ranks its chunks by
    that error; RIPT-VLA likewise drops groups whose samples all share one outcome.
    """
    _check_groups(rewards)
    if min_spread < 0:
        raise ValueError(f"min_spread must be >= 0, got {min_spread}")
    return rewards.std(dim=1) >= min_spread


def group_advantages(
    rewards: torch.Tensor,
    eps: float = 1e-6,
    scale: str = "group",
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rewards [B, G] -> advantages [B, G]: (r - group mean) / (std + eps).

    scale 'group': std is each group's own unbiased std (torch's default, as in the reference
    GRPO code), so every group's advantages have unit spread whatever its rewards' spread.
    scale 'batch': one std for the batch, the pooled within-group std of the kept groups,
    sqrt(sum (r - group mean)^2 / (kept groups x (G - 1))): the advantages keep unit spread over
    the batch, a group whose rewards barely differ gets advantages that barely differ, and with
    one group it equals 'group'.
    keep [B] bool (default all): groups left out get advantages of 0 and do not enter the batch
    std. A group whose members all score the same gets advantages of 0 either way.
    """
    _check_groups(rewards)
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"scale must be one of {ADVANTAGE_SCALES}, got {scale!r}")
    if keep is None:
        keep = torch.ones(rewards.shape[0], dtype=torch.bool, device=rewards.device)
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    kept = torch.where(keep[:, None], centred, torch.zeros_like(centred))
    if scale == "group":
        std = rewards.std(dim=1, keepdim=True)
    else:
        dof = (keep.sum() * (rewards.shape[1] - 1)).clamp(min=1)
        std = (kept.square().sum() / dof).sqrt()
    return kept / (std + eps)


def reduce_log_prob(total: torch.Tensor, terms: int, reduction: str) -> torch.Tensor:
    """A sum of `terms` Gaussian log-density terms per sample [N] -> [N] as the recipe reduces
    them: 'sum' keeps the chain's log-density; 'mean' divides by the terms (S x K x A per chunk),
    the per-dimension average of the released VLA-RFT code, so ratios, KL and entropy are per
    action dimension and their size does not grow with the chunk or the number of flow steps."""
    if reduction not in LOG_PROB_REDUCTIONS:
        raise ValueError(f"reduction must be one of {LOG_PROB_REDUCTIONS}, got {reduction!r}")
    if terms < 1:
        raise ValueError(f"terms must be >= 1, got {terms}")
    return total if reduction == "sum" else total / terms


def _check_groups(rewards: torch.Tensor) -> None:
    if rewards.ndim != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be [B, G] with G >= 2, got {list(rewards.shape)}")


def clipped_policy_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    clip: float = 0.2,
    dual_clip: float | None = 3.0,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate with dual clipping (Ye et al. 2020), to be minimised.

    log_prob, old_log_prob, advantages, mask (bool, default all True): [N] -> (loss scalar,
    stats), loss and stats averaged over the samples where mask is True (a loss of 0 that still
    depends on log_prob when none is).
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
    if mask is not None and mask.shape != log_prob.shape:
        raise ValueError(f"mask {list(mask.shape)} does not match {list(log_prob.shape)}")
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
    if mask is None:
        mask = torch.ones_like(per_sample, dtype=torch.bool)
    count = mask.sum().clamp(min=1)

    def mean(values: torch.Tensor) -> torch.Tensor:
        return torch.where(mask, values, torch.zeros_like(values)).sum() / count

    with torch.no_grad():
        stats = {
            "clip_fraction": mean((clipped > unclipped).float()),
            "dual_clip_fraction": mean(dual_bound.float()),
            "approx_kl": mean(kl_estimate(old_log_prob, log_prob, "k3")),
            "ratio_mean": mean(ratio),
        }
    return mean(per_sample), stats


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
