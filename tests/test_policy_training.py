"""The trainer and the torch backend on real episode files: the instruction steers the action,
checkpoints round-trip to identical actions, resuming is exact, DDP runs, errors are clear."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from policy_testing import INSTRUCTIONS, REPO, tiny_config, train_tiny, write_instruction_episodes

from vla_rft.contract.manifest import EMBODIMENT_KEY
from vla_rft.contract.policy import Policy
from vla_rft.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vla_rft.models.policy import VLAPolicy
from vla_rft.runtime.torch_policy import TorchPolicy
from vla_rft.training.train_policy import main, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_instruction_episodes(tmp_path_factory.mktemp("episodes"))


def _obs(instruction: str) -> dict:
    rng = np.random.default_rng(7)
    return {
        "image": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
        "state": rng.normal(size=4).astype(np.float32),
        "instruction": instruction,
    }


@pytest.mark.slow
@pytest.mark.parametrize("head", ["flow", "gaussian"])
def test_the_instruction_decides_the_action(data, tmp_path, head):
    """Images and states are noise; only the instruction says +0.8 or -0.8."""
    ckpt = train_tiny(data, tmp_path, "optim.steps=150", "optim.lr=3e-3", f"model.head={head}")
    policy = TorchPolicy.from_checkpoint(ckpt)
    assert isinstance(policy, Policy)
    for text, value in INSTRUCTIONS.items():
        chunk = policy.infer(_obs(text))["action"]
        assert chunk.shape == (8, 4) and chunk.dtype == np.float32
        assert np.abs(chunk - value).max() < 0.3, (text, chunk)


@pytest.mark.slow
def test_checkpoint_round_trip_gives_identical_actions(data, tmp_path):
    made = []

    def make_policy(config):
        made.append(VLAPolicy(config))
        return made[-1]

    ckpt = train(tiny_config(data, tmp_path), make_policy=make_policy, progress=False)
    loaded = TorchPolicy.from_checkpoint(tmp_path)  # the run directory resolves to its latest
    in_memory = TorchPolicy(made[0], loaded.transforms, loaded.instructions)
    for text in INSTRUCTIONS:
        np.testing.assert_array_equal(
            loaded.infer(_obs(text))["action"], in_memory.infer(_obs(text))["action"]
        )
    record = load_checkpoint(ckpt)
    assert record.extra["policy_config"]["state_dim"] == 4
    assert set(record.extra["instruction_embeddings"]) == set(INSTRUCTIONS)
    assert record.norm_stats["action"]["mean"] and record.data_fingerprint
    # the robot it was trained for, from the episodes; the policy node checks it at configure
    trained_for = record.extra[EMBODIMENT_KEY]
    assert trained_for == {"name": "test-robot", "state_names": ["x", "y", "z", "g"],
                           "action_names": ["dx", "dy", "dz", "g"]}  # fmt: skip
    assert loaded.spec.embodiment == trained_for and loaded.spec.chunk_size == 8


@pytest.mark.slow
def test_resume_continues_exactly(data, tmp_path):
    first = train_tiny(data, tmp_path, "optim.steps=20", "save_every=10")
    reference = load_checkpoint(first).weights
    shutil.rmtree(first)  # as if the run had died after step 10
    resumed = train_tiny(data, tmp_path, "optim.steps=20", "save_every=10", resume=True)
    assert resumed.name == first.name
    for name, tensor in load_checkpoint(resumed).weights.items():
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=0, msg=name)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train_tiny(data, tmp_path, "optim.steps=20")


@pytest.mark.slow
def test_data_parallel_training_under_torchrun(data, tmp_path):
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
        "-m", "vla_rft.training.train_policy", "--recipe", "training/debug/policy.yaml", "-q",
        "--set", f"data.roots=[{data}]", "--set", f"run_dir={run_dir}",
        "--set", "model.image_size=16", "--set", "optim.steps=10", "--set", "threads=1",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 process(es)" in done.stdout
    policy = TorchPolicy.from_checkpoint(run_dir)
    assert np.isfinite(policy.infer(_obs("push the puck to the target"))["action"]).all()


def test_bad_recipe_values_are_named(capsys):
    assert main(["--set", "optim.stepz=3"]) == 2
    assert "optim.stepz" in capsys.readouterr().err
    assert main(["--set", "model.head=diffusion"]) == 2
    assert "head must be one of" in capsys.readouterr().err


def test_torch_backend_refuses_bad_checkpoints_and_observations(data, tmp_path):
    not_a_policy = save_checkpoint(tmp_path / "other", 1, torch.nn.Linear(2, 2), {})
    with pytest.raises(CheckpointError, match="not a policy checkpoint"):
        TorchPolicy.from_checkpoint(not_a_policy)
    ckpt = train_tiny(data, tmp_path / "run", "optim.steps=2", "save_every=2")
    policy = TorchPolicy.from_checkpoint(ckpt)
    with pytest.raises(ValueError, match="instruction is empty"):
        policy.infer(_obs(""))
    with pytest.raises(ValueError, match="lacks"):
        policy.infer({"image": _obs("x")["image"]})
    with pytest.raises(ValueError, match="state holds NaN"):
        policy.infer({**_obs("push the puck to the target"), "state": np.full(4, np.nan)})
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="damaged"):
        TorchPolicy.from_checkpoint(ckpt)
