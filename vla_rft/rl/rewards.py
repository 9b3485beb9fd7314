"""The verified reward of VLA-RFT: how closely the world model's imagined trajectory under the
policy's actions follows the reference trajectory.

The reference is the world model's own rollout under the episode's real actions from the same
start (world model against world model, so its errors cancel). Per candidate:

    r = -(1/T) sum_t [ w_pixel * MAE(pred_t, ref_t) + w_perceptual * D(pred_t, ref_t) ]

with frames in [0, 1]. The paper uses LPIPS for D; its pretrained weights cannot be downloaded
here, so D defaults to 1 - SSIM (a structural distance in [0, 2], 0 for identical frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vla_rft.rl.image_metrics import ssim

PERCEPTUAL_TERMS = ("ssim", "none")
REWARD_TERMS = ("pixel_mae", "perceptual")
"""The terms `verified_reward` reports beside the reward."""


def verified_reward(
    predicted: torch.Tensor,
    reference: torch.Tensor,
    pixel_weight: float = 1.0,
    perceptual_weight: float = 1.0,
    perceptual: str = "ssim",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """predicted [B, G, T, H, W, 3], reference [B, T, H, W, 3] (or [B, G, T, H, W, 3]), both in
    [0, 1] -> (reward [B, G], terms {'pixel_mae': [B, G], 'perceptual': [B, G]}).
    """
    if perceptual not in PERCEPTUAL_TERMS:
        raise ValueError(f"perceptual must be one of {PERCEPTUAL_TERMS}, got {perceptual!r}")
    if predicted.ndim != 6:
        raise ValueError(f"predicted must be [B, G, T, H, W, 3], got {list(predicted.shape)}")
    if reference.ndim == 5 and reference.shape == predicted.shape[:1] + predicted.shape[2:]:
        reference = reference[:, None].expand_as(predicted)
    if reference.shape != predicted.shape:
        raise ValueError(
            f"reference {list(reference.shape)} does not match predicted {list(predicted.shape)}"
        )
    mae = (predicted - reference).abs().mean(dim=(-3, -2, -1))  # [B, G, T]
    if perceptual == "ssim":
        distance = 1.0 - ssim(predicted, reference)  # [B, G, T]
    else:
        distance = torch.zeros_like(mae)
    terms = {"pixel_mae": mae.mean(-1), "perceptual": distance.mean(-1)}  # [B, G]
    reward = -(pixel_weight * terms["pixel_mae"] + perceptual_weight * terms["perceptual"])
    return reward, terms


@dataclass(frozen=True)
class RewardConfig:
    """r = -(1/T) sum_t [pixel_weight * MAE + perceptual_weight * (1 - SSIM)]."""

    pixel_weight: float = 1.0
    """Weight of the mean absolute pixel error (frames in [0, 1])."""
    perceptual_weight: float = 1.0
    """Weight of the perceptual distance."""
    perceptual: str = "ssim"
    """Perceptual term: 'ssim' (1 - SSIM; LPIPS weights are not available offline) or 'none'."""

    def __post_init__(self):
        if self.perceptual not in PERCEPTUAL_TERMS:
            raise ValueError(f"perceptual must be one of {PERCEPTUAL_TERMS}")
