"""The work the pipeline stages do, as plain functions: train, export, evaluate.

The trainers are called with typed configs: `load_recipes` reads a pipeline's three recipes once,
and the stages change what they decide (run_dir, data, steps) with `dataclasses.replace`. Each
trainer runs with `resume=True`, so a stage interrupted mid-training continues from its run's last
checkpoint, and a finished run returns at once.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from vla_rft.contract.config import load_config
from vla_rft.pipeline.config import EvalSuite, PipelineConfig

if TYPE_CHECKING:  # the trainers import torch; the pipeline's commands load them when they run
    from vla_rft.training.train_policy import TrainPolicyConfig
    from vla_rft.training.train_rft import TrainRFTConfig
    from vla_rft.training.train_world_model import TrainWorldModelConfig


@dataclass(frozen=True)
class Recipes:
    """A pipeline's three trainer configs, as its recipes and `threads` give them."""

    world_model: TrainWorldModelConfig
    """World-model pre-training (and the flywheel's fine-tuning)."""
    policy: TrainPolicyConfig
    """Behaviour cloning."""
    rft: TrainRFTConfig
    """VLA-RFT."""


def load_recipes(config: PipelineConfig) -> Recipes:
    """Read the recipes of `config` into their trainers' configs, with the pipeline's threads."""
    from vla_rft.training.train_policy import TrainPolicyConfig
    from vla_rft.training.train_rft import TrainRFTConfig
    from vla_rft.training.train_world_model import TrainWorldModelConfig

    def load(cls, recipe: str):
        return replace(load_config(cls, Path(recipe)), threads=config.threads)

    return Recipes(
        load(TrainWorldModelConfig, config.world_model_recipe),
        load(TrainPolicyConfig, config.policy_recipe),
        load(TrainRFTConfig, config.rft_recipe),
    )


def train_world_model(config: TrainWorldModelConfig, progress: bool) -> str:
    """Train (or finish) a world-model run; returns its last checkpoint."""
    from vla_rft.training import train_world_model

    return str(train_world_model.train(config, resume=True, progress=progress))


def train_policy(config: TrainPolicyConfig, progress: bool) -> str:
    """Train (or finish) a behaviour-cloning run; returns its last checkpoint."""
    from vla_rft.training import train_policy

    return str(train_policy.train(config, resume=True, progress=progress))


def train_rft(config: TrainRFTConfig, progress: bool) -> str:
    """Run (or finish) VLA-RFT; returns its last checkpoint."""
    from vla_rft.training import train_rft

    return str(train_rft.train(config, resume=True, progress=progress))


def export_package(policy: str, world_model: str, out: Path) -> str:
    """Policy (+ instruction encoder) and world model -> one ONNX package directory."""
    from vla_rft.export.export_policy import export_policy, export_text_encoder
    from vla_rft.export.export_world_model import export_world_model

    export_policy(policy, out)
    export_text_encoder(out)
    export_world_model(world_model, out)
    return str(out)


def evaluate_in_graph(
    package: Path,
    suite: EvalSuite,
    report_dir: Path,
    record_dir: Path | None,
    log_file: Path,
    echo=print,
) -> Path:
    """The suite's episodes through the node graph (`vla-rft bringup --sim`): simulated robot,
    policy node on `package`, evaluation manager and, with `record_dir`, the recorder. Node
    output goes to `log_file`; each finished episode is echoed. Returns report.json."""
    cmd = [
        sys.executable, "-m", "vla_rft_nodes.bringup", "--sim",
        "--policy-model", str(package),
        "--episodes", str(suite.episodes),
        "--tasks", ",".join(suite.tasks),
        "--report-dir", str(report_dir),
        "--set", f"eval_manager_node.perturbations=[{','.join(suite.perturbations)}]",
        "--set", f"eval_manager_node.seed={suite.seed}",
        "--set", f"eval_manager_node.max_steps={suite.max_steps}",
        "--set", f"sim_robot_node.max_steps={suite.max_steps}",
        "--set", f"sim_robot_node.rate_hz={suite.rate_hz}",
        "--set", f"policy_node.control_rate_hz={suite.rate_hz}",
        "--timeout", str(suite.timeout_s),
    ]  # fmt: skip
    cmd += ["--record-dir", str(record_dir)] if record_dir else ["--no-record"]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    report = report_dir / "report.json"
    report.unlink(missing_ok=True)
    total = suite.num_episodes
    done = 0
    with (
        open(log_file, "w") as log,
        subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        ) as proc,
    ):
        for line in proc.stdout:
            log.write(line)
            if line.startswith("[eval_manager_node]") and "success=" in line:
                done += 1
                echo(f"    episode {done}/{total}: {line.rsplit(']: ', 1)[-1].strip()}")
        rc = proc.wait()
    if rc != 0 or not report.is_file():
        tail = "".join(log_file.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"the node graph failed (exit {rc}); last lines of {log_file}:\n{tail}")
    return report
