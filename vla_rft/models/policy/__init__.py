"""The VLA policy: vision encoder, frozen sentence encoder input, robot state, action-chunk head
(flow matching or Gaussian), and the stochastic sampler with tractable log-probabilities."""

from vla_rft.models.policy.chunk_head import ChunkSample, ObsFeatures
from vla_rft.models.policy.configuration_policy import PolicyConfig
from vla_rft.models.policy.modeling_policy import (
    ChunkPredictor,
    VLAPolicy,
)

__all__ = [
    "ChunkPredictor",
    "ChunkSample",
    "ObsFeatures",
    "PolicyConfig",
    "VLAPolicy",
]
