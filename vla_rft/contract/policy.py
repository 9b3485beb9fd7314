"""The one policy interface shared by every backend (torch, ONNX Runtime, TensorRT, experts).

    obs = {"image": uint8 [H, W, 3], "state": float32 [S], "instruction": str,
           "images": {camera name: uint8 [H, W, 3]}}   # the further cameras, if it has any
    out = policy.infer(obs)        # {"action": float32 [K, A], ...} an action chunk, robot units
    policy.reset()                 # a new episode starts
    policy.spec                    # PolicySpec: what it takes and gives (from its package)

Backends may add keys to `out` (timings, the raw normalised chunk); "action" is always there,
de-normalised and clipped to the robot's range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vla_rft.contract.constants import SIM_EMBODIMENT
from vla_rft.contract.embodiment import load_embodiment

DEFAULT_CAMERAS: tuple[str, ...] = (load_embodiment(SIM_EMBODIMENT).main_camera.name,)
"""A policy's cameras unless its config names them: the simulated robot's main camera."""


@dataclass(frozen=True)
class PolicySpec:
    """What a loaded policy takes and gives, read from its manifest or checkpoint."""

    state_dim: int
    """Entries of the state it reads."""
    action_dim: int
    """Entries of each action it predicts."""
    chunk_size: int
    """Actions per predicted chunk."""
    image_size: int
    """Square side its network sees; camera frames are resized to it (0: any size)."""
    embodiment: dict | None = None
    """`EmbodimentSpec.summary()` of the robot it was trained for (None: not recorded)."""
    cameras: tuple[str, ...] = DEFAULT_CAMERAS
    """The cameras it sees, main first: the robot's main camera gives `obs["image"]` whatever
    its name; each further one is looked up by name in `obs["images"]` (and by the policy node
    in the robot's spec)."""


@runtime_checkable
class Policy(Protocol):
    """Anything with `infer(obs) -> {'action': [K, A]}`, `reset()` and a `spec`."""

    spec: PolicySpec

    def infer(self, obs: dict[str, Any]) -> dict[str, np.ndarray]: ...

    def reset(self) -> None: ...
