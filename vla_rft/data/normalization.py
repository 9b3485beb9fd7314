"""Normalisation statistics for states and actions, computed on the training split.

Saved as JSON next to the data cache and, by the trainers, inside every checkpoint, so that
training, export and the robot use the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ArrayStats:
    """Per-dimension statistics of one quantity (lists of floats, one entry per dimension)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    min: tuple[float, ...]
    max: tuple[float, ...]
    q01: tuple[float, ...]
    q99: tuple[float, ...]

    @classmethod
    def of(cls, values: np.ndarray) -> ArrayStats:
        """values: [N, D]."""
        v = np.asarray(values, dtype=np.float64)
        q01, q99 = np.quantile(v, [0.01, 0.99], axis=0)
        return cls(
            *(
                tuple(float(x) for x in a)
                for a in (v.mean(0), v.std(0), v.min(0), v.max(0), q01, q99)
            )
        )

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Zero mean, unit variance; dimensions that never vary are only centred."""
        std = np.asarray(self.std, np.float32)
        return ((x - np.asarray(self.mean, np.float32)) / np.where(std < 1e-6, 1.0, std)).astype(
            np.float32
        )

    def unnormalize(self, x: np.ndarray) -> np.ndarray:
        std = np.asarray(self.std, np.float32)
        return (x * np.where(std < 1e-6, 1.0, std) + np.asarray(self.mean, np.float32)).astype(
            np.float32
        )


@dataclass(frozen=True)
class NormStats:
    """Statistics of the robot state and the action over the training episodes."""

    state: ArrayStats
    action: ArrayStats
    num_steps: int
    """Steps the statistics were computed from."""

    @classmethod
    def compute(cls, states: np.ndarray, actions: np.ndarray) -> NormStats:
        """states [N, S], actions [N, A], all training steps."""
        return cls(ArrayStats.of(states), ArrayStats.of(actions), len(states))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NormStats:
        def arr(d):
            return ArrayStats(**{k: tuple(v) for k, v in d.items()})

        return cls(arr(data["state"]), arr(data["action"]), int(data["num_steps"]))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> NormStats:
        return cls.from_dict(json.loads(Path(path).read_text()))
