"""The one episode loop: an Agent acts on an Environment until success or the step limit.

    agent = PolicyAgent(policy, ChunkBrokerConfig(replan_every=4))   # or ExpertAgent(env)
    outcome = run_episode(env, agent, seed, "object", on_step=writer_step)
    outcome.success, outcome.steps, outcome.obs                      # obs: the last one

`on_step(obs, action)` sees every observation with the action taken from it, before the
environment steps: recording, hashing and frame keeping hook in there. Collection, evaluation
and corrections all run their episodes through `run_episode` (or `rollout`, which continues
from a given observation, for an expert taking over mid-episode).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from vla_rft.contract.constants import ACTION
from vla_rft.contract.environment import Environment, ScriptedExpert
from vla_rft.contract.policy import Policy
from vla_rft.runtime.chunk_broker import ChunkBroker, ChunkBrokerConfig

OnStep = Callable[[dict[str, Any], np.ndarray], None]


class Agent(Protocol):
    """One action per control tick."""

    def reset(self) -> None:
        """A new episode starts."""

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        """The action float32 [A] to take from `obs`."""


class PolicyAgent:
    """A chunk policy at the control rate: a new chunk every `replan_every` ticks (the chunk
    broker), the same scheduling as the policy node."""

    def __init__(self, policy: Policy, broker: ChunkBrokerConfig):
        self.policy, self.broker = policy, ChunkBroker(broker)

    def reset(self) -> None:
        self.policy.reset()
        self.broker.reset()

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        if self.broker.needs_chunk():
            self.broker.add_chunk(self.policy.infer(obs)[ACTION])
        return self.broker.next_action()


class ExpertAgent:
    """The environment's scripted expert, optionally with Gaussian noise N(0, noise) on each
    action (clipped to [-1, 1]) drawn from `rng`; `clean` holds the expert's own actions of the
    episode, before the noise."""

    def __init__(
        self, env: ScriptedExpert, noise: float = 0.0, rng: np.random.Generator | None = None
    ):
        if noise < 0 or (noise > 0 and rng is None):
            raise ValueError(f"noise must be >= 0 and needs an rng, got {noise}")
        self.env, self.noise, self.rng = env, noise, rng
        self.clean: list[np.ndarray] = []

    def reset(self) -> None:
        self.clean = []

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        action = self.env.expert_action(obs)
        self.clean.append(action.astype(np.float32))
        if self.noise > 0:
            action = np.clip(action + self.rng.normal(0.0, self.noise, action.shape), -1, 1)
        return action.astype(np.float32)


@dataclass
class Outcome:
    """How an episode (or the part of it that ran) ended."""

    obs: dict[str, Any]
    """The last observation."""
    success: bool
    done: bool
    """The environment ended the episode (success or its step limit)."""
    steps: int
    """Actions taken."""


def rollout(
    env: Environment,
    agent: Agent,
    obs: dict[str, Any],
    limit: int | None = None,
    on_step: OnStep | None = None,
) -> Outcome:
    """Act from `obs` until the episode is done or `limit` actions were taken."""
    success, done, steps = False, False, 0
    while not done and (limit is None or steps < limit):
        action = agent.act(obs)
        if on_step is not None:
            on_step(obs, action)
        obs, success, done, _ = env.step(action)
        steps += 1
    return Outcome(obs, success, done, steps)


def run_episode(
    env: Environment,
    agent: Agent,
    seed: int,
    perturbation: str = "none",
    limit: int | None = None,
    on_step: OnStep | None = None,
) -> Outcome:
    """Reset `env` from `seed` and `perturbation`, reset the agent, and roll out."""
    obs = env.reset(seed, perturbation)
    agent.reset()
    return rollout(env, agent, obs, limit, on_step)
