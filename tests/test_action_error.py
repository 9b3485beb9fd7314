"""`vla-rft action-error` on real episode files: a policy trained towards the recorded actions
scores closer to them than the one it started from; bad input is named."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vla_rft.contract.config import to_dict
from vla_rft.contract.manifest import ACTION_RANGE_KEY, INSTRUCTIONS_KEY, POLICY_CONFIG_KEY
from vla_rft.data import WindowConfig, build_datasets
from vla_rft.data.episode_store import write_episode
from vla_rft.evaluation.action_error import action_error, main
from vla_rft.models.checkpoint import save_checkpoint
from vla_rft.models.policy import PolicyConfig, VLAPolicy
from vla_rft.runtime.torch_policy import TorchPolicy
from vla_rft.training.imagination import policy_inputs

INSTRUCTION = "reach the red goal"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Twelve tiny episodes, an untrained policy and a copy fitted to the training split."""
    from tests.conftest import make_episode

    root = tmp_path_factory.mktemp("action_error")
    for i in range(12):  # each episode holds one action, and its state says which
        episode = make_episode(steps=20, size=16, seed=i, instruction=INSTRUCTION)
        direction = np.random.default_rng(100 + i).uniform(-1, 1, 4).astype(np.float32)
        episode.states[:] = direction
        episode.actions[:] = direction
        write_episode(root / "episodes", f"ep{i}", episode)
    window = WindowConfig(action_horizon=8, normalize=False)
    train, _, index = build_datasets([root / "episodes"], window)
    config = PolicyConfig(
        image_size=16, vision_channels=(8, 16), width=32, heads=2, decoder_layers=1,
        instruction_dim=8, flow_steps=4,
    )  # fmt: skip
    extra = {
        POLICY_CONFIG_KEY: to_dict(config),
        INSTRUCTIONS_KEY: {INSTRUCTION: np.random.default_rng(0).standard_normal(8).tolist()},
        ACTION_RANGE_KEY: [-1.0, 1.0],
    }
    torch.manual_seed(0)
    stats = train.stats.to_dict()
    fingerprint = index.fingerprint()
    save_checkpoint(root / "base", 1, VLAPolicy(config), {}, stats, fingerprint, extra=extra)
    policy = TorchPolicy.from_checkpoint(root / "base")
    fitted = policy.model.train()
    optimizer = torch.optim.Adam(fitted.parameters(), lr=3e-3)
    for step in range(150):  # behaviour cloning on the training windows
        batch = train.get_batch(np.random.default_rng(step).choice(len(train), 32))
        obs = policy_inputs(
            policy, batch["image"][:, -1], batch["state"], batch["instruction"], "cpu"
        )
        actions = policy.transforms.action.normalizer.normalize(batch["action"])
        loss = fitted.head.loss(
            fitted.encode_batch(obs),
            torch.from_numpy(actions),
            torch.from_numpy(~batch["action_pad"]),
        ).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    fitted.eval()
    save_checkpoint(root / "fitted", 1, fitted, {}, stats, fingerprint, extra=extra)
    return root


def test_a_policy_fitted_to_the_actions_scores_closer(setup, tmp_path, capsys):
    rows = action_error(
        [str(setup / "base"), str(setup / "fitted")], [str(setup / "episodes")], 50, 0
    )
    base, fitted = rows
    assert base["windows"] == fitted["windows"] > 0  # the same held-out windows for both
    assert fitted["mean_abs_error"] < base["mean_abs_error"] - 2 * base["standard_error"]
    assert main(
        ["--policy", str(setup / "base"), str(setup / "fitted"),
         "--data", str(setup / "episodes"), "--out", str(tmp_path)]
    ) == 0  # fmt: skip
    assert json.loads((tmp_path / "action_error.json").read_text()) == rows
    assert "| held-out windows of |" in (tmp_path / "action_error.md").read_text()


def test_bad_input_is_named(setup, tmp_path, capsys):
    assert main(["--policy", str(setup / "base"), "--data", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a checkpoint")
    assert main(["--policy", str(corrupt), "--data", str(setup / "episodes")]) == 2
    assert "error:" in capsys.readouterr().err
