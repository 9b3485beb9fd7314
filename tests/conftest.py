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


# --- The node graph over Cyclone DDS on loopback (tests/graph_testing.py) -------------------


def private_dds_env() -> dict[str, str]:
    """The variables that put a process and the nodes it starts on a random DDS domain on
    loopback, on the Cyclone DDS host."""
    import random

    from vla_rft_nodes.domain import LOOPBACK_CYCLONEDDS

    return {
        "CYCLONEDDS_URI": LOOPBACK_CYCLONEDDS,
        "ROS_DOMAIN_ID": str(random.randint(100, 230)),
        "VLA_RFT_HOST": "cyclonedds",
    }


@pytest.fixture
def dds(monkeypatch):
    """A private DDS domain on loopback, for this process and the nodes it starts."""
    for key, value in private_dds_env().items():
        monkeypatch.setenv(key, value)
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def spy(dds):
    """This test on the graph: a reader and a writer on every topic."""
    from graph_testing import Spy

    spy = Spy()
    yield spy
    spy.close()


@pytest.fixture
def nodes(dds, tmp_path):
    """Node processes, stopped (killed if they hang) at the end of the test."""
    from graph_testing import Nodes

    procs = Nodes(dds, tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture(scope="session")
def debug_loop(tmp_path_factory):
    """One debug quickstart (training/debug, about 30 s) in a private DDS domain, shared by the
    tests that need a registry with trained versions: ({runs, data, models}, its argv, its exit
    status). Tests that change the registry work on a copy or accept the others' changes."""
    from pathlib import Path

    from vla_rft.pipeline import quickstart

    root = tmp_path_factory.mktemp("loop")
    env = private_dds_env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    dirs = {"root": root / "runs", "data": root / "data", "models": root / "models"}
    debug = Path(__file__).resolve().parents[1] / "training" / "debug" / "pipeline.yaml"
    argv = ["--config", str(debug), "-q", *(f"--{k}={v}" for k, v in dirs.items())]
    try:
        rc = quickstart.main(argv)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return dirs, argv, rc


def write_eval_report(path, outcomes: dict[tuple[str, str, int], bool]):
    """report.json as `vla-rft eval` and the evaluation manager write it (`build_report`), from
    {(task, perturbation, seed): success}; returns the path."""
    import json

    from vla_rft.rollout.report import EpisodeResult, build_report

    episodes = [EpisodeResult(t, p, s, ok, 25) for (t, p, s), ok in outcomes.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build_report(episodes, {"policy": str(path.parent)}), indent=1))
    return path
