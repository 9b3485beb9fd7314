"""Correction episodes: the policy drives, the expert takes over, the takeover is recorded.

    vla-rft collect-corrections --policy runs/policy/cpu --perturb none,object,goal,robot_init \
        --episodes 40 --seed 5000 --takeover 16,40 --out data/corrections

For every task, perturbation and seed, the policy first runs one closed-loop episode on its own.
If it fails (or always, with `failures_only=False`), the episode is replayed: the policy drives
for `t` steps, then Meta-World's scripted expert takes over (an operator's intervention) and
drives to success or the step limit. Only the takeover is recorded, from the state the policy
reached at step t, so every step of a correction episode carries the expert's action and every
window of it is a valid RFT start state with a reference, in states the base policy drifts into.
The replay is checked against the first run: a policy that does not repeat itself is an error.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla_rft.contract.config import comma_list
from vla_rft.contract.constants import (
    EXPERT_ACTIONS_KEY,
    OBS_IMAGE,
    OBS_STATE,
    PERTURBATION_KINDS,
    REPLAN_EVERY,
)
from vla_rft.data.episode import EpisodeMeta
from vla_rft.data.episode_store import EpisodeWriter, set_aside_interrupted
from vla_rft.rollout.collect import episode_name
from vla_rft.rollout.episode_loop import ExpertAgent, PolicyAgent, rollout, run_episode
from vla_rft.runtime.chunk_broker import ChunkBrokerConfig
from vla_rft.sim.spec import SIM_IMAGE_SIZE

SOURCE = "correction"
"""EpisodeMeta.source of a correction episode."""

PREFIX_ACTIONS = "prefix_actions"
"""Metadata key: the policy's actions before the takeover [t][A], so the episode's first state
can be reproduced from its seed (`vla-rft reward-check` replays it)."""


@dataclass(frozen=True)
class CorrectionConfig:
    """What `vla-rft collect-corrections` gathers."""

    out: Path
    """Directory the correction episodes are written to (created if missing)."""
    tasks: tuple[str, ...] = ("reach-v3", "push-v3")
    """Meta-World v3 task names."""
    perturbations: tuple[str, ...] = ("none",)
    """Start-state perturbations, each run for every task."""
    episodes_per_task: int = 10
    """Policy episodes per task and perturbation; episode i uses seed `seed + i`."""
    seed: int = 5000
    """First seed (keep clear of the evaluation seeds)."""
    takeover_steps: tuple[int, ...] = (16, 40)
    """Steps the policy drives before the expert takes over; one correction episode each."""
    failures_only: bool = True
    """Correct only the episodes the policy fails on its own."""
    keep_failed_takeovers: bool = False
    """Also write takeovers the expert could not finish (success=False in their metadata)."""
    image_size: int = SIM_IMAGE_SIZE
    """Square camera image size in pixels (the policy's own size is used for its input)."""
    max_steps: int = 150
    """Step limit of an episode, counted from the policy's first step."""
    replan_every: int = REPLAN_EVERY
    """Ticks between policy calls, as in `vla-rft eval`."""

    def __post_init__(self):
        object.__setattr__(self, "out", Path(self.out))
        for name in ("tasks", "perturbations", "takeover_steps"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        unknown = [p for p in self.perturbations if p not in PERTURBATION_KINDS]
        if unknown:
            raise ValueError(f"unknown perturbations {unknown}; choose from {PERTURBATION_KINDS}")
        if self.episodes_per_task < 1:
            raise ValueError(f"episodes_per_task must be >= 1, got {self.episodes_per_task}")
        bad = [t for t in self.takeover_steps if not 0 < t < self.max_steps]
        if bad:
            raise ValueError(f"takeover steps must be in (0, max_steps={self.max_steps}): {bad}")


@dataclass
class CorrectionSummary:
    """What a correction run produced, per task and perturbation."""

    policy_episodes: dict[tuple[str, str], list[bool]] = field(default_factory=dict)
    """(task, perturbation) -> the policy's own successes."""
    takeovers: dict[tuple[str, str, int], list[bool]] = field(default_factory=dict)
    """(task, perturbation, takeover step) -> did the expert finish the task."""
    written: int = 0
    skipped: int = 0
    """Correction episodes already on disk from an earlier run."""
    frames: int = 0
    seconds: float = 0.0

    def table(self) -> str:
        steps = sorted({k[2] for k in self.takeovers})
        rows = [
            "| task | perturbation | policy alone | "
            + " | ".join(f"expert takes over at step {t}" for t in steps)
            + " |",
            "| --- | --- | --- | " + " | ".join("---" for _ in steps) + " |",
        ]
        for (task, pert), own in self.policy_episodes.items():
            cells = [_rate(self.takeovers.get((task, pert, t), [])) for t in steps]
            rows.append(f"| {task} | {pert} | {_rate(own)} | " + " | ".join(cells) + " |")
        rows.append(
            f"\n{self.written} correction episodes written ({self.frames} frames), "
            f"{self.skipped} already there, in {self.seconds:.0f} s"
        )
        return "\n".join(rows)


def _rate(outcomes: list[bool]) -> str:
    if not outcomes:
        return "-"
    return f"{sum(outcomes)}/{len(outcomes)} ({100 * np.mean(outcomes):.0f}%)"


def drive(robot, agent: PolicyAgent, seed: int, perturbation: str, steps: int | None):
    """Reset and let the policy act for `steps` ticks (None: to the end of the episode).

    Returns (last obs, success, done, the robot states seen float32 [t + 1, S], the actions
    taken float32 [t, A])."""
    states, actions = [], []

    def on_step(obs, action):
        states.append(obs[OBS_STATE])
        actions.append(action)

    outcome = run_episode(robot, agent, seed, perturbation, steps, on_step)
    states.append(outcome.obs[OBS_STATE])
    prefix = np.asarray(actions, np.float32).reshape(len(actions), -1)
    return outcome.obs, outcome.success, outcome.done, np.stack(states), prefix


def expert_takeover(robot, obs: dict) -> tuple[bool, list[tuple[np.ndarray, ...]]]:
    """The noise-free expert acts from `obs` to the end of the episode.

    Returns (success, [(image, state, action) per step]); each action is the expert's clean one."""
    steps = []
    outcome = rollout(
        robot, ExpertAgent(robot), obs,
        on_step=lambda o, action: steps.append((o[OBS_IMAGE], o[OBS_STATE], action)),
    )  # fmt: skip
    return outcome.success, steps


def _correct_seed(robot, agent, pert, seed, config, summary, meta) -> None:
    """The policy's own run of one seed, then one takeover per takeover step."""
    task = robot.task
    _, success, _, own_states, _ = drive(robot, agent, seed, pert, None)
    summary.policy_episodes.setdefault((task, pert), []).append(success)
    if success and config.failures_only:
        return
    for t in config.takeover_steps:
        name = f"{episode_name(task, pert, seed)}-takeover{t:03d}"
        if (config.out / name).exists():
            summary.skipped += 1
            continue
        if t >= len(own_states) - 1:  # the policy's episode ended before step t
            continue
        obs, _, _, states, prefix = drive(robot, agent, seed, pert, t)
        if not np.array_equal(states, own_states[: t + 1]):
            raise RuntimeError(
                f"{task} {pert} seed {seed}: replaying the policy for {t} steps did not reach "
                "the state of its first run; corrections need a deterministic policy"
            )
        fixed, steps = expert_takeover(robot, obs)
        summary.takeovers.setdefault((task, pert, t), []).append(fixed)
        if not (fixed or config.keep_failed_takeovers):
            continue
        set_aside_interrupted(config.out, name)
        extra = {**meta["extra"], "seed": seed, "perturbation": pert, "takeover_step": t}
        extra["policy_success"] = success
        extra[PREFIX_ACTIONS] = prefix.tolist()  # float32 values, exact in JSON
        episode_meta = EpisodeMeta(
            **{**meta, "extra": extra}, task=task, instruction=robot.instruction
        )
        with EpisodeWriter(config.out, name, episode_meta) as writer:
            for image, state, action in steps:
                writer.add_step(image, state, action)
            clean = np.asarray([action for _, _, action in steps], np.float32).tolist()
            writer.finish(fixed, extra={EXPERT_ACTIONS_KEY: clean})
        summary.written += 1
        summary.frames += len(steps)


def collect_corrections(
    config: CorrectionConfig, make_policy, policy_name: str, progress: bool = True
) -> CorrectionSummary:
    """Run the policy, correct its failures with the expert and write the takeovers.

    make_policy(robot) -> a deterministic Policy (`infer(obs) -> {"action": [K, A]}`,
    `reset()`), as in `evaluate`; `policy_name` goes into every episode's metadata."""
    from vla_rft.sim import MetaWorldRobot, SimConfig  # needs the sim extra

    config.out.mkdir(parents=True, exist_ok=True)
    summary = CorrectionSummary()
    meta = dict(source=SOURCE, extra={"policy": policy_name, "image_size": config.image_size})
    total = len(config.tasks) * len(config.perturbations) * config.episodes_per_task
    start = time.perf_counter()
    with tqdm(total=total, desc="correcting", unit="ep", disable=not progress) as bar:
        for task in config.tasks:
            sim = SimConfig(task=task, image_size=config.image_size, max_steps=config.max_steps)
            with MetaWorldRobot(sim) as robot:
                spec = robot.embodiment
                meta.update(robot=spec.name, fps=robot.fps, state_names=spec.state_names)
                meta.update(action_names=spec.action_names)
                agent = PolicyAgent(make_policy(robot), ChunkBrokerConfig(config.replan_every))
                for pert in config.perturbations:
                    for seed in range(config.seed, config.seed + config.episodes_per_task):
                        _correct_seed(robot, agent, pert, seed, config, summary, meta)
                        bar.update()
                        own = summary.policy_episodes[(task, pert)]
                        bar.set_postfix(task=task, perturb=pert, policy=f"{sum(own)}/{len(own)}")
    summary.seconds = time.perf_counter() - start
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vla-rft collect-corrections",
        description=__doc__.split("\n")[0],
        epilog="Each takeover is one episode named <task>[-<perturbation>]-seed<N>-takeover<t>; "
        "episodes already in --out are kept, so an interrupted run goes on where it stopped.",
    )
    p.add_argument("--policy", required=True, help="policy checkpoint or run directory")
    p.add_argument("--out", type=Path, required=True, help="directory for the corrections")
    p.add_argument(
        "--tasks", type=comma_list, default=("reach-v3", "push-v3"), help="comma-separated"
    )
    p.add_argument(
        "--perturb",
        type=comma_list,
        default=("none",),
        help=f"comma-separated, from {', '.join(PERTURBATION_KINDS)} (default: none)",
    )
    p.add_argument(
        "--episodes", type=int, default=10, help="policy episodes per task and perturbation"
    )
    p.add_argument("--seed", type=int, default=5000, help="seed of episode 0 (default: 5000)")
    p.add_argument(
        "--takeover",
        type=lambda s: tuple(int(x) for x in comma_list(s)),
        default=(16, 40),
        help="comma-separated steps at which the expert takes over (default: 16,40)",
    )
    p.add_argument("--all", action="store_true", help="correct successes too, not only failures")
    p.add_argument(
        "--keep-failed", action="store_true", help="also write takeovers the expert did not finish"
    )
    p.add_argument("--max-steps", type=int, default=150, help="step limit per episode")
    p.add_argument(
        "--replan-every", type=int, default=REPLAN_EVERY, help="ticks between policy calls"
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from vla_rft.models.checkpoint import resolve_checkpoint
        from vla_rft.runtime.torch_policy import TorchPolicy
        from vla_rft.threads import set_torch_threads

        set_torch_threads(args.threads)
        checkpoint = resolve_checkpoint(args.policy)
        policy = TorchPolicy.from_checkpoint(checkpoint)
        config = CorrectionConfig(
            out=args.out,
            tasks=args.tasks,
            perturbations=args.perturb,
            episodes_per_task=args.episodes,
            seed=args.seed,
            takeover_steps=args.takeover,
            failures_only=not args.all,
            keep_failed_takeovers=args.keep_failed,
            image_size=policy.transforms.image.size,
            max_steps=args.max_steps,
            replan_every=args.replan_every,
        )
        summary = collect_corrections(
            config, lambda robot: policy, str(checkpoint), progress=not args.quiet
        )
    except ValueError as err:  # bad checkpoint, task or setting, named by the message
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"\nCorrection episodes in {config.out}\n\n{summary.table()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
