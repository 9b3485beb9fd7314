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


@pytest.fixture
def register_policy_factory(tmp_path, monkeypatch):
    """register(spec): install, as a package would, an entry point of the policy node's
    allow-list group (a *.dist-info directory on sys.path, read by importlib.metadata)."""
    from vla_rft_nodes.policy_factories import ENTRY_POINT_GROUP

    def register(spec: str, name: str = "test-factories") -> None:
        dist = tmp_path / "site" / f"{name.replace('-', '_')}-0.1.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ntest = {spec}\n")
        monkeypatch.syspath_prepend(str(tmp_path / "site"))

    return register
