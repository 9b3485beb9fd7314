"""Correction episodes in the real simulator: the expert takes over exactly where the policy's
own episode was, only the takeover is recorded, a rerun keeps what is there, a policy that does
not repeat itself is refused, and the command works on a real checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
from policy_testing import train_tiny, write_instruction_episodes

from vla_rft.contract.constants import ACTION, EXPERT_ACTIONS_KEY
from vla_rft.data.dataset import WindowConfig, build_datasets
from vla_rft.data.episode_store import list_episodes, read_episode
from vla_rft.rollout.corrections import CorrectionConfig, collect_corrections, drive, main
from vla_rft.rollout.episode_loop import PolicyAgent
from vla_rft.runtime.chunk_broker import ChunkBrokerConfig

pytestmark = pytest.mark.slow


class DriftPolicy:
    """Moves the hand up and to the side whatever it sees: it never reaches the target."""

    def infer(self, obs: dict) -> dict[str, np.ndarray]:
        return {ACTION: np.tile(np.array([0.5, -0.5, 0.5, 0.0], np.float32), (4, 1))}

    def reset(self) -> None:
        pass


class JitteryPolicy(DriftPolicy):
    """Never the same chunk twice: its episodes cannot be replayed."""

    def __init__(self):
        self.rng = np.random.default_rng(0)

    def infer(self, obs: dict) -> dict[str, np.ndarray]:
        return {ACTION: self.rng.uniform(-1, 1, (4, 4)).astype(np.float32)}


def _config(out, **kw) -> CorrectionConfig:
    base = dict(
        out=out,
        tasks=("reach-v3",),
        perturbations=("none",),
        episodes_per_task=2,
        seed=5000,
        takeover_steps=(10, 25),
        image_size=32,
        max_steps=120,
        replan_every=4,
    )
    return CorrectionConfig(**{**base, **kw})


def test_expert_takes_over_where_the_policy_was(tmp_path):
    config = _config(tmp_path / "corr")
    summary = collect_corrections(config, lambda robot: DriftPolicy(), "drift", progress=False)

    assert summary.policy_episodes == {("reach-v3", "none"): [False, False]}
    assert summary.takeovers[("reach-v3", "none", 10)] == [True, True]  # the expert fixes it
    assert summary.written == 4 and summary.skipped == 0
    names = [p.name for p in list_episodes(config.out)]
    assert names == [
        "reach-v3-seed005000-takeover010",
        "reach-v3-seed005000-takeover025",
        "reach-v3-seed005001-takeover010",
        "reach-v3-seed005001-takeover025",
    ]
    from vla_rft.sim import MetaWorldRobot, SimConfig

    with MetaWorldRobot(SimConfig("reach-v3", image_size=32, max_steps=120)) as robot:
        agent = PolicyAgent(DriftPolicy(), ChunkBrokerConfig(4))
        for t in (10, 25):
            episode = read_episode(config.out / f"reach-v3-seed005001-takeover{t:03d}")
            obs, _, _, states, prefix = drive(robot, agent, 5001, "none", t)
            # step 0 of the correction is the state the policy reached at step t ...
            np.testing.assert_array_equal(episode.states[0], states[t])
            np.testing.assert_array_equal(episode.images[0], obs["image"])
            # ... and every action is the expert's, which the robot there would have taken
            np.testing.assert_allclose(episode.actions[0], robot.expert_action(obs), atol=1e-6)
            assert episode.meta.source == "correction" and episode.meta.success
            assert episode.meta.extra["takeover_step"] == t
            assert episode.meta.extra["policy"] == "drift"
            assert episode.meta.extra["policy_success"] is False
            # the takeover's actions are the expert's clean ones, recorded as such, so
            # `reward-check --reference expert` and `reference_actions: expert` accept them
            np.testing.assert_array_equal(
                np.asarray(episode.meta.extra[EXPERT_ACTIONS_KEY], np.float32), episode.actions
            )
            assert len(episode) + t <= 120
            # the metadata alone reproduces the start: seed, then the policy's prefix
            assert np.array_equal(episode.meta.extra["prefix_actions"], prefix)
            robot.reset(5001, "none")
            for action in episode.meta.extra["prefix_actions"]:
                obs, *_ = robot.step(np.asarray(action, np.float32))
            np.testing.assert_array_equal(obs["state"], episode.states[0])

    train, _, index = build_datasets([config.out], WindowConfig(action_horizon=8))
    assert len(index) == 4 and len(train) > 0 and train.has_expert_actions.all()

    again = collect_corrections(config, lambda robot: DriftPolicy(), "drift", progress=False)
    assert again.written == 0 and again.skipped == 4
    assert "reach-v3 | none | 0/2 (0%) | 2/2 (100%)" in summary.table()


def test_successes_are_left_alone_unless_asked(tmp_path):
    from vla_rft.evaluation.eval_policy import ExpertPolicy

    config = _config(tmp_path / "corr", episodes_per_task=1, takeover_steps=(5,))
    summary = collect_corrections(config, ExpertPolicy, "expert", progress=False)
    assert summary.policy_episodes == {("reach-v3", "none"): [True]} and summary.written == 0
    config = _config(
        tmp_path / "corr", episodes_per_task=1, takeover_steps=(5,), failures_only=False
    )
    assert collect_corrections(config, ExpertPolicy, "expert", progress=False).written == 1


def test_a_policy_that_does_not_repeat_itself_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="deterministic policy"):
        collect_corrections(
            _config(tmp_path / "corr"), lambda robot: JitteryPolicy(), "jitter", progress=False
        )


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="takeover steps must be in"):
        _config("x", takeover_steps=(0, 40))
    with pytest.raises(ValueError, match="takeover steps must be in"):
        _config("x", takeover_steps=(120,))
    with pytest.raises(ValueError, match="perturbations must not be empty"):
        _config("x", perturbations=())
    with pytest.raises(ValueError, match=r"unknown perturbations \['sideways'\]"):
        _config("x", perturbations=("none", "sideways"))


def test_command_on_a_real_checkpoint(tmp_path, capsys):
    ckpt = train_tiny(write_instruction_episodes(tmp_path / "data"), tmp_path / "run")
    out = tmp_path / "corr"
    argv = ["--policy", str(ckpt), "--out", str(out), "--tasks", "push-v3", "--episodes", "1"]
    assert main([*argv, "--takeover", "8", "--max-steps", "60", "--keep-failed", "-q"]) == 0
    episode = read_episode(list_episodes(out)[0])
    assert episode.meta.extra["policy"] == str(ckpt)
    assert episode.images.shape[1:] == (16, 16, 3)  # the policy's own image size
    assert "expert takes over at step 8" in capsys.readouterr().out
    assert main([*argv, "--perturb", "sideways", "-q"]) == 2
    assert "unknown perturbations ['sideways']" in capsys.readouterr().err
