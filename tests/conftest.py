"""Shared test fixtures: small synthetic episodes written through the real episode store."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from vla_rft.data.episode import Episode, EpisodeMeta


def make_episode(
    steps: int = 12,
    size: int = 16,
    seed: int = 0,
    task: str = "reach-v3",
    instruction: str = "reach the red goal",
    success: bool = True,
) -> Episode:
    """A synthetic episode with distinct, checkable values at every step."""
    rng = np.random.default_rng(seed)
    return Episode(
        images=rng.integers(0, 256, (steps, size, size, 3), dtype=np.uint8),
        states=rng.normal(size=(steps, 4)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(steps, 4)).astype(np.float32),
        timestamps=np.arange(steps) / 80.0,
        meta=EpisodeMeta(
            task=task,
            instruction=instruction,
            robot="test-robot",
            fps=80.0,
            source="test",
            success=success,
            state_names=("x", "y", "z", "g"),
            action_names=("dx", "dy", "dz", "g"),
            extra={"seed": seed},
        ),
    )


@pytest.fixture
def episode_factory():
    return make_episode


def write_eval_report(path, outcomes: dict[tuple[str, str, int], bool]):
    """report.json as `vla-rft eval` and the evaluation manager write it (`build_report`), from
    {(task, perturbation, seed): success}; returns the path."""
    import json

    from vla_rft.evaluation.report import EpisodeResult, build_report

    episodes = [EpisodeResult(t, p, s, ok, 25) for (t, p, s), ok in outcomes.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build_report(episodes, {"policy": str(path.parent)}), indent=1))
    return path
