"""The Environment interface: what an episode runs on, the simulated robot or a real one.

    obs = env.reset(seed, perturbation)           # {"image": uint8 [H, W, 3], "state": [S]}
    obs, success, done, info = env.step(action)   # one action [A], robot units; info["step"]
    env.close()

`vla_rft.sim.MetaWorldRobot` is the simulated implementation; `vla_rft.rollout.episode_loop`
runs every episode (collection, evaluation, corrections) against this interface only.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Environment(Protocol):
    """A robot that episodes run on: seeded reset, one action per step, a success signal."""

    @property
    def task(self) -> str:
        """The task the episodes are about (e.g. 'push-v3')."""

    @property
    def instruction(self) -> str:
        """The natural-language instruction of the task."""

    @property
    def fps(self) -> float:
        """Control rate: actions per second of robot time."""

    def reset(self, seed: int, perturbation: str = "none") -> dict[str, Any]:
        """Start an episode; the same seed and perturbation give the same start. Returns the
        first observation."""

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], bool, bool, dict[str, Any]]:
        """Apply one action: (observation, success, done, info with "step", 1 on the first)."""

    def close(self) -> None:
        """Release the robot (the simulator and its renderer)."""


class ScriptedExpert(Environment, Protocol):
    """An environment that can also say what its scripted expert would do now."""

    def expert_action(self, obs: dict[str, Any] | None = None) -> np.ndarray:
        """The expert's action for the current state, float32 [A]."""
