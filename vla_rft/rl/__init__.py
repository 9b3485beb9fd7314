"""The RL math of VLA-RFT as pure functions: GRPO advantages and group selection, the clipped
objective, log-probability reduction, KL estimators and the verified reward. Shapes are in each
docstring."""

from vla_rft.rl.grpo import (
    ADVANTAGE_SCALES,
    LOG_PROB_REDUCTIONS,
    clipped_policy_loss,
    gaussian_entropy,
    group_advantages,
    groups_with_spread,
    kl_estimate,
    reduce_log_prob,
)
from vla_rft.rl.rewards import verified_reward

__all__ = [
    "ADVANTAGE_SCALES",
    "LOG_PROB_REDUCTIONS",
    "clipped_policy_loss",
    "gaussian_entropy",
    "group_advantages",
    "groups_with_spread",
    "kl_estimate",
    "reduce_log_prob",
    "verified_reward",
]
