"""The simulator in place of the world model (issue 18's ceiling): recorded start states replayed
in MuJoCo, candidates executed there and scored by the task, and `vla-rft rft` on them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.test_rft import POLICY, read_instruction
from vla_rft.contract.config import ConfigError, to_dict
from vla_rft.contract.constants import OBS_IMAGE, OBS_INSTRUCTION, OBS_STATE, REPLAN_EVERY
from vla_rft.contract.manifest import ACTION_RANGE_KEY, INSTRUCTIONS_KEY, POLICY_CONFIG_KEY
from vla_rft.data import WindowConfig, build_datasets
from vla_rft.data.episode_store import write_episode
from vla_rft.models.checkpoint import load_checkpoint, save_checkpoint
from vla_rft.models.policy import VLAPolicy
from vla_rft.rollout.episode_loop import PolicyAgent
from vla_rft.rollout.replay import EpisodeReplayer, check_replayable
from vla_rft.runtime.chunk_broker import ChunkBrokerConfig
from vla_rft.runtime.torch_policy import TorchPolicy
from vla_rft.training.imagination import full_chunk_windows, policy_inputs
from vla_rft.training.optim import OptimConfig
from vla_rft.training.sim_rollouts import SimRewardConfig, candidate_rewards, simulate
from vla_rft.training.tracking import read_metrics
from vla_rft.training.train_rft import GRPOConfig, TrainRFTConfig, train

SIZE, MAX_STEPS = 16, 40


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Three noisy expert episodes of reach-v3 recorded by `vla-rft collect`, and a tiny policy
    that knows their instruction."""
    from vla_rft.cli import main as cli

    root = tmp_path_factory.mktemp("sim_rft")
    episodes = root / "episodes"
    args = ["-q", "collect", "--tasks", "reach-v3", "--episodes", "3", "--out", str(episodes),
            "--image-size", str(SIZE), "--max-steps", str(MAX_STEPS), "--noise", "0.1"]  # fmt: skip
    assert cli(args) == 0
    train_set, _, index = build_datasets([episodes], WindowConfig(val_fraction=0.0))
    torch.manual_seed(0)
    emb = np.random.default_rng(0).standard_normal(8).tolist()
    save_checkpoint(
        root / "policy", 10, VLAPolicy(POLICY), {}, train_set.stats.to_dict(),
        index.fingerprint(),
        extra={POLICY_CONFIG_KEY: to_dict(POLICY), ACTION_RANGE_KEY: [-1.0, 1.0],
               INSTRUCTIONS_KEY: {read_instruction(episodes): emb}},
    )  # fmt: skip
    return root


def _dataset(recorded, horizon=8):
    window = WindowConfig(
        image_size=SIZE, action_horizon=horizon, normalize=False, val_fraction=0.0
    )
    train_set, _, index = build_datasets([recorded / "episodes"], window, progress=False)
    return train_set, {e.name: e.meta for e in index.episodes}


def test_a_replayed_start_state_is_the_recorded_one(recorded):
    """Reset with the episode's seed and its recorded actions replayed: the state and the frame
    the episode recorded at that step, and the snapshot returns there after other steps."""
    data, metas = _dataset(recorded)
    replayer = EpisodeReplayer(SIZE, MAX_STEPS)
    try:
        for window in (0, 5, 17):
            name = data.episode_names[data.window_episode[window]]
            start = replayer.start(data, window, metas[name], name)
            obs = start.robot.restore(start.snapshot)
            np.testing.assert_array_equal(obs[OBS_IMAGE], data.images[window])
            np.testing.assert_allclose(obs[OBS_STATE], data.states[window], atol=1e-6)
            start.robot.step(np.ones(4, np.float32))
            again = start.robot.restore(start.snapshot)
            np.testing.assert_array_equal(again[OBS_IMAGE], data.images[window])
        wrong = {**metas[name], "extra": {**metas[name]["extra"], "perturbation": "robot_init"}}
        with pytest.raises(ValueError, match="did not reach its recorded state"):
            replayer.start(data, 17, wrong, name)
    finally:
        replayer.close()


def _imported(steps: int, instruction: str = "reach the red goal"):
    """An episode as an importer writes it: no simulator seed in its metadata."""
    from tests.conftest import make_episode

    episode = make_episode(steps=steps, size=16, instruction=instruction)
    return replace(episode, meta=replace(episode.meta, extra={}))


def test_episodes_without_a_seed_cannot_be_replayed(tmp_path):
    write_episode(tmp_path, "imported", _imported(10))
    _, _, index = build_datasets([tmp_path], WindowConfig(val_fraction=0.0), progress=False)
    with pytest.raises(ValueError, match=r"imported\).* recorded in the simulator"):
        check_replayable(index.episodes)


def _simulate_two_starts(recorded, chunks: int, group_size: int, reward: SimRewardConfig):
    """`simulate` from windows 0 and 9 of the recorded episodes -> (the rollouts, [(window,
    episode name)] of the starts, their batch, the data set, its metadata, the policy)."""
    horizon = chunks * POLICY.chunk_size
    data, metas = _dataset(recorded, horizon=horizon)
    base = TorchPolicy.from_checkpoint(recorded / "policy")
    windows = full_chunk_windows(data, horizon)[[0, 9]]
    batch = data.get_batch(windows)
    names = [data.episode_names[e] for e in batch["episode_index"]]
    obs = policy_inputs(base, batch["image"][:, -1], batch["state"], batch["instruction"], "cpu")
    replayer = EpisodeReplayer(SIZE, MAX_STEPS)
    try:
        starts = [replayer.start(data, int(w), metas[n], n, slot) for slot, (w, n) in
                  enumerate(zip(windows, names, strict=True))]  # fmt: skip
        rolled = simulate(
            base.model, base, starts, obs, batch["instruction"], group_size, chunks,
            torch.Generator().manual_seed(0), reward,
        )  # fmt: skip
    finally:
        replayer.close()
    return rolled, list(zip(windows, names, strict=True)), batch, data, metas, base


def test_simulated_candidates_get_the_reward_the_simulator_gives_their_actions(recorded):
    """Each candidate's reward is what executing its actions from the start state gives, checked
    on a fresh replay of the episode: success and Meta-World's dense reward at its last step; the
    second chunk was sampled on the frame the first one reached."""
    reward = SimRewardConfig(success_weight=1.0, progress_weight=0.5)
    rolled, starts, batch, data, metas, base = _simulate_two_starts(recorded, 2, 3, reward)
    check = EpisodeReplayer(SIZE, MAX_STEPS)
    try:
        assert rolled.rewards.shape == (2, 3) and rolled.actions.shape[:3] == (2, 3, 16)
        assert len(rolled.observations) == len(rolled.trajectories) == 2
        for b, (w, n) in enumerate(starts):
            start = check.start(data, int(w), metas[n], n)
            for g in range(3):
                obs_g = start.robot.restore(start.snapshot)
                success, dense = False, 0.0
                for t, action in enumerate(rolled.actions[b, g]):
                    if t == POLICY.chunk_size:  # what the second chunk was sampled on
                        row = b * 3 + g
                        expected = policy_inputs(
                            base, obs_g[OBS_IMAGE][None], obs_g[OBS_STATE][None],
                            [batch["instruction"][b]], "cpu",
                        )  # fmt: skip
                        for key, value in expected.items():
                            torch.testing.assert_close(rolled.observations[1][key][row], value[0])
                    obs_g, succeeded, done, info = start.robot.step(action)
                    success, dense = success or succeeded, info["reward"]
                    if done:
                        break
                assert rolled.terms["success"][b, g] == float(success)
                assert rolled.terms["progress"][b, g] == pytest.approx(dense / 10, abs=1e-6)
                assert rolled.rewards[b, g] == pytest.approx(success + 0.5 * dense / 10, abs=1e-6)
        assert not np.allclose(rolled.actions[0, 0], rolled.actions[0, 1])  # sampled, not equal
    finally:
        check.close()


def test_to_episode_end_scores_the_episode_the_evaluation_would_play_after_the_chunks(recorded):
    """With `to_episode_end`, a candidate's reward is the outcome of its whole episode: its
    sampled chunks, then the policy as the evaluation runs it (`PolicyAgent`: the noise-free
    chunk, a new one every REPLAN_EVERY ticks) until success or the step limit. Checked against
    that agent on a fresh replay; the rollout's scored actions and chains are those of the
    chunks alone."""
    reward = SimRewardConfig(success_weight=1.0, progress_weight=0.5, to_episode_end=True)
    rolled, starts, batch, data, metas, base = _simulate_two_starts(recorded, 1, 2, reward)
    check = EpisodeReplayer(SIZE, MAX_STEPS)
    try:
        assert rolled.actions.shape[:3] == (2, 2, POLICY.chunk_size)
        assert len(rolled.observations) == len(rolled.trajectories) == 1
        steps_after = []
        for b, (w, n) in enumerate(starts):
            start = check.start(data, int(w), metas[n], n)
            for g in range(2):
                obs_g = start.robot.restore(start.snapshot)
                agent = PolicyAgent(base, ChunkBrokerConfig(REPLAN_EVERY))
                success, done, steps = False, False, 0
                for action in rolled.actions[b, g]:
                    obs_g, succeeded, done, info = start.robot.step(action)
                    success, dense = success or succeeded, info["reward"]
                    if done:
                        break
                while not done:
                    obs_g = {**obs_g, OBS_INSTRUCTION: batch["instruction"][b]}
                    obs_g, succeeded, done, info = start.robot.step(agent.act(obs_g))
                    success, dense, steps = success or succeeded, info["reward"], steps + 1
                steps_after.append(steps)
                assert rolled.terms["success"][b, g] == float(success)
                assert rolled.terms["progress"][b, g] == pytest.approx(dense / 10, abs=1e-4)
        assert max(steps_after) > REPLAN_EVERY  # the episodes did go on after the chunk
    finally:
        check.close()


def test_candidate_rewards_weigh_success_and_progress():
    rewards, terms = candidate_rewards(
        np.array([[True, False]]), np.array([[10.0, 4.0]]), SimRewardConfig(2.0, 0.5)
    )
    torch.testing.assert_close(rewards, torch.tensor([[2.5, 0.2]]))
    assert set(terms) == {"success", "progress"}
    with pytest.raises(ValueError, match="cannot both be 0"):
        SimRewardConfig(0.0, 0.0)
    with pytest.raises(ValueError, match="must be >= 0"):
        SimRewardConfig(-1.0, 0.1)


def test_rft_in_the_simulator_trains_the_head_without_a_world_model(recorded, tmp_path):
    """`rollouts: simulator` needs no world model: two steps update the head, log the task's
    reward terms and say in the checkpoint where the candidates were rolled out."""
    config = TrainRFTConfig(
        policy=str(recorded / "policy"),
        world_model=str(tmp_path / "no_world_model_here"),
        data=(str(recorded / "episodes"),),
        optim=OptimConfig(steps=2, batch_size=2, lr=1e-3, warmup_steps=0, final_lr_fraction=1.0),
        grpo=GRPOConfig(group_size=3, chunks=2),
        rollouts="simulator",
        run_dir=str(tmp_path / "run"),
        log_every=1,
    )
    tuned = load_checkpoint(train(config, progress=False))
    base = load_checkpoint(recorded / "policy").weights
    assert any(not torch.equal(tuned.weights[k], base[k]) for k in base if k.startswith("head."))
    assert all(torch.equal(tuned.weights[k], base[k]) for k in base if not k.startswith("head."))
    assert tuned.extra["rft"]["rollouts"] == "simulator" and "world_model" not in tuned.extra["rft"]
    rows = read_metrics(tmp_path / "run")
    assert len(rows) == 2 and all(0 <= r["reward/success"] <= 1 for r in rows)
    assert all(0 < r["reward/progress"] <= 1.1 for r in rows)
    with pytest.raises(ValueError, match="rollouts must be one of"):
        TrainRFTConfig(rollouts="dream")


def test_rft_in_the_simulator_refuses_episodes_it_cannot_replay(recorded, tmp_path):
    instruction = read_instruction(recorded / "episodes")
    for i in range(6):  # some land in the training split
        write_episode(tmp_path / "imported", f"ep{i}", _imported(20, instruction))
    config = TrainRFTConfig(
        policy=str(recorded / "policy"), data=(str(tmp_path / "imported"),),
        optim=OptimConfig(steps=1, batch_size=1, warmup_steps=0), grpo=GRPOConfig(group_size=2),
        rollouts="simulator", run_dir=str(tmp_path / "run"),
    )  # fmt: skip
    with pytest.raises(ConfigError, match="recorded in the simulator"):
        train(config, progress=False)
