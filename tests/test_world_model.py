"""The world model: rollout shapes and input checks, checkpoints, training (loss, resume, DDP)
and the evaluation command, on episodes recorded in the real simulator."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vla_rft.contract.config import ConfigError, load_config, to_dict
from vla_rft.data import WindowConfig, build_datasets
from vla_rft.evaluation import eval_world_model
from vla_rft.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vla_rft.models.world_model import WorldModel, WorldModelConfig, load_world_model
from vla_rft.rollout.collect import CollectConfig, collect
from vla_rft.training import train_world_model as twm

REPO = Path(__file__).resolve().parents[1]
DEBUG_RECIPE = REPO / "training/debug/world_model.yaml"
TINY = WorldModelConfig(image_size=16, context_frames=2, channels=(8, 16), action_embed=8)


def _random_model(config: WorldModelConfig = TINY, seed: int = 0) -> WorldModel:
    """Untrained models ignore the actions (the head starts at zero); random weights do not."""
    torch.manual_seed(seed)
    model = WorldModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


def _inputs(b=2, g=3, t=5, seed=0):
    rng = np.random.default_rng(seed)
    context = rng.integers(0, 256, (b, TINY.context_frames, 16, 16, 3), dtype=np.uint8)
    return context, rng.normal(size=(b, g, t, TINY.action_dim)).astype(np.float32)


# --- model ---------------------------------------------------------------------------------------


def test_rollout_shapes_range_determinism_and_batch_independence():
    model = _random_model()
    context, actions = _inputs()
    out = model.rollout(context, actions)
    assert out.shape == (2, 3, 5, 16, 16, 3) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(out, model.rollout(context, actions)), "same inputs, same frames"
    as_float = model.rollout(torch.from_numpy(context).float() / 255, torch.from_numpy(actions))
    torch.testing.assert_close(as_float, out, atol=1e-5, rtol=0)
    # each (start, candidate) row is independent of the others in the batch, and of max_rows
    single = model.rollout(context[1:], actions[1:, 2:])
    torch.testing.assert_close(single[0, 0], out[1, 2], atol=1e-5, rtol=0)
    torch.testing.assert_close(model.rollout(context, actions, max_rows=2), out, atol=1e-5, rtol=0)
    # prefixes agree: frame k depends on actions 0..k only
    torch.testing.assert_close(
        model.rollout(context, actions[:, :, :2]), out[:, :, :2], atol=1e-5, rtol=0
    )
    # the actions matter, the candidates differ
    assert (out[:, 0] - out[:, 1]).abs().mean() > 1e-4


def test_imagination_state_continues_a_rollout_exactly():
    """start + imagine in two segments gives the frames of one rollout over both (what RFT's
    closed-loop chunks rely on), with each start repeated G times in a row."""
    model = _random_model()
    context, actions = _inputs(b=2, g=3, t=6)
    whole = model.rollout(context, actions)  # [B, G, T, H, W, 3]
    state = model.start(context, repeats=3)
    flat = torch.from_numpy(actions).flatten(0, 1)  # [B*G, T, A]
    first, state = model.imagine(state, flat[:, :2])
    second, _ = model.imagine(state, flat[:, 2:], max_rows=4)
    pieced = torch.cat([first, second], dim=1).unflatten(0, (2, 3))
    torch.testing.assert_close(pieced, whole, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="actions are for 5 rollouts, the state holds 6"):
        model.imagine(state, flat[:5])
    with pytest.raises(ValueError, match="NaN"):
        model.imagine(state, torch.full_like(flat, float("nan")))
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        model.start(context, repeats=0)


def test_untrained_model_starts_as_repeat_last_frame():
    model = WorldModel(TINY).eval()
    context, actions = _inputs()
    out = model.rollout(context, actions)
    last = torch.from_numpy(context[:, -1]).float() / 255
    assert (out - last[:, None, None]).abs().max() < 0.02


@pytest.mark.parametrize(
    ("context_shape", "actions_shape", "message"),
    [
        ((2, 1, 16, 16, 3), (2, 3, 5, 4), r"context_frames must be \[B, 2, 16, 16, 3\]"),
        ((2, 2, 32, 32, 3), (2, 3, 5, 4), r"context_frames must be \[B, 2, 16, 16, 3\]"),
        ((2, 2, 16, 16, 3), (2, 5, 4), r"actions must be \[B=2, G, T, 4\]"),
        ((2, 2, 16, 16, 3), (2, 3, 5, 7), r"actions must be \[B=2, G, T, 4\]"),
        ((2, 2, 16, 16, 3), (1, 3, 5, 4), r"actions must be \[B=2, G, T, 4\]"),
        ((2, 2, 16, 16, 3), (2, 0, 5, 4), "G >= 1 and T >= 1"),
    ],
)
def test_rollout_rejects_wrong_shapes(context_shape, actions_shape, message):
    model = WorldModel(TINY)
    with pytest.raises(ValueError, match=message):
        model.rollout(np.zeros(context_shape, np.uint8), np.zeros(actions_shape, np.float32))


def test_rollout_rejects_nan_and_out_of_range_values():
    model = WorldModel(TINY)
    context, actions = _inputs()
    bad = actions.copy()
    bad[0, 1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="actions contain NaN"):
        model.rollout(context, bad)
    with pytest.raises(ValueError, match=r"float context_frames must be in \[0, 1\]"):
        model.rollout(context.astype(np.float32), actions)  # 0..255 as float
    with pytest.raises(ValueError, match="uint8 or float"):
        model.rollout(context.astype(np.int64), actions)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 18}, "multiple of 2 \\*\\* len\\(channels\\)"),
        ({"attention_heads": 3}, "attention_heads"),
        ({"context_frames": 0}, "context_frames must be >= 1"),
        ({"channels": (12, 16)}, "multiples of 8"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WorldModelConfig(**{"image_size": 16, "channels": (8, 16), **kwargs})


def test_attention_variant_rolls_out():
    config = WorldModelConfig(image_size=16, channels=(8, 16), attention_heads=2, action_embed=8)
    context, actions = _inputs()
    out = _random_model(config).rollout(context[:, :1], actions)
    assert out.shape == (2, 3, 5, 16, 16, 3)


def test_checkpoint_round_trip_gives_identical_rollouts(tmp_path):
    model = _random_model()
    save_checkpoint(tmp_path, 7, model, {"model": to_dict(TINY)}, {"s": 1}, "fingerprint")
    loaded, ckpt = load_world_model(tmp_path)
    assert ckpt.step == 7 and ckpt.data_fingerprint == "fingerprint" and not loaded.training
    assert loaded.config == TINY
    context, actions = _inputs()
    assert torch.equal(loaded.rollout(context, actions), model.rollout(context, actions))


def test_loading_bad_checkpoints_names_the_problem(tmp_path):
    save_checkpoint(tmp_path / "other", 1, torch.nn.Linear(2, 2), {"lr": 1.0})
    with pytest.raises(ValueError, match="not a world-model checkpoint"):
        load_world_model(tmp_path / "other")
    path = save_checkpoint(tmp_path / "wm", 1, _random_model(), {"model": to_dict(TINY)})
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="damaged"):
        load_world_model(path)


def test_recipes_load_and_name_bad_overrides():
    for size in ("debug", "cpu", "gpu"):
        config = load_config(twm.TrainWorldModelConfig, REPO / f"training/{size}/world_model.yaml")
        assert config.run_dir == f"runs/world_model/{size}"
    with pytest.raises(ConfigError, match=r"model\.chanels"):
        load_config(twm.TrainWorldModelConfig, DEBUG_RECIPE, ["model.chanels=[8]"])


def test_moving_pixels_weigh_more_and_a_uniform_error_is_unchanged():
    """moving_weight (issue 18: loss weights on the pixels that move, so the arm and the puck
    are not averaged away): a pixel counts 1 + moving_weight where the target differs from the
    last context frame, the loss stays a weighted mean, and the MSE for PSNR is unweighted."""
    last = torch.zeros(1, 3, 8, 8)
    target = torch.zeros(1, 2, 3, 8, 8)
    target[:, :, :, :2, :2] = 1.0  # 4 of 64 pixels moved
    valid = torch.ones(1, 2, dtype=torch.bool)
    uniform = target + 0.1
    kw = dict(last=last, moving_threshold=0.05)
    plain = twm.pixel_loss(uniform, target, valid, 0.5)[0]
    weighted = twm.pixel_loss(uniform, target, valid, 0.5, moving_weight=8.0, **kw)[0]
    torch.testing.assert_close(weighted, plain)  # the same error everywhere: the same loss
    on_moving = target.clone()
    on_moving[:, :, :, :2, :2] = 0.0  # wrong only where things moved: the puck vanished
    plain, mse = twm.pixel_loss(on_moving, target, valid, 0.5)
    weighted, mse_w = twm.pixel_loss(on_moving, target, valid, 0.5, moving_weight=8.0, **kw)
    assert weighted > 4 * plain  # 4 pixels of 64 count 9 times: (9*4)/(9*4+60) against 4/64
    torch.testing.assert_close(mse_w, mse)
    with pytest.raises(ValueError, match="moving_weight must be >= 0"):
        twm.TrainWorldModelConfig(moving_weight=-1.0)
    with pytest.raises(ValueError, match="moving_threshold must be in"):
        twm.TrainWorldModelConfig(moving_threshold=0.0)


def test_action_margin_loss_is_a_hinge_on_each_windows_psnr_gap():
    """action_margin_weight (issue 18: real actions must beat another window's by a margin in
    dB): zero where a window's mean PSNR gap already reaches the margin, margin - gap below it,
    padded frames ignored, and the gradient lowers the real error and raises the other's."""
    mse_real = torch.tensor([[0.01, 0.01], [0.01, 0.01]], requires_grad=True)
    mse_other = torch.tensor([[0.1, 0.1], [0.01, 1.0]], requires_grad=True)
    valid = torch.tensor([[True, True], [True, False]])  # window 2's second frame is padding
    loss, gap = twm.action_margin_loss(mse_real, mse_other, valid, margin_db=2.0)
    torch.testing.assert_close(gap, torch.tensor([10.0, 0.0]))  # 10 dB; 0 dB (padding ignored)
    torch.testing.assert_close(loss, torch.tensor(1.0))  # (0 + 2) / 2 windows
    loss.backward()
    assert mse_real.grad[1, 0] > 0 and mse_other.grad[1, 0] < 0  # window 2 pulls both ways
    assert mse_real.grad[1, 1] == 0 and mse_real.grad[0].abs().sum() == 0  # padding, met margin
    with pytest.raises(ValueError, match="action_margin_weight must be >= 0"):
        twm.TrainWorldModelConfig(action_margin_weight=-0.1)
    with pytest.raises(ValueError, match="action_margin_db must be > 0"):
        twm.TrainWorldModelConfig(action_margin_db=0.0)


def test_other_rows_pair_each_window_with_another_of_its_task():
    """The counterfactual actions come from another window of the same task, as the evaluation's
    "another episode's actions" do; a task alone in the batch borrows any other window's."""
    other = twm.other_rows(["push", "reach", "push", "reach", "reach", "pick"])
    assert other.tolist() == [2, 3, 0, 4, 1, 0]
    assert twm.other_rows(["a", "a"]).tolist() == [1, 0]
    with pytest.raises(ValueError, match="at least 2 windows"):
        twm.other_rows(["a"])


# --- training and evaluation on real episodes ----------------------------------------------------


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    """Six short expert episodes of two tasks at 32x32, recorded in the simulator."""
    out = tmp_path_factory.mktemp("wm") / "episodes"
    collect(
        CollectConfig(out=out, tasks=("reach-v3", "push-v3"), episodes_per_task=3, image_size=32,
                      max_steps=30, action_noise=0.1),
        progress=False,
    )  # fmt: skip
    return out


def _train(episodes: Path, run_dir: Path, *overrides: str, resume: bool = False) -> Path:
    config = load_config(
        twm.TrainWorldModelConfig,
        DEBUG_RECIPE,
        [f"data.roots=[{episodes}]", f"run_dir={run_dir}", "threads=1", "data.val_fraction=0.3",
         *overrides],
    )  # fmt: skip
    return twm.train(config, resume=resume, progress=False)


@pytest.mark.slow
def test_training_lowers_the_loss_and_records_its_provenance(episodes, tmp_path):
    last = _train(episodes, tmp_path / "run", "optim.steps=60", "optim.lr=3e-3")
    trained, ckpt = load_world_model(last)
    assert ckpt.step == 60 and ckpt.norm_stats["action"]["mean"]
    assert ckpt.config["data"]["roots"] == [str(episodes)]
    assert ckpt.config["run_dir"] == str(tmp_path / "run")
    train_set, _, index = build_datasets(
        [episodes], WindowConfig(1, 4, 4, image_size=32, val_fraction=0.3)
    )
    assert ckpt.data_fingerprint == index.fingerprint()
    torch.manual_seed(0)
    initial = WorldModel(trained.config).eval()
    batch = train_set.get_batch(twm.window_starts(train_set))
    context, actions, target, valid = twm.to_tensors(batch, torch.device("cpu"))
    with torch.no_grad():
        before = twm.pixel_loss(initial(context, actions), target, valid, 0.5)[0]
        after = twm.pixel_loss(trained(context, actions), target, valid, 0.5)[0]
    assert after < 0.8 * before, (before, after)
    metrics = [
        json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    ]
    assert {"loss/train", "loss/val", "val_psnr_h1/model", "val_psnr_h1/repeat_last"} <= {
        k for row in metrics for k in row
    }
    assert any((tmp_path / "run/tensorboard").iterdir())
    # the zero-initialised head ignored the actions; training connected them to the frames
    out = trained.rollout(
        batch["image"][:2], np.stack([batch["action"][:2], -batch["action"][:2]], 1)
    )
    assert (out[:, 0] - out[:, 1]).abs().mean() > 1e-6


def _action_gap(model: WorldModel, dataset) -> float:
    """Mean PSNR gap (dB) between each training window's real actions and another window's."""
    batch = dataset.get_batch(twm.window_starts(dataset))
    context, actions, target, valid = twm.to_tensors(batch, torch.device("cpu"))
    other = torch.from_numpy(twm.other_rows(batch["instruction"]))
    with torch.no_grad():
        mse = [(model(context, a) - target).square().mean(dim=(2, 3, 4)) for a in
               (actions, actions[other])]  # fmt: skip
    return twm.action_margin_loss(*mse, valid, margin_db=1.0)[1].mean().item()


@pytest.mark.slow
def test_the_action_margin_hinge_makes_the_model_tell_actions_apart(episodes, tmp_path):
    """Same seed, same batches: the run with the hinge separates real from borrowed actions
    by more dB than the run without it, logs its terms and plots them."""
    common = ("optim.steps=60", "optim.lr=3e-3", "data.horizon=8")
    plain = _train(episodes, tmp_path / "plain", *common)
    hinged = _train(episodes, tmp_path / "hinged", *common, "action_margin_weight=1.0")
    train_set, _, _ = build_datasets(
        [episodes], WindowConfig(1, 8, 8, image_size=32, val_fraction=0.3)
    )
    gaps = [_action_gap(load_world_model(run)[0], train_set) for run in (plain, hinged)]
    # 60 steps at 32 px move the arm a pixel or two: the gaps are small, the hinge's 60 times
    # the plain run's (0.0046 against -0.00007 dB when written)
    assert gaps[1] > gaps[0] + 0.002 and gaps[1] > 10 * abs(gaps[0]), gaps
    rows = [json.loads(x) for x in (tmp_path / "hinged/metrics.jsonl").read_text().splitlines()]
    assert any("loss/action_margin" in r and "train/action_gap_db" in r for r in rows)
    with pytest.raises(ConfigError, match="needs >= 2 windows per process"):
        _train(episodes, tmp_path / "one", "optim.batch_size=1", "action_margin_weight=1.0")


@pytest.mark.slow
def test_resume_continues_exactly_where_it_stopped(episodes, tmp_path):
    straight = _train(episodes, tmp_path / "a", "optim.steps=6", "save_every=3")
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        _train(episodes, tmp_path / "a", "optim.steps=6")
    # a run that died after its step-3 checkpoint, written by the trainer before its names
    # were the other trainers' (name, val_every, optim.lr_min_ratio, loss knobs under optim)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b/checkpoints/step_000006")
    record_file = tmp_path / "b/checkpoints/step_000003/checkpoint.json"
    record = json.loads(record_file.read_text())
    config = record["config"]
    del config["run_dir"]
    config["name"], config["val_every"] = "debug", config.pop("eval_every")
    config["optim"]["lr_min_ratio"] = config["optim"].pop("final_lr_fraction")
    for key in ("l1_weight", "decoded_frames", "bf16"):
        config["optim"][key] = config.pop(key)
    record_file.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="model config differs"):
        _train(episodes, tmp_path / "b", "optim.steps=6", "model.dynamics_blocks=2", resume=True)
    resumed = _train(episodes, tmp_path / "b", "optim.steps=6", "save_every=3", resume=True)
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a.step == b.step == 6
    for name, tensor in a.weights.items():
        torch.testing.assert_close(b.weights[name], tensor, atol=1e-6, rtol=0, msg=name)


def test_fine_tuning_starts_from_the_parent_and_keeps_its_statistics(episodes, tmp_path):
    parent = _train(episodes, tmp_path / "parent", "optim.steps=2")
    # new data with other statistics: the child must still normalise like its parent
    more = tmp_path / "more"
    shutil.copytree(episodes, more, ignore=shutil.ignore_patterns(".cache"))
    child = _train(
        more, tmp_path / "child", "optim.steps=1", "optim.lr=1e-12", f"init_from={parent}",
        "moving_weight=4.0",  # the fine-tuning issue 18 tried: the moving pixels weigh more
    )  # fmt: skip
    a, b = load_checkpoint(parent), load_checkpoint(child)
    assert b.norm_stats == a.norm_stats and b.config["moving_weight"] == 4.0
    for name, tensor in a.weights.items():
        torch.testing.assert_close(b.weights[name], tensor, atol=1e-6, rtol=0, msg=name)
    with pytest.raises(ConfigError, match="model config differs"):
        _train(episodes, tmp_path / "bad", "model.dynamics_blocks=2", f"init_from={parent}")


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(episodes, tmp_path):
    run_dir = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
        "-m", "vla_rft.training.train_world_model", "--recipe", str(DEBUG_RECIPE), "-q",
        "--set", f"run_dir={run_dir}", "--set", f"data.roots=[{episodes}]", "--set", "threads=1",
        "--set", "optim.steps=4", "--set", "save_every=2", "--set", "data.val_fraction=0.3",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    # the ranks print concurrently, so their lines may run together
    digests = re.findall(r"rank \d: finished at step 4, weights ([0-9a-f]{16})", done.stdout)
    assert len(digests) == 2 and digests[0] == digests[1], done.stdout
    ckpt = load_checkpoint(run_dir)
    assert ckpt.step == 4 and ckpt.extra["world_size"] == 2
    steps = [
        json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == sorted(steps), "one process logs"


@pytest.mark.slow
def test_eval_command_scores_rollouts_and_draws_the_strip(episodes, tmp_path, capsys):
    last = _train(episodes, tmp_path / "run", "optim.steps=10")
    out = tmp_path / "eval"
    args = ["--checkpoint", str(last), "--split", "all", "--horizon", "6", "--stride", "4"]
    args += ["--chunk", "3", "--strip-episodes", "2", "--strip-every", "2", "--out", str(out)]
    assert eval_world_model.main(args) == 0
    printed = capsys.readouterr().out
    assert "| step | windows | PSNR model |" in printed and "action sensitivity" in printed
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["horizon"] == 6 and len(summary["per_step"]["psnr/model"]) == 6
    assert summary["windows_per_step"][0] >= summary["windows_per_step"][-1] > 0
    # the baseline scored the way it is defined: the context frame against the real frame 1 ahead
    assert 10 < summary["per_step"]["psnr/repeat_last"][0] < 100
    assert {"psnr_margin_db", "real_better_fraction"} <= set(summary["action_sensitivity"])
    # and on the pixels that moved in the real episode (the arm, the object)
    moving = summary["action_sensitivity_moving"]
    assert {"psnr_margin_db", "real_better_fraction", "moved_pixel_fraction"} <= set(moving)
    assert 0 < moving["moved_pixel_fraction"] < 0.5 and "on the pixels that moved" in printed
    for png in ("strip.png", "psnr_per_step.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert eval_world_model.main(["--checkpoint", str(tmp_path / "nothing")]) == 2
