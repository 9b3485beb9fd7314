"""The robot side: the policy interface every backend implements, action-chunk scheduling and
(later) inference backends and safety. Imports numpy only; torch stays on the training side."""

from vla_rft.contract.policy import Policy
from vla_rft.runtime.chunk_broker import ChunkBroker

__all__ = ["ChunkBroker", "Policy"]
