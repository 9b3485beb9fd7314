"""Helpers for the policy tests: instruction-dependent synthetic episodes and tiny training runs
through the real trainer (the debug recipe at 16 px)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import make_episode

from vla_rft.contract.config import load_config
from vla_rft.data.episode_store import write_episode
from vla_rft.training.train_policy import TrainPolicyConfig, train

REPO = Path(__file__).resolve().parents[1]
DEBUG_RECIPE = REPO / "training" / "debug" / "policy.yaml"
INSTRUCTIONS = {"move the gripper to the target": 0.8, "push the puck to the target": -0.8}
"""Instruction -> the constant action of its synthetic episodes."""


def write_instruction_episodes(root: Path, per_instruction: int = 3, steps: int = 12) -> Path:
    """Episodes whose images and states carry no information: only the instruction says
    whether every action entry is +0.8 or -0.8 (plus a little noise)."""
    rng = np.random.default_rng(0)
    for k, (text, value) in enumerate(INSTRUCTIONS.items()):
        for i in range(per_instruction):
            episode = make_episode(steps=steps, size=16, seed=10 * k + i, instruction=text)
            episode.actions[:] = value + rng.normal(0, 0.05, episode.actions.shape)
            write_episode(root, f"ep-{k}-{i}", episode)
    return root


def tiny_config(data: Path, run_dir: Path, *overrides: str) -> TrainPolicyConfig:
    """The debug recipe on `data` at 16 px."""
    return load_config(
        TrainPolicyConfig,
        DEBUG_RECIPE,
        [
            f"data.roots=[{data}]",
            f"run_dir={run_dir}",
            "model.image_size=16",
            "data.val_fraction=0.2",
            *overrides,
        ],
    )


def train_tiny(data: Path, run_dir: Path, *overrides: str, resume: bool = False) -> Path:
    return train(tiny_config(data, run_dir, *overrides), resume=resume, progress=False)
