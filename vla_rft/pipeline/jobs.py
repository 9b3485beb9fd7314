"""The work the pipeline stages do, as plain functions: train, export, evaluate.

The trainers are called with typed configs: `load_recipes` reads a pipeline's three recipes once,
and the stages change what they decide (run_dir, data, steps) with `dataclasses.replace`. Each
trainer runs with `resume=True`, so a stage interrupted mid-training continues from its run's last
checkpoint, and a finished run returns at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from vla_rft.contract.config import load_config
from vla_rft.pipeline.config import EvalSuite, PipelineConfig
from vla_rft.rollout.report import markdown_table, merge_reports

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


def seed_shares(episodes: int, graphs: int) -> list[tuple[int, int]]:
    """(first seed offset, episodes) of each graph: contiguous, sizes differing by at most one,
    none empty (fewer graphs than asked when there are fewer episodes)."""
    n = min(graphs, episodes)
    sizes = [episodes // n + (k < episodes % n) for k in range(n)]
    return [(sum(sizes[:k]), size) for k, size in enumerate(sizes)]


def _graph_command(package, suite, seed, episodes, report_dir, record_dir, domain_id, recover):
    cmd = [
        sys.executable, "-m", "vla_rft_nodes.bringup", "--sim",
        "--policy-model", str(package),
        "--episodes", str(episodes),
        "--tasks", ",".join(suite.tasks),
        "--report-dir", str(report_dir),
        "--set", f"eval_manager_node.perturbations=[{','.join(suite.perturbations)}]",
        "--set", f"eval_manager_node.seed={seed}",
        "--set", f"eval_manager_node.max_steps={suite.max_steps}",
        "--set", f"sim_robot_node.max_steps={suite.max_steps}",
        "--set", f"sim_robot_node.rate_hz={suite.rate_hz}",
        "--set", f"policy_node.control_rate_hz={suite.rate_hz}",
        "--set", f"policy_node.async_inference={str(suite.async_inference).lower()}",
        "--timeout", str(suite.timeout_s),
    ]  # fmt: skip
    cmd += ["--record-dir", str(record_dir)] if record_dir else ["--no-record"]
    cmd += [] if recover or not record_dir else ["--set", "recorder_node.recover_on_start=false"]
    return cmd + (["--domain-id", str(domain_id)] if domain_id is not None else [])


def recover_interrupted(record_dir: Path, echo=print) -> None:
    """Complete the episodes a killed recorder left partial in `record_dir`, as a recorder does
    when it starts (`recover_on_start`). Graphs side by side share the directory, so they leave
    it to this, done once before they start: one recorder starting late would take another's
    episode in progress for an interrupted one."""
    from vla_rft.data.episode import EpisodeError
    from vla_rft.data.episode_store import recover_partial_episodes

    for partial, report in recover_partial_episodes(record_dir):
        if isinstance(report, EpisodeError):
            echo(f"    cannot recover {partial.name} (its files are kept as they are): {report}")
        else:
            echo(f"    {'quarantined' if report.quarantined else 'recovered'}: {report.summary()}")


def evaluate_in_graph(
    package: Path,
    suite: EvalSuite,
    report_dir: Path,
    record_dir: Path | None,
    log_file: Path,
    echo=print,
) -> Path:
    """The suite's episodes through the node graph (`vla-rft bringup --sim`): simulated robot,
    policy node on `package`, evaluation manager and, with `record_dir`, the recorder; with
    `suite.graphs` > 1, several such graphs side by side on consecutive DDS domains, each with a
    share of the seeds (graph k's report and node output in `report_dir/graph-k` and
    `log_file`'s `.graph-k` sibling), recording into the same `record_dir`, merged into one
    report. Each finished episode is echoed. Returns report.json."""
    shares = seed_shares(suite.episodes, suite.graphs)
    base_domain = int(os.environ.get("ROS_DOMAIN_ID", "0"))
    report = report_dir / "report.json"
    report.unlink(missing_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    if record_dir and len(shares) > 1:
        recover_interrupted(record_dir, echo)
    graphs = []
    for k, (offset, episodes) in enumerate(shares):
        alone = len(shares) == 1
        out = report_dir if alone else report_dir / f"graph-{k}"
        log = log_file if alone else log_file.with_suffix(f".graph-{k}{log_file.suffix}")
        cmd = _graph_command(
            package, suite, suite.seed + offset, episodes, out, record_dir,
            None if alone else base_domain + k, recover=alone,
        )  # fmt: skip
        graphs.append((cmd, out / "report.json", log))
    counter = _EpisodeEcho(echo, suite.num_episodes)
    with ThreadPoolExecutor(len(graphs)) as pool:
        codes = list(pool.map(lambda g: _run_graph(g[0], g[2], counter), graphs))
    for (_, graph_report, log), rc in zip(graphs, codes, strict=True):
        if rc != 0 or not graph_report.is_file():
            tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
            raise RuntimeError(f"the node graph failed (exit {rc}); last lines of {log}:\n{tail}")
    if len(graphs) > 1:
        merged = merge_reports([json.loads(r.read_text()) for _, r, _ in graphs])
        report.write_text(json.dumps(merged, indent=1))
        (report_dir / "report.md").write_text(markdown_table(merged) + "\n")
    return report


class _EpisodeEcho:
    """Echoes each finished episode of all graphs with one running count."""

    def __init__(self, echo, total: int):
        self.echo, self.total, self.done = echo, total, 0
        self._lock = threading.Lock()

    def line(self, line: str) -> None:
        if line.startswith("[eval_manager_node]") and "success=" in line:
            with self._lock:
                self.done += 1
                result = line.rsplit("]: ", 1)[-1].strip()
                self.echo(f"    episode {self.done}/{self.total}: {result}")


def _run_graph(cmd: list[str], log_file: Path, counter: _EpisodeEcho) -> int:
    """One graph to its end, its output to `log_file`. Returns its exit status."""
    with (
        open(log_file, "w") as log,
        subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        ) as proc,
    ):
        for line in proc.stdout:
            log.write(line)
            counter.line(line)
        return proc.wait()
