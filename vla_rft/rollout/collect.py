"""Expert data collection: Meta-World's scripted policies drive the simulated robot, every
episode is written through the episode store."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla_rft.contract.constants import (
    EXPERT_ACTIONS_KEY,
    OBS_IMAGE,
    OBS_IMAGES,
    OBS_STATE,
    SIM_EMBODIMENT,
)
from vla_rft.data.episode import EpisodeMeta
from vla_rft.data.episode_store import EpisodeWriter, set_aside_interrupted
from vla_rft.rollout.episode_loop import ExpertAgent, run_episode
from vla_rft.sim.spec import SIM_IMAGE_SIZE


@dataclass(frozen=True)
class CollectConfig:
    """What `vla-rft collect` gathers."""

    out: Path
    """Directory the episodes are written to (created if missing)."""
    tasks: tuple[str, ...] = ("reach-v3", "push-v3")
    """Meta-World v3 task names."""
    episodes_per_task: int = 10
    """Episodes per task; episode i of a task uses seed `seed + i`."""
    seed: int = 0
    """First seed."""
    image_size: int = SIM_IMAGE_SIZE
    """Square camera image size in pixels."""
    max_steps: int = 150
    """Steps before an episode is cut off as a failure."""
    action_noise: float = 0.0
    """Std of Gaussian noise on the expert's actions; the executed action is recorded."""
    perturbation: str = "none"
    """Perturbation preset applied at reset (see vla_rft.sim.perturbations)."""
    embodiment: str = SIM_EMBODIMENT
    """The simulated robot's spec: every camera it names is recorded (metaworld-sawyer-wrist:
    the wrist camera too)."""

    def __post_init__(self):
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if not self.tasks:
            raise ValueError("give at least one task")
        if self.episodes_per_task < 1:
            raise ValueError(f"episodes_per_task must be >= 1, got {self.episodes_per_task}")
        if self.action_noise < 0:
            raise ValueError(f"action_noise must be >= 0, got {self.action_noise}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")


@dataclass
class TaskSummary:
    """Outcome of the episodes of one task."""

    episodes: int = 0
    successes: int = 0
    steps: list[int] = field(default_factory=list)
    skipped: int = 0
    """Episodes already on disk from an earlier run (kept, not redone)."""


@dataclass
class CollectSummary:
    """What a collection run produced."""

    tasks: dict[str, TaskSummary]
    frames: int
    seconds: float
    bytes_on_disk: int

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def table(self) -> str:
        rows = [
            "| task | episodes | success | mean steps | skipped (already there) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for task, s in self.tasks.items():
            rate = f"{s.successes}/{s.episodes} ({100 * s.successes / max(s.episodes, 1):.0f}%)"
            steps = f"{np.mean(s.steps):.1f}" if s.steps else "-"
            rows.append(f"| {task} | {s.episodes} | {rate} | {steps} | {s.skipped} |")
        rows.append(
            f"\n{self.frames} frames in {self.seconds:.1f} s "
            f"({self.frames_per_second:.0f} frames/s); "
            f"{self.bytes_on_disk / 1e6:.1f} MB on disk"
        )
        return "\n".join(rows)


def episode_name(task: str, perturbation: str, seed: int) -> str:
    suffix = "" if perturbation == "none" else f"-{perturbation}"
    return f"{task}{suffix}-seed{seed:06d}"


def record_step(writer: EpisodeWriter):
    """An `on_step` that writes each observation with the action taken from it."""
    return lambda obs, action: writer.add_step(
        obs[OBS_IMAGE], obs[OBS_STATE], action, cameras=obs.get(OBS_IMAGES)
    )


def _collect_task(
    robot, task: str, instruction: str, config: CollectConfig, summary: CollectSummary, bar
) -> None:
    """All episodes of one task; episodes already on disk are kept and counted as skipped."""
    stats = summary.tasks[task]
    for seed in range(config.seed, config.seed + config.episodes_per_task):
        bar.update()
        name = episode_name(task, config.perturbation, seed)
        if (config.out / name).exists():
            stats.skipped += 1
            continue
        set_aside_interrupted(config.out, name)
        meta = EpisodeMeta(
            task=task,
            instruction=instruction,
            robot=robot.embodiment.name,
            fps=robot.fps,
            source="expert",
            state_names=robot.embodiment.state_names,
            action_names=robot.embodiment.action_names,
            cameras={c.name: c.topic for c in robot.embodiment.cameras},
            extra={
                "seed": seed,
                "perturbation": config.perturbation,
                "action_noise": config.action_noise,
                "image_size": config.image_size,
            },
        )
        expert = ExpertAgent(robot, config.action_noise, np.random.default_rng([seed, 7]))
        with EpisodeWriter(config.out, name, meta) as writer:
            outcome = run_episode(
                robot, expert, seed, config.perturbation, on_step=record_step(writer)
            )
            offset = robot.last_perturbation_offset.round(5).tolist()
            clean = np.asarray(expert.clean, np.float32).tolist()  # float32 values, exact in JSON
            path = writer.finish(
                outcome.success,
                extra={"perturbation_offset_m": offset, EXPERT_ACTIONS_KEY: clean},
            )
        stats.episodes += 1
        stats.successes += int(outcome.success)
        stats.steps.append(outcome.steps)
        summary.frames += outcome.steps
        summary.bytes_on_disk += sum(f.stat().st_size for f in path.iterdir())
        bar.set_postfix(task=task, success=f"{stats.successes}/{stats.episodes}")


def collect(config: CollectConfig, progress: bool = True) -> CollectSummary:
    """Collect `episodes_per_task` expert episodes per task; existing episodes are kept."""
    from vla_rft.sim import MetaWorldRobot, SimConfig, instruction_for  # needs the sim extra

    instructions = {task: instruction_for(task) for task in config.tasks}  # unknown task: error
    config.out.mkdir(parents=True, exist_ok=True)
    summary = CollectSummary({t: TaskSummary() for t in config.tasks}, 0, 0.0, 0)
    total = len(config.tasks) * config.episodes_per_task
    start = time.perf_counter()
    with tqdm(total=total, desc="collecting", unit="ep", disable=not progress) as bar:
        for task in config.tasks:
            sim_config = SimConfig(
                task=task,
                image_size=config.image_size,
                max_steps=config.max_steps,
                embodiment=config.embodiment,
            )
            robot = MetaWorldRobot(sim_config)
            try:
                _collect_task(robot, task, instructions[task], config, summary, bar)
            finally:
                robot.close()
    summary.seconds = time.perf_counter() - start
    return summary
