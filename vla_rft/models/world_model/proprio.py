"""The robot-state half of imagination: where the hand goes under a sequence of actions.

The world model predicts frames; a policy acting inside it for more than one chunk also needs
the robot state (hand x, y, z and gripper opening) at the start of each later chunk. Meta-World
moves a mocap target by a fixed step per unit action and the hand follows it with a lag, so a
linear model in the current and previous action and the current state predicts the next state
well (held-out error about 1 mm per step, 1 cm after 24 steps on the expert data):

    s_{t+1} = s_t + [a_t, a_{t-1}, s_t, 1] @ W        (robot units, W fitted by least squares)

It is fitted on the same episodes the start states come from, in a fraction of a second, and
needs nothing but numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ProprioModel:
    """A linear next-state model; `fit` builds one from episodes."""

    weights: np.ndarray
    """[2A + S + 1, S] maps [a_t, a_{t-1}, s_t, 1] to s_{t+1} - s_t."""
    state_dim: int
    """S: size of the robot state."""
    action_dim: int
    """A: size of one action."""

    def __post_init__(self):
        want = (2 * self.action_dim + self.state_dim + 1, self.state_dim)
        if self.weights.shape != want or not np.isfinite(self.weights).all():
            raise ValueError(f"weights must be finite {list(want)}, got {self.weights.shape}")

    @classmethod
    def fit(
        cls, states: np.ndarray, actions: np.ndarray, episode_start: np.ndarray
    ) -> ProprioModel:
        """Least squares on consecutive steps of concatenated episodes.

        states [N, S], actions [N, A] (robot units); episode_start [E] the first row of each
        episode (rows run episode after episode). A step's previous action is zero at an
        episode's first step, as it is for a robot at rest.
        """
        states, actions = np.asarray(states, np.float64), np.asarray(actions, np.float64)
        has_next = np.ones(len(states), bool)
        has_next[np.asarray(episode_start) - 1] = False  # each episode's last row (and the end)
        has_next[-1] = False
        rows = np.flatnonzero(has_next)
        if len(rows) < 2 * actions.shape[1] + states.shape[1] + 1:
            raise ValueError(f"too few consecutive steps ({len(rows)}) to fit the state model")
        previous = previous_actions(actions, episode_start)
        features = cls._features(states[rows], actions[rows], previous[rows])
        weights, *_ = np.linalg.lstsq(features, states[rows + 1] - states[rows], rcond=None)
        return cls(weights, states.shape[1], actions.shape[1])

    @staticmethod
    def _features(state: np.ndarray, action: np.ndarray, previous: np.ndarray) -> np.ndarray:
        return np.concatenate([action, previous, state, np.ones((len(state), 1))], axis=1)

    def rollout(self, state: np.ndarray, actions: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """state [N, S], actions [N, T, A], the action before them [N, A] -> states [N, T, S],
        the state after each action."""
        out = []
        for t in range(actions.shape[1]):
            state = state + self._features(state, actions[:, t], previous) @ self.weights
            previous = actions[:, t]
            out.append(state)
        return np.stack(out, axis=1).astype(np.float32)


def previous_actions(actions: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
    """actions [N, A] of concatenated episodes, episode_start [E] their first rows -> the action
    before each row [N, A] (zero at an episode's first row)."""
    previous = np.roll(actions, 1, axis=0)
    previous[np.asarray(episode_start)] = 0.0
    return previous
