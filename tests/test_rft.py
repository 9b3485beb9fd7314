"""VLA-RFT's loop on tiny models: the reference rollout, an update that moves only the head,
checkpoints the policy tools can load, resume, the sampler's chain start, dropped groups, start
frames at the world model's size, and one step on a device that is not the host's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from vla_rft.contract.config import ConfigError, load_config, to_dict
from vla_rft.contract.manifest import ACTION_RANGE_KEY, INSTRUCTIONS_KEY, POLICY_CONFIG_KEY
from vla_rft.data import WindowConfig, build_datasets
from vla_rft.data.dataset import CachedEpisode
from vla_rft.data.episode_store import write_episode
from vla_rft.data.normalization import NormStats
from vla_rft.models.checkpoint import load_checkpoint, save_checkpoint
from vla_rft.models.policy import PolicyConfig, VLAPolicy
from vla_rft.models.policy.chunk_head import CHAIN_STARTS, gaussian_log_density
from vla_rft.models.world_model.configuration_world_model import WorldModelConfig
from vla_rft.models.world_model.modeling_world_model import WorldModel, load_world_model
from vla_rft.models.world_model.proprio import ProprioModel
from vla_rft.rl.rewards import RewardConfig
from vla_rft.runtime.torch_policy import TorchPolicy
from vla_rft.training import train_rft
from vla_rft.training.distributed import DistInfo
from vla_rft.training.imagination import (
    full_chunk_windows,
    imagine,
    policy_inputs,
    score_chunks,
    to_world_model_actions,
)
from vla_rft.training.tracking import read_metrics
from vla_rft.training.train_rft import (
    GRPOConfig,
    TrainRFTConfig,
    check_start_frames,
    curve_keys,
    train,
)
from vla_rft.training.train_world_model import TrainWorldModelConfig

INSTRUCTION = "reach the red goal"
REPO = Path(__file__).resolve().parents[1]
POLICY = PolicyConfig(
    image_size=16, vision_channels=(8, 16), width=32, heads=2, decoder_layers=1,
    instruction_dim=8, flow_steps=4,
)  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny episodes, a tiny policy and a tiny world model saved as their trainers save them."""
    from tests.conftest import make_episode

    root = tmp_path_factory.mktemp("rft")
    episodes = root / "episodes"
    for i in range(3):
        write_episode(
            episodes, f"ep{i}", make_episode(steps=20, size=16, seed=i, instruction=INSTRUCTION)
        )
    train_set, _, index = build_datasets([episodes], WindowConfig(val_fraction=0.0))
    stats = train_set.stats.to_dict()
    torch.manual_seed(0)
    pcfg = POLICY
    emb = np.random.default_rng(0).standard_normal(8).tolist()
    save_checkpoint(
        root / "policy",
        10,
        VLAPolicy(pcfg),
        {},
        stats,
        index.fingerprint(),
        extra={
            POLICY_CONFIG_KEY: to_dict(pcfg),
            INSTRUCTIONS_KEY: {INSTRUCTION: emb},
            ACTION_RANGE_KEY: [-1.0, 1.0],
        },
    )
    wcfg = WorldModelConfig(image_size=16, channels=(8, 16), dynamics_blocks=1, action_embed=8)
    world_model = WorldModel(wcfg)
    with torch.no_grad():  # untrained, it ignores the actions; random weights do not
        for p in world_model.parameters():
            p.normal_(0.0, 0.3)
    save_checkpoint(
        root / "world_model",
        10,
        world_model,
        {"model": to_dict(wcfg)},
        stats,
        index.fingerprint(),
    )
    return root


def _config(root, steps=2, lr=1e-3, **grpo):
    return TrainRFTConfig(
        policy=str(root / "policy"),
        world_model=str(root / "world_model"),
        data=(str(root / "episodes"),),
        run_dir=str(root / "run"),
        threads=1,
        log_every=1,
        save_every=2,
        optim=replace(TrainRFTConfig().optim, steps=steps, batch_size=3, lr=lr, warmup_steps=1),
        grpo=GRPOConfig(**{"group_size": 4, "sigma_lr": 1e-3, **grpo}),
    )


def test_reference_rollout_uses_the_real_actions(setup):
    world_model, ckpt = load_world_model(setup / "world_model")
    stats = NormStats.from_dict(ckpt.norm_stats)
    rng = np.random.default_rng(0)
    context = rng.integers(0, 256, (2, 1, 16, 16, 3), dtype=np.uint8)
    real = torch.from_numpy(rng.uniform(-1, 1, (2, 8, 4)).astype(np.float32))
    other = torch.from_numpy(rng.uniform(-1, 1, (2, 8, 4)).astype(np.float32))
    candidates = torch.stack([real, other, real], dim=1)  # [B, G=3, K, A]
    rewards, terms = score_chunks(world_model, context, candidates, real, stats, RewardConfig())
    # a candidate equal to the real chunk reproduces the reference exactly: the best reward, 0
    torch.testing.assert_close(rewards[:, 0], torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(rewards[:, 0], rewards[:, 2])
    assert (rewards[:, 1] < -1e-4).all() and (terms["pixel_mae"][:, 1] > 0).all()


def test_rft_updates_only_the_head_and_writes_policy_checkpoints(setup):
    config = _config(setup)
    last = train(config, progress=False)
    base = load_checkpoint(setup / "policy").weights
    tuned = load_checkpoint(last).weights
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all(k.startswith("head.") for k in changed), "the backbone stays frozen"
    assert any(k.startswith("head.sigma.") for k in changed), "the sigma net learns"
    policy = TorchPolicy.from_checkpoint(last)  # what `vla-rft eval` and `export` load
    obs = {
        "image": np.zeros((16, 16, 3), np.uint8),
        "state": np.zeros(4, np.float32),
        "instruction": INSTRUCTION,
    }
    assert policy.infer(obs)["action"].shape == (8, 4)
    rows = read_metrics(setup / "run")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["grpo/dropped_groups"] == 0 for r in rows), "min_group_spread 0 keeps all"
    assert all(np.isfinite(r["reward/mean"]) and r["reward/mean"] <= 0 for r in rows)
    assert (setup / "run" / "curves.png").is_file()
    plotted = set(curve_keys(in_simulator=False))
    assert plotted <= set(rows[-1]), "every panel of curves.png has data"
    assert {k for k in rows[-1] if k.startswith("grpo/")} <= plotted, "the group filter is plotted"

    resumed = train(_config(setup, steps=4), resume=True, progress=False)
    assert load_checkpoint(resumed).step == 4
    assert [r["step"] for r in read_metrics(setup / "run")] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train(config, progress=False)


def test_closed_loop_imagination_acts_on_the_imagined_frame_and_state(setup):
    """chunks=2: the second chunk is sampled from the last imagined frame and the proprio
    model's state, the frames are one world-model rollout of both chunks, and the recorded
    log-probability is the policy's (ratio 1 at the update)."""
    base = TorchPolicy.from_checkpoint(str(load_checkpoint(setup / "policy").path))
    world_model, ckpt = load_world_model(setup / "world_model")
    stats = NormStats.from_dict(ckpt.norm_stats)
    window = WindowConfig(action_horizon=16, normalize=False, val_fraction=0.0)
    train_set, _, _ = build_datasets([setup / "episodes"], window)
    batch = train_set.get_batch(np.array([0, 20]))  # two episodes' first steps
    obs = policy_inputs(base, batch["image"][:, -1], batch["state"], batch["instruction"], "cpu")
    proprio = ProprioModel.fit(train_set.states, train_set.actions, train_set.ep_start)
    previous = np.zeros((2, 4), np.float32)
    imagined = imagine(
        base.model, base, world_model, stats, batch, obs, 3, 2,
        torch.Generator().manual_seed(0), proprio, previous,
    )  # fmt: skip
    assert imagined.frames.shape == (2, 3, 16, 16, 16, 3) and imagined.actions.shape == (
        2,
        3,
        16,
        4,
    )
    replay = world_model.rollout(batch["image"], to_world_model_actions(imagined.actions, stats))
    torch.testing.assert_close(imagined.frames, replay, atol=1e-5, rtol=0)
    # the second chunk's input: the imagined frame after action 8 and the estimated state
    last = (imagined.frames[:, :, 7].flatten(0, 1) * 255).round().to(torch.uint8).numpy()
    states = proprio.rollout(
        np.repeat(batch["state"], 3, 0),
        imagined.actions[:, :, :8].reshape(6, 8, 4),
        np.repeat(previous, 3, 0),
    )[:, -1]
    want = policy_inputs(base, last, states, [INSTRUCTION] * 6, "cpu")
    for key, value in want.items():
        torch.testing.assert_close(imagined.observations[1][key], value)
    assert not torch.equal(imagined.observations[1]["image"], imagined.observations[0]["image"])
    torch.testing.assert_close(imagined.chain_log_prob(base.model), imagined.log_prob)
    with pytest.raises(ValueError, match="needs a ProprioModel"):
        imagine(base.model, base, world_model, stats, batch, obs, 3, 2, None)


def test_rft_with_chained_chunks_trains(setup, tmp_path):
    config = _config(setup, chunks=2)
    config = TrainRFTConfig(**{**config.__dict__, "run_dir": str(tmp_path / "chained")})
    tuned = load_checkpoint(train(config, progress=False)).weights
    base = load_checkpoint(setup / "policy").weights
    assert any(not torch.equal(tuned[k], base[k]) for k in base if k.startswith("head."))


def test_supervised_control_learns_the_real_actions_without_the_reward(setup, tmp_path):
    """pg_weight=0 with a constant BC weight is the same loop as a supervised fine-tune of the
    head on the start states: the deterministic chunk moves towards the real actions. With the
    paper's drift schedule nothing pulls a policy that has not moved, so only the sigma net
    (entropy bonus) changes."""

    def run(name, **grpo):
        config = _config(setup, steps=25, pg_weight=0.0, **grpo)
        config = TrainRFTConfig(**{**config.__dict__, "run_dir": str(tmp_path / name)})
        return load_checkpoint(train(config, progress=False))

    window = WindowConfig(action_horizon=8, normalize=False, val_fraction=0.0)
    data, _, _ = build_datasets([setup / "episodes"], window)
    batch = data.get_batch(np.arange(0, len(data), 3))

    def action_error(checkpoint):  # deterministic chunk vs the real actions, normalised units
        policy = TorchPolicy.from_checkpoint(str(checkpoint.path))
        obs = policy_inputs(
            policy, batch["image"][:, -1], batch["state"], batch["instruction"], "cpu"
        )
        real = policy.transforms.action.normalizer.normalize(batch["action"])
        with torch.no_grad():
            chunk = policy.model.predict_chunk(
                obs["image"], obs["instruction_embedding"], obs["state"]
            )
        return float((chunk - torch.from_numpy(real)).abs().mean())

    base = load_checkpoint(setup / "policy")
    supervised = run("bc", bc_weight=1.0, bc_schedule="constant", lr=5e-3)
    assert action_error(supervised) < 0.95 * action_error(base)  # toy actions are noisy
    assert "policy/action_error" in read_metrics(tmp_path / "bc")[-1]
    drift_scheduled = run("drift", bc_weight=1.0, bc_schedule="drift").weights
    changed = {k for k in base.weights if not torch.equal(base.weights[k], drift_scheduled[k])}
    assert changed and all(k.startswith("head.sigma.") for k in changed)
    with pytest.raises(ValueError, match="bc_schedule must be one of"):
        GRPOConfig(bc_schedule="always")
    with pytest.raises(ValueError, match="pg_weight and bc_weight must be >= 0"):
        GRPOConfig(pg_weight=-1.0)


@pytest.mark.slow
def test_data_parallel_rft_under_torchrun_keeps_the_ranks_in_step(setup, tmp_path):
    run_dir = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
        "-m", "vla_rft.training.train_rft", "-q",
        "--policy", str(setup / "policy"), "--world-model", str(setup / "world_model"),
        "--set", f"data=[{setup / 'episodes'}]", "--set", f"run_dir={run_dir}",
        "--set", "threads=1", "--set", "optim.steps=2", "--set", "optim.batch_size=4",
        "--set", "grpo.group_size=4", "--set", "optim.lr=1e-3", "--set", "grpo.sigma_lr=1e-3",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stdout
    # each rank samples its own start states; averaged gradients keep the weights identical
    finished = r"rank \d: finished at step 2, trained weights ([0-9a-f]{16})"
    digests = re.findall(finished, done.stdout)
    assert len(digests) == 2 and digests[0] == digests[1], done.stdout
    tuned, base = load_checkpoint(run_dir).weights, load_checkpoint(setup / "policy").weights
    assert any(not torch.equal(tuned[k], base[k]) for k in base if k.startswith("head."))


@pytest.mark.slow
def test_reward_check_replays_real_episodes_in_the_simulator(setup, tmp_path):
    from vla_rft.cli import main as cli
    from vla_rft.evaluation.reward_check import markdown, reward_check, spearman

    episodes = tmp_path / "episodes"
    assert (
        cli(
            [
                "-q",
                "collect",
                "--tasks",
                "reach-v3",
                "--episodes",
                "3",
                "--out",
                str(episodes),
                "--image-size",
                "16",
                "--max-steps",
                "30",
                "--noise",
                "0.1",
            ]
        )
        == 0
    )
    policy_dir = tmp_path / "policy"
    ckpt = load_checkpoint(setup / "policy")
    instruction = read_instruction(episodes)
    extra = {
        **ckpt.extra,
        INSTRUCTIONS_KEY: {instruction: next(iter(ckpt.extra[INSTRUCTIONS_KEY].values()))},
    }
    model = TorchPolicy.from_checkpoint(setup / "policy").model
    save_checkpoint(policy_dir, 1, model, {}, ckpt.norm_stats, "x", extra=extra)
    summary = reward_check(
        policy_dir,
        setup / "world_model",
        [episodes],
        starts=2,
        samples=2,
        seed=0,
        max_steps=30,
        progress=False,
    )
    rows = summary["rows"]
    assert {r["kind"] for r in rows} == {"expert", "policy", "policy_sample", "random"}
    for start in {r["start"] for r in rows}:
        group = [r for r in rows if r["start"] == start]
        expert = next(r for r in group if r["kind"] == "expert")
        assert expert["reward"] == pytest.approx(0.0, abs=1e-6)
        assert expert["reward"] >= max(r["reward"] for r in group) - 1e-9
        assert expert["action_error"] == 0.0
        assert all(r["action_error"] > 0 for r in group if r["kind"] != "expert")
    assert summary["policy_groups"] == 2  # every group of the policy's chunks is ranked
    assert summary["gate"]["groups"] == 2 and "gate for RL:" in markdown(summary)
    assert -1.0 <= summary["spearman_within_policy_group_reward_closeness"] <= 1.0
    assert spearman(np.array([1, 2, 3]), np.array([0, 0, 1])) == pytest.approx(0.866, abs=1e-3)
    # two chunks per candidate, the policy's imagined closed loop (chains from x_0 ~ N(0, I)):
    # the expert is still exact
    chained = reward_check(
        policy_dir, setup / "world_model", [episodes], starts=1, samples=2, seed=0,
        max_steps=30, progress=False, chunks=2, chain_start="noise",
    )  # fmt: skip
    expert = next(r for r in chained["rows"] if r["kind"] == "expert")
    assert expert["reward"] == pytest.approx(0.0, abs=1e-6) and len(chained["rows"]) == 6
    with pytest.raises(ValueError, match="chunks, starts and samples must be >= 1"):
        reward_check(policy_dir, setup / "world_model", [episodes], 1, 2, 0, chunks=0)
    with pytest.raises(ValueError, match="chain_start must be one of"):
        reward_check(policy_dir, setup / "world_model", [episodes], 1, 2, 0, chain_start="one")
    # the expert's clean actions (collected with noise, so not the executed ones) as the
    # reference: the expert's chunk is the reference again, and closer to the policy's
    clean = reward_check(
        policy_dir, setup / "world_model", [episodes], starts=2, samples=2, seed=0,
        max_steps=30, progress=False, reference="expert",
    )  # fmt: skip
    for row in (r for r in clean["rows"] if r["kind"] == "expert"):
        assert row["reward"] == pytest.approx(0.0, abs=1e-6)
    moved = [a["action_error"] != b["action_error"] for a, b in
             zip(rows, clean["rows"], strict=True) if a["kind"] == "policy"]  # fmt: skip
    assert all(moved)
    with pytest.raises(ValueError, match="reference must be one of"):
        reward_check(policy_dir, setup / "world_model", [episodes], 1, 2, 0, reference="noisy")
    # start states among each held-out episode's first frames, as the rft recipe's start_steps
    first = reward_check(
        policy_dir, setup / "world_model", [episodes], starts=2, samples=2, seed=0,
        max_steps=30, progress=False, start_steps=1,
    )  # fmt: skip
    assert first["rows"] and {r["step"] for r in first["rows"]} == {0}
    with pytest.raises(ValueError, match="start_steps must be >= 0"):
        reward_check(policy_dir, setup / "world_model", [episodes], 1, 2, 0, start_steps=-1)


def _rows(groups):
    """Reward-check rows from {start: [(reward, success, dense reward), ...]} of policy chunks."""
    return [
        {"start": start, "kind": "policy_sample", "reward": r, "success": ok,
         "dense_reward": d, "action_error": 0.1}
        for start, chunks in groups.items() for r, ok, d in chunks
    ]  # fmt: skip


def test_reward_check_gates_rl_on_ranking_and_mixed_groups():
    """Issue 18's gate before any RL on a reward: within the policy's groups, Spearman(reward,
    real success) > 0.5, and at least a third of the groups with mixed outcomes. The simulator's
    own progress (Meta-World's dense reward after the chunk) is scored the same way: no learned
    progress reward can rank better than the progress it learns from."""
    from vla_rft.evaluation.reward_check import GATE_MIXED_FRACTION, GATE_SPEARMAN, summarize

    ranked = {0: [(-1, False, 0.1), (0, True, 0.9)], 1: [(-2, False, 0.9), (-1, True, 0.1)],
              2: [(0, True, 1.0), (-1, True, 0.5)]}  # fmt: skip
    gate = summarize(_rows(ranked))["gate"]
    assert gate["mixed_fraction"] == pytest.approx(2 / 3) and GATE_MIXED_FRACTION <= 2 / 3
    assert gate["spearman"] == pytest.approx(1.0) and GATE_SPEARMAN < 1.0
    assert gate["passed"] is True
    assert gate["progress_spearman"] == pytest.approx(0.0)  # +1 in group 0, -1 in group 1
    assert gate["progress_passed"] is False

    wrong = {**ranked, 1: [(-1, False, 0.1), (-2, True, 0.9)]}  # the reward inverts group 1
    gate = summarize(_rows(wrong))["gate"]
    assert gate["spearman"] == pytest.approx(0.0) and gate["passed"] is False
    assert gate["progress_spearman"] == pytest.approx(1.0) and gate["progress_passed"] is True

    same = {start: [(-1, True, 0.2), (0, True, 0.3)] for start in range(3)}  # nothing to rank
    gate = summarize(_rows({**same, 0: ranked[0]}))["gate"]
    assert gate["mixed_fraction"] == pytest.approx(1 / 3)
    assert gate["passed"] is True  # a third is enough
    gate = summarize(_rows({**same, 3: [(0, True, 0.1)] * 2, 0: ranked[0]}))["gate"]
    assert gate["mixed_fraction"] == pytest.approx(1 / 4) and gate["passed"] is False
    assert "gate for RL: FAIL" in markdown_of(_rows({**same, 3: [(0, True, 0.1)] * 2}))


def markdown_of(rows):
    from vla_rft.evaluation.reward_check import markdown, summarize

    return markdown(summarize(rows))


def read_instruction(episodes):
    from vla_rft.data.episode_store import list_episodes, read_episode_meta

    return read_episode_meta(list_episodes(episodes)[0]).instruction


@pytest.mark.parametrize("head", ["flow", "gaussian"])
def test_chains_from_either_start_rescore_to_their_log_prob(head):
    """x_0 = 0 or x_0 ~ N(0, I): x_0 is an input to the chain, not part of its density, so a
    recorded chain re-scores to the log-probability it was sampled with, the sum of its S
    transitions' densities; with no noise either start gives the deployed chunk."""
    torch.manual_seed(0)
    policy = VLAPolicy(replace(POLICY, head=head)).eval()
    obs = policy.encode(torch.rand(3, 3, 16, 16), torch.randn(3, 8), torch.randn(3, 4))
    h = policy.head
    with torch.no_grad():
        for start in CHAIN_STARTS:
            sample = h.sample(obs, torch.Generator().manual_seed(1), start=start)
            chain, memory = sample.trajectory, h.decoder.memory(obs.tokens)
            assert bool((chain[:, 0] == 0).all()) == (start == "zero")
            transitions = sum(
                gaussian_log_density(
                    chain[:, k + 1],
                    h.step_mean(chain[:, k], h._time(k, obs), obs, memory),
                    h.sigma(obs.pooled, h._time(k, obs)),
                ).sum((1, 2))
                for k in range(h.steps)
            )
            torch.testing.assert_close(sample.log_prob, transitions, rtol=1e-5, atol=1e-4)
            torch.testing.assert_close(
                h.log_prob(obs, chain), sample.log_prob, rtol=1e-5, atol=1e-4
            )
            quiet = h.sample(obs, torch.Generator().manual_seed(1), noise_scale=0.0, start=start)
            torch.testing.assert_close(quiet.actions, h.deterministic(obs), rtol=0, atol=1e-6)
        with pytest.raises(ValueError, match="start must be one of"):
            h.sample(obs, None, start="uniform")
    with pytest.raises(ValueError, match="chain_start must be one of"):
        GRPOConfig(chain_start="uniform")


def test_groups_without_spread_leave_the_policy_gradient(setup, tmp_path):
    """min_group_spread above every group's reward std drops all groups: no policy gradient,
    the drift-scheduled BC has nothing to pull, so only the sigma net (entropy) moves, and the
    metrics count B dropped groups per step."""
    config = _config(setup, min_group_spread=1e9)
    config = TrainRFTConfig(**{**config.__dict__, "run_dir": str(tmp_path / "dropped")})
    tuned = load_checkpoint(train(config, progress=False)).weights
    base = load_checkpoint(setup / "policy").weights
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all(k.startswith("head.sigma.") for k in changed)
    rows = read_metrics(tmp_path / "dropped")
    assert [r["grpo/dropped_groups"] for r in rows] == [3.0, 3.0]
    assert all(r["loss/policy_gradient"] == 0 for r in rows)
    with pytest.raises(ValueError, match="min_group_spread must be >= 0"):
        GRPOConfig(min_group_spread=-1.0)
    for name in ("log_prob_reduction", "advantage_scale"):
        with pytest.raises(ValueError, match=f"{name} must be one of"):
            GRPOConfig(**{name: "median"})


def test_log_prob_reduction_reaches_the_update(setup, tmp_path):
    """'mean' divides the chunk's Gaussian terms by their number, the entropy bonus's too: the
    logged entropy (per step) of the same first step is the 'sum' one over K x A = 32."""
    entropy = {}
    for reduction in ("sum", "mean"):
        config = _config(setup, steps=1, log_prob_reduction=reduction)
        run_dir = tmp_path / reduction
        train(TrainRFTConfig(**{**config.__dict__, "run_dir": str(run_dir)}), progress=False)
        entropy[reduction] = read_metrics(run_dir)[0]["policy/entropy"]
    assert entropy["mean"] == pytest.approx(entropy["sum"] / 32, rel=1e-5)


def test_start_frames_recorded_smaller_than_the_world_model_are_refused():
    def episode(name, size):
        extra = {} if size is None else {"image_size": size}
        return CachedEpisode(name, None, None, None, {"extra": extra}, cameras={})

    check_start_frames([episode("a", 128), episode("b", 256), episode("import", None)], 128, "wm")
    with pytest.raises(ConfigError, match=r"wm works at 128 px .*: 2 at 64 px \(e.g. c\)"):
        check_start_frames([episode("a", 128), episode("c", 64), episode("d", 64)], 128, "wm")


@pytest.mark.parametrize("preset", ["debug", "cpu", "gpu", "quickstart"])
def test_rft_recipes_start_from_their_world_models_data(preset):
    """Start frames come at the world model's image size from episodes like the ones it was
    trained on (the gpu world model trains on 128 px episodes)."""
    recipes = REPO / "training" / preset
    rft = load_config(TrainRFTConfig, recipes / "rft.yaml")
    world_model = load_config(TrainWorldModelConfig, recipes / "world_model.yaml")
    assert set(rft.data) <= set(world_model.data.roots)


HOST_CALLS = {
    torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.item, torch.Tensor.tolist,
    torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__array__,
}  # fmt: skip


class OtherDevice(TorchFunctionMode):
    """Torch as if the model's device were not the host's, on a machine without one: tensors on
    `meta` carry shapes only and torch refuses ops that mix them with CPU tensors, as CUDA does;
    a generator must be on the device of the tensor it fills (CUDA's rule, which meta does not
    check); a meta tensor copied to the host reads as zeros (as a condition: True)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        generator = kwargs.get("generator")
        if generator is not None:
            target = kwargs.get("device") or next(
                (a.device for a in args if isinstance(a, torch.Tensor)), "cpu"
            )
            if torch.device(target).type != generator.device.type:
                raise RuntimeError(f"{func.__name__}: a {generator.device} generator for {target}")
        first = args[0] if args else None
        if isinstance(first, torch.Tensor) and first.is_meta:
            if func is torch.Tensor.__bool__:
                return True
            to_host = func is torch.Tensor.to and any(
                isinstance(a, (str, torch.device)) and torch.device(a).type == "cpu"
                for a in (*args[1:], *kwargs.values())
            )
            if func in HOST_CALLS or to_host:
                args = (torch.zeros(first.shape, dtype=first.dtype), *args[1:])
        return func(*args, **kwargs)


def test_the_device_guard_refuses_what_a_gpu_refuses():
    with OtherDevice():
        with pytest.raises(RuntimeError, match="a cpu generator for meta"):
            torch.randn(2, generator=torch.Generator(), device="meta")
        with pytest.raises(RuntimeError, match="device"):
            torch.ones(2, device="meta") * torch.ones(2, dtype=torch.bool)
        assert torch.ones(2, device="meta").cpu().tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    "grpo",
    [
        {},
        {
            "chunks": 2, "chain_start": "noise", "advantage_scale": "batch",
            "min_group_spread": 1e-4, "log_prob_reduction": "sum", "kl_weight": 0.1,
        },
    ],
    ids=["debug-recipe", "every-option"],
)  # fmt: skip
def test_one_rft_step_keeps_every_tensor_on_the_device(setup, tmp_path, monkeypatch, grpo):
    """One step of the debug recipe with the models on a device that is not the host's
    (OtherDevice): sampling, rollouts, reward, advantages and the update, as a GPU run's first
    step. A CPU generator or a CPU-built mask in the loop fails here as it would on CUDA."""
    meta = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("meta"))
    monkeypatch.setattr(train_rft.dist, "init_distributed", lambda device: meta)
    config = load_config(
        TrainRFTConfig,
        REPO / "training" / "debug" / "rft.yaml",
        [
            f"policy={setup / 'policy'}", f"world_model={setup / 'world_model'}",
            f"data=[{setup / 'episodes'}]", f"run_dir={tmp_path / 'run'}", "threads=1",
            "optim.steps=1", *(f"grpo.{k}={v}" for k, v in grpo.items()),
        ],
    )  # fmt: skip
    with OtherDevice():
        last = train(config, progress=False)
    assert load_checkpoint(last).step == 1
    assert "grpo/dropped_groups" in read_metrics(tmp_path / "run")[-1]


def test_the_expert_reference_follows_the_clean_actions(setup, tmp_path):
    """reference_actions: expert takes the reference rollout and the regulariser's targets from
    the expert's clean actions the episodes recorded: the same first step then measures another
    action error; episodes without them are refused by name."""
    from tests.conftest import make_episode
    from vla_rft.contract.constants import EXPERT_ACTIONS_KEY

    for i in range(3):
        episode = make_episode(steps=20, size=16, seed=i, instruction=INSTRUCTION)
        clean = np.clip(episode.actions[:, ::-1] * 0.5, -1, 1)  # anything but the executed ones
        extra = {**episode.meta.extra, EXPERT_ACTIONS_KEY: clean.tolist()}
        write_episode(
            tmp_path / "clean", f"ep{i}", replace(episode, meta=replace(episode.meta, extra=extra))
        )
    error = {}
    for reference in ("executed", "expert"):
        config = replace(
            _config(setup, steps=1), data=(str(tmp_path / "clean"),), reference_actions=reference,
            run_dir=str(tmp_path / reference),
        )  # fmt: skip
        train(config, progress=False)
        error[reference] = read_metrics(tmp_path / reference)[0]["policy/action_error"]
    assert error["executed"] != pytest.approx(error["expert"], rel=1e-3)
    with pytest.raises(ConfigError, match="did not record the expert's clean actions"):
        train(replace(_config(setup, steps=1), reference_actions="expert",
                      run_dir=str(tmp_path / "old")), progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="reference_actions must be one of"):
        TrainRFTConfig(reference_actions="noisy")


def test_start_steps_draws_start_states_from_each_episodes_first_frames(setup, tmp_path, capsys):
    """start_steps: 1 keeps one start state per episode, its first frame (where a takeover in
    collect-corrections data began: the policy's own state); a batch larger than the start
    states left is refused by name, not by numpy's sampler."""
    train_set, _, _ = build_datasets([setup / "episodes"], WindowConfig(val_fraction=0.0))
    anywhere = full_chunk_windows(train_set, 8)
    np.testing.assert_array_equal(full_chunk_windows(train_set, 8, first=1), train_set.ep_start)
    first3 = full_chunk_windows(train_set, 8, first=3)
    assert len(first3) == 9 and set(first3) <= set(anywhere)
    assert (first3 - train_set.ep_start[train_set.window_episode[first3]] < 3).all()

    config = _config(setup, steps=1)
    optim = replace(config.optim, batch_size=2)
    first = replace(config, start_steps=1, optim=optim, run_dir=str(tmp_path / "a"))
    train(first, progress=False)  # 2 of the 3 episodes are the training split
    printed = capsys.readouterr().out
    assert "2 start states (each episode's first 1 frames) from 2 episodes" in printed
    bigger = replace(first, optim=replace(first.optim, batch_size=3), run_dir=str(tmp_path / "b"))
    with pytest.raises(ConfigError, match=r"only 2 start states .* batch_size 3"):
        train(bigger, progress=False)
    with pytest.raises(ValueError, match="start_steps must be >= 0"):
        TrainRFTConfig(start_steps=-1)


def test_update_epochs_reuse_each_batch_of_rollouts_for_several_clipped_steps(setup, tmp_path):
    """update_epochs=E takes E optimiser steps on every batch of rollouts (PPO's epochs): the
    saved Adam state counts steps x E. The rollouts' log-probs stay the ratio's denominator, so
    after the first epoch the ratio leaves 1 and the clip acts; with one epoch (on-policy) it
    never does."""
    clipped = {}
    for epochs in (1, 3):
        config = _config(setup, steps=2, lr=1e-2, update_epochs=epochs, advantage_scale="batch")
        run_dir = tmp_path / f"epochs{epochs}"
        last = train(TrainRFTConfig(**{**config.__dict__, "run_dir": str(run_dir)}), progress=False)
        adam = load_checkpoint(last, with_optimizer=True).optimizer["state"]
        assert {int(s["step"]) for s in adam.values()} == {2 * epochs}
        clipped[epochs] = [r["policy/clip_fraction"] for r in read_metrics(run_dir)]
    assert clipped[1] == [0.0, 0.0]
    assert max(clipped[3]) > 0
    with pytest.raises(ValueError, match="update_epochs must be >= 1"):
        GRPOConfig(update_epochs=0)


def test_backbone_lr_trains_the_observation_encoder_with_the_head(setup, tmp_path):
    """backbone_lr > 0 unfreezes the encoder (vision, instruction and state projections, fusion),
    which then learns from the same loss as the head; 0 (the default) keeps it the base's, as
    test_rft_updates_only_the_head_and_writes_policy_checkpoints checks."""
    config = _config(setup, backbone_lr=1e-3)
    last = train(replace(config, run_dir=str(tmp_path / "run")), progress=False)
    base = load_checkpoint(setup / "policy").weights
    tuned = load_checkpoint(last).weights
    changed = {k.split(".")[0] for k in base if not torch.equal(base[k], tuned[k])}
    assert {"head", "vision", "fuse"} <= changed
    with pytest.raises(ValueError, match="backbone_lr must be >= 0"):
        GRPOConfig(backbone_lr=-1e-4)


def test_skip_empty_batches_takes_no_step_where_no_group_keeps_a_policy_gradient(setup, tmp_path):
    """A batch whose groups all lack spread has no policy gradient. By default its step still
    applies the BC and entropy terms, and under Adam a step with one term alone is a full lr step
    along it (the supervised control). skip_empty_batches leaves the weights and the optimiser
    untouched there; grpo/empty_batches logs the fraction of such steps either way."""
    base = load_checkpoint(setup / "policy").weights
    tuned = {}
    for skip in (False, True):
        config = _config(setup, min_group_spread=1e9, bc_schedule="constant", bc_weight=1.0)
        config = replace(config, grpo=replace(config.grpo, skip_empty_batches=skip))
        run_dir = tmp_path / f"skip{skip}"
        last = train(replace(config, run_dir=str(run_dir)), progress=False)
        tuned[skip] = load_checkpoint(last, with_optimizer=True)
        assert [r["grpo/empty_batches"] for r in read_metrics(run_dir)] == [1.0, 1.0]
    moved = {k for k in base if not torch.equal(base[k], tuned[False].weights[k])}
    assert any(k.startswith("head.") and not k.startswith("head.sigma.") for k in moved)
    assert all(torch.equal(base[k], tuned[True].weights[k]) for k in base)
    assert not tuned[True].optimizer["state"]
