"""The one policy interface shared by every backend (torch, ONNX Runtime, TensorRT, experts).

    obs = {"image": uint8 [H, W, 3], "state": float32 [S], "instruction": str}
    out = policy.infer(obs)        # {"action": float32 [K, A], ...} an action chunk, robot units
    policy.reset()                 # a new episode starts

Backends may add keys to `out` (timings, the raw normalised chunk); "action" is always there,
de-normalised and clipped to the robot's range.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """Anything with `infer(obs) -> {'action': [K, A]}` and `reset()`."""

    def infer(self, obs: dict[str, Any]) -> dict[str, np.ndarray]: ...

    def reset(self) -> None: ...
