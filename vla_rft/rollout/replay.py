"""Recorded episodes back in the simulator: start states to act from, exactly as recorded.

    replayer = EpisodeReplayer(image_size=64)
    start = replayer.start(dataset, window, meta, slot=0)  # reset(seed) + the recorded actions
    obs = start.robot.restore(start.snapshot)              # as often as needed

An episode recorded by `vla-rft collect` (or `collect-corrections`) names its task, seed and
perturbation; resetting with them and replaying the recorded actions up to step t reaches the
state the episode was in at t (the simulator is deterministic), which is checked against the
recorded robot state. A snapshot of that state lets any number of candidates start from it
without replaying again. `vla-rft reward-check` and `vla-rft rft --set rollouts=simulator` use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_rft.contract.constants import OBS_STATE
from vla_rft.rollout.corrections import PREFIX_ACTIONS

STATE_TOLERANCE = 1e-4
"""How far (robot units) the replayed state may be from the recorded one."""


@dataclass
class StartState:
    """A recorded episode's step t, live in the simulator."""

    robot: object
    """The `MetaWorldRobot` of the start state's task and slot."""
    snapshot: object
    """`SimSnapshot` of step t; `robot.restore(snapshot)` returns the observation there. It
    stays valid until the same slot starts another start state."""
    episode: str
    step: int


def check_replayable(episodes) -> None:
    """ValueError naming the episodes (`CachedEpisode`s) without a task and seed in their
    metadata: only episodes recorded in the simulator can be replayed there."""
    missing = [e.name for e in episodes if not _replayable(e.meta)]
    if missing:
        raise ValueError(
            f"{len(missing)} episode(s) have no task or seed in their metadata (e.g. "
            f"{', '.join(missing[:3])}): only episodes recorded in the simulator (vla-rft "
            "collect, collect-corrections) can be replayed"
        )


def _replayable(meta: dict) -> bool:
    return meta.get("task") is not None and "seed" in meta.get("extra", {})


def replay_actions(dataset, window: int, meta: dict) -> np.ndarray:
    """The actions [t', A] that lead from the episode's reset to window `window`'s step: a
    correction episode's policy prefix (it begins where that prefix ended), then the episode's
    own recorded actions before the step."""
    episode = dataset.window_episode[window]
    start = dataset.ep_start[episode]
    recorded = dataset.actions[start:window]
    prefix = np.reshape(meta.get("extra", {}).get(PREFIX_ACTIONS, []), (-1, recorded.shape[1]))
    return np.concatenate([prefix, recorded]).astype(np.float32)


class EpisodeReplayer:
    """Simulated robots, one per task and slot, reset and replayed to recorded start states.

    A snapshot restores only into the episode it was taken in, so start states that must stay
    live together (a batch of them) take one slot each."""

    def __init__(self, image_size: int, max_steps: int = 150) -> None:
        self.image_size, self.max_steps = image_size, max_steps
        self._robots: dict[tuple[str, int], object] = {}

    def robot(self, task: str, slot: int = 0):
        """The robot of (task, slot), made on first use."""
        from vla_rft.sim import MetaWorldRobot, SimConfig

        if (task, slot) not in self._robots:
            config = SimConfig(task=task, image_size=self.image_size, max_steps=self.max_steps)
            self._robots[task, slot] = MetaWorldRobot(config)
        return self._robots[task, slot]

    def start(self, dataset, window: int, meta: dict, name: str = "", slot: int = 0) -> StartState:
        """Reset to the recorded episode's seed and perturbation, replay its actions up to the
        window's step, check the state against the recording and take a snapshot.

        dataset: a `WindowDataset` (raw, not normalised, states); meta: the episode's metadata
        (`EpisodeMeta` as a dict). ValueError for an episode the simulator cannot replay."""
        if not _replayable(meta):
            raise ValueError(
                f"episode {name or '?'} has no task or seed in its metadata: only episodes "
                "recorded in the simulator (vla-rft collect, collect-corrections) can be replayed"
            )
        extra = meta["extra"]
        robot = self.robot(meta["task"], slot)
        obs = robot.reset(int(extra["seed"]), extra.get("perturbation", "none"))
        for action in replay_actions(dataset, window, meta):
            obs, _, done, _ = robot.step(action, render=False)
            if done:
                break
        expected = dataset.states[window]
        if not np.allclose(obs[OBS_STATE], expected, atol=STATE_TOLERANCE):
            raise ValueError(
                f"replaying episode {name or '?'} did not reach its recorded state at step "
                f"{window - dataset.ep_start[dataset.window_episode[window]]} "
                f"({obs[OBS_STATE].tolist()} against {expected.tolist()}); was it recorded "
                "with another simulator version?"
            )
        step = int(window - dataset.ep_start[dataset.window_episode[window]])
        return StartState(robot, robot.snapshot(), name, step)

    def close(self) -> None:
        for robot in self._robots.values():
            robot.close()
        self._robots.clear()
