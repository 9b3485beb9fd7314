"""`vla-rft eval`: closed-loop episodes of a policy in the simulated robot.

    vla-rft eval --policy runs/policy/cpu --tasks reach-v3,push-v3 --episodes 50 \
        --perturb none,object,goal,robot_init --seed 1000

Episode i of every task and perturbation starts from seed `seed + i`, so two policies evaluated
with the same arguments face identical starts, and the same policy gives identical episodes.
The chunk broker turns the policy's chunks into one action per tick. Writes `report.json`
(per task and perturbation: success rate with a 95% Wilson interval, mean episode length; every
episode), `report.md` (the table) and a PNG strip and GIF of one success and one failure.
`--policy expert` runs Meta-World's scripted expert instead, as a reference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla_rft.contract.config import comma_list
from vla_rft.contract.constants import (
    ACTION,
    OBS_IMAGE,
    OBS_STATE,
    PERTURBATION_KINDS,
    REPLAN_EVERY,
    SIM_EMBODIMENT,
    SIM_WRIST_EMBODIMENT,
)
from vla_rft.contract.policy import PolicySpec
from vla_rft.rollout.episode_loop import PolicyAgent, run_episode
from vla_rft.rollout.report import (
    EpisodeResult,
    build_report,
    markdown_table,
    merge_reports,
    save_media,
)
from vla_rft.runtime.chunk_broker import ChunkBrokerConfig
from vla_rft.sim.spec import SIM_IMAGE_SIZE
from vla_rft.threads import set_torch_threads

EXPERT = "expert"


class ExpertPolicy:
    """Meta-World's scripted expert behind the Policy interface (chunks of one action)."""

    def __init__(self, robot):
        self.robot = robot

    @property
    def spec(self) -> PolicySpec:
        robot, size = self.robot.embodiment, self.robot.config.image_size
        return PolicySpec(robot.state_dim, robot.action_dim, 1, size, robot.summary())

    def infer(self, obs: dict) -> dict[str, np.ndarray]:
        return {ACTION: self.robot.expert_action(obs)[None]}

    def reset(self) -> None:
        pass


def evaluate_episode(
    robot, agent: PolicyAgent, seed: int, perturbation: str, record: bool
) -> tuple[EpisodeResult, np.ndarray | None]:
    """One episode from `robot.reset(seed, perturbation)` to success or the step limit.

    Returns the result (with a hash of every frame and action, so identical episodes can be
    told apart from merely equal outcomes) and, if `record`, the frames uint8 [T + 1, H, W, 3].
    """
    digest, frames = hashlib.sha256(), []

    def on_step(obs, action):
        digest.update(obs[OBS_IMAGE].tobytes())
        digest.update(action.tobytes())
        if record:
            frames.append(obs[OBS_IMAGE])

    outcome = run_episode(robot, agent, seed, perturbation, on_step=on_step)
    digest.update(outcome.obs[OBS_IMAGE].tobytes())
    frames.append(outcome.obs[OBS_IMAGE])
    final_state = [float(x) for x in outcome.obs[OBS_STATE]]
    result = EpisodeResult(
        robot.task, perturbation, seed, outcome.success, outcome.steps, final_state,
        digest.hexdigest(),
    )  # fmt: skip
    return result, (np.stack(frames) if record else None)


def evaluate(
    make_policy,
    tasks: list[str],
    perturbations: list[str],
    episodes: int,
    seed: int,
    broker_config: ChunkBrokerConfig,
    image_size: int = SIM_IMAGE_SIZE,
    max_steps: int = 150,
    progress: bool = False,
    embodiment: str = SIM_EMBODIMENT,
) -> tuple[list[EpisodeResult], list[tuple[str, np.ndarray]]]:
    """All episodes, in a fixed order, and the frames of the first success and first failure.

    make_policy(robot) -> Policy (the robot is there for the expert; learned policies ignore it).
    `embodiment`: the simulated robot's spec, whose further cameras are rendered too.
    """
    from vla_rft.sim import MetaWorldRobot, SimConfig

    results, media = [], {}
    bar = tqdm(total=len(tasks) * len(perturbations) * episodes, disable=not progress)
    for task in tasks:
        robot = MetaWorldRobot(
            SimConfig(task, image_size=image_size, max_steps=max_steps, embodiment=embodiment)
        )
        agent = PolicyAgent(make_policy(robot), broker_config)
        try:
            for perturbation in perturbations:
                for i in range(episodes):
                    record = len(media) < 2
                    result, frames = evaluate_episode(robot, agent, seed + i, perturbation, record)
                    results.append(result)
                    if record and result.success not in media:
                        label = "success" if result.success else "failure"
                        media[result.success] = (
                            f"{label}: {task} {perturbation} seed {result.seed}, "
                            f"{result.steps} steps",
                            frames,
                        )
                    bar.update()
        finally:
            robot.close()
    bar.close()
    return results, [media[k] for k in (True, False) if k in media]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vla-rft eval", description=__doc__.split("\n")[0])
    p.add_argument("--policy", required=True, help="checkpoint or run directory, or 'expert'")
    p.add_argument(
        "--tasks", type=comma_list, default=("reach-v3", "push-v3"), help="comma-separated"
    )
    p.add_argument("--episodes", type=int, default=20, help="episodes per task and perturbation")
    p.add_argument(
        "--perturb",
        type=comma_list,
        default=("none",),
        help=f"comma-separated, from {', '.join(PERTURBATION_KINDS)} (default: none)",
    )
    p.add_argument("--seed", type=int, default=1000, help="seed of episode 0 (default: 1000)")
    p.add_argument("--max-steps", type=int, default=150, help="step limit per episode")
    p.add_argument(
        "--embodiment",
        default=SIM_EMBODIMENT,
        help=f"the simulated robot's spec, which names its cameras ({SIM_WRIST_EMBODIMENT}: the "
        "wrist camera too, for a policy that sees it; default: %(default)s)",
    )
    p.add_argument(
        "--replan-every", type=int, default=REPLAN_EVERY, help="ticks between policy calls"
    )
    p.add_argument("--temporal-ensemble", action="store_true", help="average overlapping chunks")
    p.add_argument(
        "--flow-steps",
        type=int,
        help="Euler steps of the flow head (default: the trained number; fewer are faster)",
    )
    p.add_argument(
        "--out", type=Path, help="report directory (default: runs/eval/<run>-<checkpoint>-<name>)"
    )
    p.add_argument("--device", default="cpu", help="torch device of the policy")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes, each running a share of the seeds with one torch thread; their "
        "reports are merged into one (default 1; 2 on a 2-core machine halves the time)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def run_shares(argv: list[str], args, out: Path) -> int:
    """`--workers N`: N copies of this command, each on a contiguous share of the seeds with one
    thread, writing to out/share<k> (its output in out/share<k>.log); then their reports merged
    into out. Returns the exit status: the first failing share's, whose error it prints."""
    shares = np.array_split(np.arange(args.episodes), args.workers)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = []
    for k, share in enumerate(shares):
        overrides = ["--seed", str(args.seed + int(share[0])), "--episodes", str(len(share))]
        overrides += ["--out", str(out / f"share{k}"), "--threads", "1", "--workers", "1", "-q"]
        cmd = [sys.executable, "-m", "vla_rft.evaluation.eval_policy", *argv, *overrides]
        with open(out / f"share{k}.log", "w") as log:
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    sizes = "/".join(str(len(s)) for s in shares)
    print(f"{len(procs)} processes, seeds {args.seed}.. split {sizes}; logs in {out}/share<k>.log")
    codes = [proc.wait() for proc in procs]
    for k, code in enumerate(codes):
        if code != 0:
            print((out / f"share{k}.log").read_text().strip(), file=sys.stderr)
            return code
    reports = [json.loads((out / f"share{k}/report.json").read_text()) for k in range(len(shares))]
    write_report(merge_reports(reports), out)
    return 0


def write_report(report: dict, out: Path) -> None:
    """report.json and report.md in `out`, and the table printed."""
    (out / "report.json").write_text(json.dumps(report, indent=1))
    table = markdown_table(report)
    (out / "report.md").write_text(table + "\n")
    print(f"\n{table}\n\nreport: {out / 'report.json'}; strip and GIF: {report['media']}")


def _policy_factory(args):
    """(make_policy(robot), image size, what the report says about the policy)."""
    if args.policy == EXPERT:
        return ExpertPolicy, 64, {"policy": EXPERT}
    from vla_rft.models.checkpoint import resolve_checkpoint
    from vla_rft.runtime.torch_policy import TorchPolicy

    set_torch_threads(args.threads)
    policy = TorchPolicy.from_checkpoint(args.policy, args.device, args.flow_steps)
    size = policy.transforms.image.size
    about = {
        "policy": str(resolve_checkpoint(args.policy)),
        "image_size": size,
        "flow_steps": policy.model.config.flow_steps,
    }
    return (lambda robot: policy), size, about


def _default_out(args) -> Path:
    name = f"{'-'.join(args.perturb)}-seed{args.seed}-n{args.episodes}"
    if args.policy == EXPERT:
        return Path("runs/eval/expert") / name
    from vla_rft.models.checkpoint import resolve_checkpoint

    checkpoint = resolve_checkpoint(args.policy)  # runs/eval, never inside a model version
    return Path("runs/eval") / f"{checkpoint.parent.parent.name}-{checkpoint.name}-{name}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    unknown = [p for p in args.perturb if p not in PERTURBATION_KINDS]
    if unknown or args.episodes < 1 or not 1 <= args.workers <= args.episodes:
        print(
            f"error: perturbations must be among {PERTURBATION_KINDS} (got {unknown}), "
            f"--episodes >= 1 and 1 <= --workers <= --episodes",
            file=sys.stderr,
        )
        return 2
    try:
        make_policy, image_size, about = _policy_factory(args)
        out = args.out or _default_out(args)
        if args.workers > 1:
            return run_shares(argv, args, out)
        broker = ChunkBrokerConfig(args.replan_every, args.temporal_ensemble)
        start = time.perf_counter()
        episodes, media = evaluate(
            make_policy, args.tasks, args.perturb, args.episodes, args.seed, broker,
            image_size, args.max_steps, progress=not args.quiet, embodiment=args.embodiment,
        )  # fmt: skip
    except ValueError as err:  # a bad checkpoint, task or setting, named by the message
        print(f"error: {err}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        **about,
        "tasks": args.tasks,
        "perturbations": args.perturb,
        "seeds": [args.seed, args.seed + args.episodes - 1],
        "max_steps": args.max_steps,
        "embodiment": args.embodiment,
        "broker": asdict(broker),
        "seconds": round(time.perf_counter() - start, 1),
        "interrupted": None,  # as in the evaluation graph's reports, so shares merge
    }
    report = build_report(episodes, meta)
    report["media"] = [str(p) for p in save_media(media, out, "episodes")]
    write_report(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
