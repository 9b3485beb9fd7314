"""The RL math of VLA-RFT as pure functions: GRPO advantages, the clipped objective, KL
estimators and the verified reward. Shapes are in each docstring."""

from vla_rft.rl.grpo import (
    clipped_policy_loss,
    gaussian_entropy,
    group_advantages,
    kl_estimate,
)
from vla_rft.rl.rewards import verified_reward

__all__ = [
    "clipped_policy_loss",
    "gaussian_entropy",
    "group_advantages",
    "kl_estimate",
    "verified_reward",
]
