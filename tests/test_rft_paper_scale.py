"""The paper-scale RFT run's CPU-side parts (bench/rft_paper_scale.py, scripts/gpu/): the command
lines, packing under the limit and refusal over it, the sha256 check of the carried files, the
budget that caps the steps, a CUDA device asked for where there is none, and one real run of the
GPU script on the CPU with the debug recipes' tiny models (2 steps a run, MuJoCo unimportable,
as on the GPU machine)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import rft_paper_scale as paper
from carry import travelling_bytes

from vla_rft.contract.config import load_config, to_dict
from vla_rft.contract.manifest import ACTION_RANGE_KEY, INSTRUCTIONS_KEY, POLICY_CONFIG_KEY
from vla_rft.data import WindowConfig, build_datasets
from vla_rft.data.dataset import _val_score
from vla_rft.data.episode_store import write_episode
from vla_rft.models.checkpoint import RECORD_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint
from vla_rft.models.policy import VLAPolicy
from vla_rft.models.world_model.modeling_world_model import WorldModel
from vla_rft.training.train_policy import TrainPolicyConfig
from vla_rft.training.train_world_model import TrainWorldModelConfig

REPO = Path(__file__).resolve().parents[1]
INSTRUCTION = "reach the red goal"
SIZE = 32
"""The debug recipes' image size."""
BLOCK_MUJOCO = (
    "import sys\nfor name in ('mujoco', 'metaworld', 'gymnasium'):\n    sys.modules[name] = None\n"
)
"""A sitecustomize.py that makes the simulator unimportable, as it is on the GPU machine."""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Tiny episodes and the debug recipes' policy and world model (random weights), saved as
    their trainers save them: (policy run, world model run, episode directory)."""
    from tests.conftest import make_episode

    root = tmp_path_factory.mktemp("inputs")
    episodes = root / "expert"
    for i in range(8):
        episode = make_episode(steps=20, size=SIZE, seed=i, instruction=INSTRUCTION)
        write_episode(episodes, f"reach-v3-seed{i:06d}", episode)
    train_set, _, index = build_datasets([episodes], WindowConfig(val_fraction=0.0))
    stats = train_set.stats.to_dict()
    torch.manual_seed(0)
    policy = load_config(TrainPolicyConfig, REPO / "training/debug/policy.yaml").model
    embedding = np.random.default_rng(0).standard_normal(policy.instruction_dim).tolist()
    extra = {
        POLICY_CONFIG_KEY: to_dict(policy),
        INSTRUCTIONS_KEY: {INSTRUCTION: embedding},
        ACTION_RANGE_KEY: [-1.0, 1.0],
    }
    save_checkpoint(
        root / "policy", 10, VLAPolicy(policy), {}, stats, index.fingerprint(), extra=extra
    )
    world = load_config(TrainWorldModelConfig, REPO / "training/debug/world_model.yaml").model
    save_checkpoint(
        root / "world_model", 10, WorldModel(world), {"model": to_dict(world)}, stats,
        index.fingerprint(),
    )  # fmt: skip
    return root / "policy", root / "world_model", episodes


@pytest.fixture(scope="module")
def carry(inputs, tmp_path_factory):
    policy, world_model, episodes = inputs
    config = paper.PackConfig(
        policy, world_model, (episodes,), tmp_path_factory.mktemp("pack") / "rft_carry", 4
    )
    return config.carry, paper.pack(config)


def _script(name: str, *args: str, env: dict | None = None, timeout: float = 60):
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu" / name), *args],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHON": sys.executable, **(env or {})},
    )  # fmt: skip


def test_the_scripts_explain_themselves_and_bad_arguments_are_usage_errors(capsys):
    for script, words in (("rft_paper_scale.sh", "--budget-s"), ("pack_rft.sh", "--world-model")):
        done = _script(script, "--help")
        assert done.returncode == 0, done.stderr
        assert "usage: rft_paper_scale.py" in done.stdout and words in done.stdout
    done = _script("rft_paper_scale.sh")
    assert done.returncode == 2 and "usage:" in done.stderr and "OUT_DIR" in done.stderr

    config = paper.parse_args(["run", "--out", "o"]).config
    assert (config.steps, config.start_states, config.group_size) == (400, 16, 16)
    assert config.budget_s == 480 and config.device == "cuda" and config.runs == paper.RUN_NAMES
    assert paper.parse_args(["run", "--out", "o", "--runs", "paper"]).config.runs == ("paper",)
    packed = paper.parse_args(["pack", "--policy", "p", "--world-model", "w", "--data", "a,b"])
    assert packed.config.data == (Path("a"), Path("b")) and packed.config.episodes == 24
    for bad, says in (
        (["run", "--out", "o", "--device", "tpu"], "--device must be cuda or cpu"),
        (["run", "--out", "o", "--runs", "paper,bogus"], "unknown runs ['bogus']"),
        (["run", "--out", "o", "--calibration-steps", "1"], "at least 2"),
        (["pack", "--policy", "p", "--world-model", "w", "--data", "x/d,y/d"], "distinct names"),
        (["pack", "--world-model", "w", "--data", "a"], "--policy"),
    ):
        with pytest.raises(SystemExit) as exit_:
            paper.parse_args(bad)
        assert exit_.value.code == 2 and says in capsys.readouterr().err


def test_pack_carries_the_checkpoints_training_episodes_and_a_manifest(carry, inputs):
    folder, manifest = carry
    assert manifest["kind"] == paper.KIND and manifest["fits"]
    [(name, episodes)] = manifest["data"].items()
    assert name == inputs[2].name and len(episodes) == 4
    assert all(_val_score(e) >= WindowConfig().val_fraction for e in episodes)  # training split
    for run in ("policy", "world_model"):
        assert {f"{run}/{WEIGHTS_FILE}", f"{run}/{RECORD_FILE}"} <= set(manifest["files"])
        assert load_checkpoint(folder / run).step == 10
    assert manifest["carry_bytes"] == sum(e["bytes"] for e in manifest["files"].values())
    assert manifest == paper.verify_folder(folder, paper.PACK_COMMAND)
    ignored = subprocess.run(["git", "check-ignore", "-q", "rft_carry/x"], cwd=REPO)
    assert ignored.returncode == 0  # the default folder never travels as repository files


def test_pack_refuses_a_folder_over_the_limit(inputs, tmp_path, capsys):
    policy, world_model, episodes = inputs
    repo_mib = travelling_bytes(REPO) / 2**20
    argv = [
        "pack", "--policy", str(policy), "--world-model", str(world_model), "--data",
        str(episodes), "--out", str(tmp_path / "carry"), "--limit-mib", f"{repo_mib + 0.01}",
    ]  # fmt: skip
    assert paper.main(argv) == 2
    err = capsys.readouterr().err
    assert "over the" in err and "MiB the device tool carries" in err
    assert json.loads((tmp_path / "carry" / "manifest.json").read_text())["fits"] is False


def test_a_tampered_missing_or_foreign_carried_file_is_refused(carry, tmp_path, capsys):
    folder = shutil.copytree(carry[0], tmp_path / "carry")
    weights = folder / "policy" / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    [episode] = list((folder / "episodes").glob("*/*"))[:1]
    shutil.rmtree(episode)
    argv = ["run", "--carry", str(folder), "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert paper.main(argv) == 2
    err = capsys.readouterr().err
    assert f"changed since packing (sha256 differs): policy/{WEIGHTS_FILE}" in err
    assert f"missing: episodes/{episode.parent.name}/{episode.name}/" in err
    assert not (tmp_path / "out").exists()  # nothing ran

    (folder / "manifest.json").write_text(json.dumps({"files": {}, "sizes": [64]}))
    assert paper.main(argv) == 2  # the GPU check's folder, say
    assert "not written by scripts/gpu/pack_rft.sh" in capsys.readouterr().err

    (folder / "manifest.json").unlink()
    assert paper.main(argv) == 2
    assert "run scripts/gpu/pack_rft.sh first" in capsys.readouterr().err


def test_cuda_asked_for_where_there_is_none_is_a_clear_error(carry, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["run", "--carry", str(carry[0]), "--out", str(tmp_path), "--device", "cuda"]
    assert paper.main(argv) == 2
    err = capsys.readouterr().err
    assert "--device cuda, but torch" in err and "sees no CUDA device" in err
    assert not (tmp_path / paper.SUMMARY).exists()  # refused before anything ran


def _rows(steps: int, first_s: float, per_step_s: float) -> list[dict]:
    """metrics.jsonl rows as the trainer logs them every step: time/s_per_step is the running
    mean since the loop started (the first step slower: warm-up)."""
    return [
        {"step": k, "time/s_per_step": (first_s + (k - 1) * per_step_s) / k}
        for k in range(1, steps + 1)
    ]


def test_the_budget_measures_the_steady_rate_and_caps_the_steps():
    rows = _rows(5, first_s=3.0, per_step_s=0.5)
    assert paper.steady_step_seconds(rows) == pytest.approx(0.5)
    estimate = paper.Estimate.of(wall_s=12.0, rows=rows)  # 5 steps at 0.5: 9.5 s fixed
    assert estimate.fixed_s == pytest.approx(9.5)
    fast = paper.Estimate(s_per_step=0.3, fixed_s=10.0)
    assert paper.affordable_steps(470, 3, fast) == 462  # (0.95 * 470 - 30) / 0.9
    assert paper.affordable_steps(470, 3, paper.Estimate(0.5, 10.0)) == 277
    assert paper.affordable_steps(20, 3, fast) == 0


class FakeClock:
    """Seconds that pass only when a fake run says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fake_training(monkeypatch, clock: FakeClock, per_step_s: float, fails: str = ""):
    """train_run without training: a checkpoint of dummy files, rows at `per_step_s`, and
    4 s to load and save plus 2 s for the first step on `clock`."""
    calls = []

    def fake(recipe, overrides):
        values = dict(o.split("=", 1) for o in overrides)
        steps, run_dir = int(values["optim.steps"]), Path(values["run_dir"])
        calls.append((run_dir.name, steps, values.get("grpo.pg_weight")))
        if run_dir.name == fails:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        checkpoint = run_dir / "checkpoints" / f"step_{steps:06d}"
        checkpoint.mkdir(parents=True)
        for name in (WEIGHTS_FILE, RECORD_FILE):
            (checkpoint / name).write_text(name)
        wall_s = 4.0 + 2.0 + (steps - 1) * per_step_s
        clock.now += wall_s
        return paper.Trained(checkpoint, wall_s, _rows(steps, first_s=2.0, per_step_s=per_step_s))

    monkeypatch.setattr(paper, "train_run", fake)
    return calls


def test_runs_are_capped_to_the_budget_and_a_failed_run_does_not_stop_the_next(
    carry, tmp_path, monkeypatch, capsys
):
    clock = FakeClock()
    calls = _fake_training(monkeypatch, clock, per_step_s=0.5, fails="corrections_bc_variant")
    config = paper.RunConfig(tmp_path / "out", carry[0], tmp_path / "work", "cpu", budget_s=100)
    assert paper.run_all(config, clock) == 1
    # calibration: 5 steps in 8 s: 0.5 s/step and 5.5 s fixed; 92 s left for 3 runs:
    # (0.95 * 92 - 3 * 5.5) / (3 * 0.5) = 47 steps each (the later runs never get more)
    assert [c[:2] for c in calls] == [
        ("calibration", 5), ("paper", 47), ("corrections_bc_variant", 47),
        ("corrections_bc_variant_control", 47),
    ]  # fmt: skip
    assert calls[-1][2] == "0.0"  # the control has no policy gradient
    printed = capsys.readouterr().out
    assert "capped: paper gets 47 steps instead of 400" in printed
    assert "calibration: 0.500 s/step" in printed and "[failed] corrections_bc_variant" in printed
    summary = json.loads((tmp_path / "out" / paper.SUMMARY).read_text())
    assert summary["failed"] == ["corrections_bc_variant"]
    runs = {r["name"]: r for r in summary["runs"]}
    assert "illegal memory access" in runs["corrections_bc_variant"]["error"]
    control = runs["corrections_bc_variant_control"]
    assert control["status"] == "ok" and control["steps_done"] == 47 and control["capped"]
    assert control["s_per_step"] == pytest.approx(0.5)
    assert (tmp_path / "out" / "corrections_bc_variant_control" / WEIGHTS_FILE).is_file()

    clock = FakeClock()
    calls = _fake_training(monkeypatch, clock, per_step_s=5.0)
    config = paper.RunConfig(tmp_path / "out2", carry[0], tmp_path / "work2", "cpu", budget_s=30)
    assert paper.run_all(config, clock) == 1  # the calibration spends the budget: every run skipped
    summary = json.loads((tmp_path / "out2" / paper.SUMMARY).read_text())
    assert [r["status"] for r in summary["runs"]] == ["skipped"] * 3
    assert [c[0] for c in calls] == ["calibration"]


def test_the_gpu_script_runs_the_three_runs_on_the_cpu(carry, tmp_path):
    """The real script, end to end: tiny models, 2 steps a run, MuJoCo unimportable."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK_MUJOCO)
    out, work = tmp_path / "out", tmp_path / "work"
    env = {"CARRY": str(carry[0]), "TMPDIR": str(tmp_path), "PYTHONPATH": str(tmp_path / "site")}
    done = _script(
        "rft_paper_scale.sh", str(out), "--device", "cpu", "--steps", "2", "--start-states", "2",
        "--group-size", "4", "--calibration-steps", "2", "--threads", "1", "--work", str(work),
        env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / paper.SUMMARY).read_text())
    assert summary["failed"] == [] and summary["device"].startswith("the CPU")
    assert summary["calibration"]["steps"] == 2 and summary["calibration"]["s_per_step"] > 0
    for run in summary["runs"]:
        assert run["status"] == "ok" and run["steps_done"] == 2 and not run["capped"]
        assert run["s_per_step"] > 0 and run["final_metrics"]["step"] == 2
        assert "reward/mean" in run["final_metrics"] and len(run["metrics"]) == 2
        assert run["command"].startswith(f"vla-rft rft --recipe {run['recipe']} ")
        assert load_checkpoint(out / run["checkpoint"]).step == 2  # what `vla-rft eval` loads
    recipes = {r: yaml.safe_load((work / r / "config.yaml").read_text()) for r in paper.RUN_NAMES}
    assert recipes["paper"]["optim"]["lr"] == 1e-6
    assert recipes["paper"]["grpo"]["log_prob_reduction"] == "mean"
    variant, control = recipes["corrections_bc_variant"], recipes["corrections_bc_variant_control"]
    assert variant["grpo"]["pg_weight"] == 0.1 and control["grpo"]["pg_weight"] == 0.0
    assert variant["optim"] == control["optim"] and variant["optim"]["lr"] == 1e-4
    assert all(r["device"] == "cpu" and r["grpo"]["group_size"] == 4 for r in recipes.values())
    # what the device tool brings back: at most 8 files, at most 2 folders down
    files = [p.relative_to(out) for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(len(f.parts) <= 3 for f in files)
    log = (out / "rft_paper_scale.log").read_text()
    assert "s/step" in log and "| paper | ok | 2 |" in log
