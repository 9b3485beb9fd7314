"""Recipes with overrides, safetensors checkpoints and their failure modes, run logging."""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass, field

import pytest
import torch

from vla_rft.contract.config import ConfigError, load_config, to_dict
from vla_rft.models.checkpoint import (
    CheckpointError,
    CheckpointIntegrityError,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from vla_rft.threads import threads_for
from vla_rft.training.optim import use_bf16
from vla_rft.training.tracking import RunLogger, plot_metrics, read_metrics


@dataclass(frozen=True)
class _Model:
    width: int = 8
    layers: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class _Train:
    model: _Model = field(default_factory=_Model)
    lr: float = 1e-3
    name: str = "x"
    image_size: int | None = None


def test_recipe_then_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  width: 16\nlr: 0.01\n")
    cfg = load_config(_Train, recipe, ["model.layers=[3,4]", "lr=2e-3", "image_size=64"])
    assert cfg == _Train(_Model(16, (3, 4)), 2e-3, "x", 64)
    assert to_dict(cfg)["model"] == {"width": 16, "layers": [3, 4]}
    assert load_config(_Train, None, ["image_size=null"]).image_size is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.widht=3", "unknown key.*model.widht"),
        ("lr=fast", "lr: expected a number"),
        ("model.width=2.5", "model.width: expected an integer"),
        ("lr", "not of the form key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_Train, None, [override])


def test_missing_or_bad_recipe(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(_Train, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(_Train, bad)


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def test_checkpoint_round_trip_and_rotation(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 3)).sum().backward()
    opt.step()
    for step in (1, 2, 3, 4):
        save_checkpoint(
            tmp_path,
            step,
            model,
            {"lr": 1.0},
            {"s": [1]},
            "abc",
            optimizer_state=opt.state_dict(),
            keep_last=2,
        )
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000003", "step_000004"]
    ckpt = load_checkpoint(tmp_path, with_optimizer=True)
    assert ckpt.step == 4 and ckpt.config == {"lr": 1.0} and ckpt.data_fingerprint == "abc"
    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    load_weights(other, ckpt)
    x = torch.randn(5, 3)
    assert torch.equal(other(x), model(x))
    opt2 = torch.optim.AdamW(other.parameters())
    opt2.load_state_dict(ckpt.optimizer)
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]


def test_damaged_checkpoints_give_clear_errors(tmp_path, caplog):
    path = save_checkpoint(tmp_path, 1, _model(), {})
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(CheckpointIntegrityError, match="differs from the sha256 in checkpoint"):
        load_checkpoint(path)
    record = json.loads((path / "checkpoint.json").read_text())
    del record["weights_sha256"]  # saved before the hash was recorded: a warning, then safetensors
    (path / "checkpoint.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="damaged or missing weights"):
        load_checkpoint(path)
    assert "weights not verified" in caplog.text
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        load_checkpoint(tmp_path / "empty")
    path = save_checkpoint(tmp_path, 2, torch.nn.Linear(2, 2), {})
    with pytest.raises(CheckpointError, match="do not fit the model"):
        load_weights(_model(), load_checkpoint(path))


def test_run_logger_writes_metrics_and_plot(tmp_path):
    logger = RunLogger(tmp_path)
    for step in range(3):
        logger.log(step, {"loss": 1.0 / (step + 1)})
    logger.close()
    assert [r["loss"] for r in read_metrics(tmp_path)] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert any((tmp_path / "tensorboard").iterdir())
    png = plot_metrics(tmp_path, ["loss"], tmp_path / "curves.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def _python(code: str, env_drop=("OMP_WAIT_POLICY", "KMP_BLOCKTIME")) -> str:
    """Run `code` in a fresh interpreter (OpenMP and torch's thread pools are set up once per
    process) without the OpenMP variables of this one; returns its stdout."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize(
    "requested, cpus, others_busy, expected",
    [(2, 2, 0.0, 2), (2, 2, 0.3, 2), (2, 2, 1.0, 1), (2, 2, 2.0, 1), (8, 16, 9.6, 6), (1, 2, 0, 1)],
)
def test_threads_are_what_the_other_processes_leave_free(requested, cpus, others_busy, expected):
    assert threads_for(requested, cpus, others_busy) == expected


def test_training_threads_drop_while_other_processes_keep_the_cpus_busy():
    """The fix for trainers that collapsed beside other jobs: with every CPU kept busy by
    another process, the next look sets one thread; once they stop, the requested threads."""
    code = """
import os, subprocess, sys, time
import torch
from vla_rft.threads import adapt_threads, set_torch_threads
set_torch_threads(2)
cpus = len(os.sched_getaffinity(0))
spinners = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(cpus)]
time.sleep(1.0)
busy = adapt_threads(period_s=0.5), torch.get_num_threads()
for p in spinners:
    p.kill()
    p.wait()
time.sleep(1.0)
print(busy, (adapt_threads(period_s=0.5), torch.get_num_threads()))
"""
    assert _python(code).strip() == "(1, 1) (2, 2)"


def test_torch_threads_can_be_set_by_every_stage_of_one_process():
    """The quickstart runs its trainers and evaluations in one process, each setting threads."""
    code = """
import torch
from vla_rft.threads import set_torch_threads
set_torch_threads(2)
torch.ones(64, 64) @ torch.ones(64, 64)
set_torch_threads(1)
print(torch.get_num_threads(), torch.get_num_interop_threads())
"""
    assert _python(code).split() == ["1", "1"]


# --- the trainers' shared optimiser vocabulary ----------------------------------------------


def test_schedule_warms_up_then_decays_to_the_final_fraction():
    from vla_rft.training.optim import OptimConfig, learning_rate

    optim = OptimConfig(steps=110, lr=1e-3, warmup_steps=10, final_lr_fraction=0.1)
    lrs = [learning_rate(step, optim) for step in range(optim.steps)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == lrs[10] == pytest.approx(1e-3)
    assert all(a < b for a, b in itertools.pairwise(lrs[:10]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert learning_rate(optim.steps, optim) == pytest.approx(1e-4)  # lr * final_lr_fraction
    # another peak (RFT's sigma net) on the same schedule
    assert learning_rate(50, optim, peak=2e-3) == pytest.approx(2 * lrs[50])
    assert learning_rate(0, OptimConfig(warmup_steps=0, lr=1e-3)) == 1e-3


def test_constant_schedule_reproduces_rfts_warm_up_exactly():
    """RFT warmed up to a constant rate (peak * min(1, (step + 1) / warmup)); final_lr_fraction
    1.0 is that schedule, to the last bit."""
    from vla_rft.training.optim import OptimConfig, learning_rate

    for peak, warmup in [(1e-6, 20), (1e-5, 20), (3e-5, 20), (1e-4, 5), (1e-5, 10)]:
        optim = OptimConfig(steps=400, lr=peak, warmup_steps=warmup, final_lr_fraction=1.0)
        for step in range(60):
            assert learning_rate(step, optim) == peak * min(1.0, (step + 1) / warmup)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": 0}, "steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"final_lr_fraction": 1.5}, "final_lr_fraction"),
        ({"grad_clip": -1.0}, "grad_clip"),
    ],
)
def test_optim_config_names_the_bad_field(changes, message):
    from vla_rft.training.optim import OptimConfig

    with pytest.raises(ValueError, match=message):
        OptimConfig(**changes)


def test_batch_size_is_global_and_split_between_processes():
    from vla_rft.training.distributed import DistInfo, per_process

    def info(world_size):
        return DistInfo(0, world_size, 0, torch.device("cpu"))

    assert per_process(16, info(1)) == 16 and per_process(16, info(4)) == 4
    with pytest.raises(ConfigError, match="batch_size 6 must divide by 4 processes"):
        per_process(6, info(4))


def test_clip_gradients_clips_above_the_limit_and_zero_turns_it_off():
    from vla_rft.training.optim import clip_gradients

    weight = torch.nn.Parameter(torch.zeros(2))
    weight.grad = torch.tensor([3.0, 4.0])
    assert clip_gradients([weight], 0.0) == pytest.approx(5.0)
    assert torch.equal(weight.grad, torch.tensor([3.0, 4.0]))
    assert clip_gradients([weight], 1.0) == pytest.approx(5.0)
    assert weight.grad.norm().item() == pytest.approx(1.0, abs=1e-5)


def test_checkpoints_of_the_old_trainers_read_with_todays_names(tmp_path):
    """World-model checkpoints recorded name, val_every, optim.lr_min_ratio and the loss knobs
    under optim; RFT's config.yaml had its optimiser under grpo."""
    from vla_rft.training.stored_config import stored_config
    from vla_rft.training.train_rft import TrainRFTConfig
    from vla_rft.training.train_world_model import TrainWorldModelConfig

    old = {
        "name": "cpu", "seed": 3, "val_every": 100,
        "optim": {"steps": 700, "batch_size": 16, "lr": 1e-3, "weight_decay": 1e-4,
                  "warmup_steps": 50, "lr_min_ratio": 0.05, "grad_clip": 1.0, "l1_weight": 0.25,
                  "decoded_frames": 8, "bf16": True},
    }  # fmt: skip
    path = save_checkpoint(tmp_path / "runs" / "wm", 7, _model(), old)
    config = stored_config(TrainWorldModelConfig, load_checkpoint(path))
    assert config.run_dir == str(tmp_path / "runs" / "wm") and config.seed == 3
    assert config.eval_every == 100 and config.optim.final_lr_fraction == 0.05
    assert (config.l1_weight, config.decoded_frames, config.bf16) == (0.25, 8, True)
    assert (config.optim.steps, config.optim.warmup_steps) == (700, 50)

    old_rft = {"run_dir": "runs/rft/x", "grpo": {"steps": 40, "start_states": 8, "head_lr": 3e-5,
               "sigma_lr": 1e-5, "warmup_steps": 5, "grad_clip": 0.5, "group_size": 4}}  # fmt: skip
    path = save_checkpoint(tmp_path / "rft", 1, _model(), old_rft)
    rft = stored_config(TrainRFTConfig, load_checkpoint(path))
    assert (rft.optim.steps, rft.optim.batch_size, rft.optim.lr) == (40, 8, 3e-5)
    assert (rft.optim.warmup_steps, rft.optim.grad_clip) == (5, 0.5)
    assert (rft.grpo.sigma_lr, rft.grpo.group_size, rft.run_dir) == (1e-5, 4, "runs/rft/x")


@pytest.mark.parametrize(
    "device, flags, expected",
    [
        ("cpu", {"avx2", "fma"}, False),  # this project's CI machine (AMD EPYC, AVX2): emulated
        ("cpu", {"avx2", "avx512f", "avx512_bf16"}, True),
        ("cpu", {"avx2", "amx_bf16", "amx_tile"}, True),
        ("cuda", set(), True),
    ],
)
def test_bf16_autocast_only_where_the_hardware_has_bfloat16(device, flags, expected, caplog):
    """`bf16: true` in a recipe on a CPU without bfloat16 instructions made every world-model step
    12x slower (20.1 vs 1.7 s per step of training/quickstart/world_model.yaml on AVX2): the
    quickstart's world-model stage would have taken over 100 minutes. It is switched off, and
    the log says so."""
    with caplog.at_level(logging.WARNING):
        assert use_bf16(True, torch.device(device), flags) is expected
    assert ("no bfloat16 instructions" in caplog.text) is (not expected)
    assert use_bf16(False, torch.device(device), flags) is False
