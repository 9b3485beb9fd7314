"""How fast the simulated robot produces frames: expert rollouts with a camera image per step.

Each row times whole episodes (reset, then expert action + step + render until done) and,
separately, rendering alone. Prints a table and writes JSON (default bench/results/sim.json).

    .venv/bin/python bench/bench_sim.py
    .venv/bin/python bench/bench_sim.py --sizes 64 128 224 --default-render
    .venv/bin/python bench/bench_sim.py --sizes 64 --embodiments metaworld-sawyer \
        metaworld-sawyer-wrist                          # the cost of the wrist camera
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

from vla_rft.contract.constants import SIM_EMBODIMENT
from vla_rft.sim import SIM_CAMERA, MetaWorldRobot, SimConfig

RENDER_ONLY_FRAMES = {True: 200, False: 20}
"""Frames rendered for the render-only figure, by fast_render (the default look is ~10x slower)."""


@dataclass
class Row:
    """One (task, image size, render mode) measurement."""

    task: str
    """Meta-World task name."""
    image_size: int
    """Side of the square image, pixels."""
    embodiment: str
    """The spec whose cameras were rendered."""
    cameras: int
    """Images rendered per step."""
    fast_render: bool
    """Whether shadows, reflections, skybox and anti-aliasing were off."""
    episodes: int
    """Expert episodes timed."""
    successes: int
    """Episodes the expert solved within max_steps."""
    mean_steps: float
    """Mean steps per episode."""
    frames: int
    """Images produced: one per reset and one per step."""
    seconds: float
    """Wall-clock time of the episodes."""
    frames_per_s: float
    """frames / seconds: reset + expert + step + render of every camera, end to end."""
    render_only_frames_per_s: float
    """Frames per second when only rendering the same scene."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["reach-v3", "push-v3"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128], help="image sides")
    parser.add_argument("--episodes", type=int, default=4, help="expert episodes per row")
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--camera", default=SIM_CAMERA)
    parser.add_argument(
        "--embodiments", nargs="+", default=[SIM_EMBODIMENT], help="specs naming the cameras"
    )
    parser.add_argument(
        "--default-render",
        action="store_true",
        help="also time Meta-World's default look (shadows etc.), one episode: slow",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/sim.json"))
    return parser.parse_args(argv)


def measure(config: SimConfig, episodes: int) -> Row:
    with MetaWorldRobot(config) as robot:
        robot.reset(seed=10_000)  # warm-up: the first render sets up GL buffers
        steps, successes = [], 0
        start = time.perf_counter()
        for seed in range(episodes):
            obs, success, done = robot.reset(seed), False, False
            while not done:
                obs, success, done, _ = robot.step(robot.expert_action(obs))
            steps.append(robot.steps)
            successes += success
        seconds = time.perf_counter() - start
        render_frames = RENDER_ONLY_FRAMES[config.fast_render]
        render_seconds = time_rendering(robot, render_frames)
    frames = sum(steps) + episodes
    return Row(
        task=config.task,
        image_size=config.image_size,
        embodiment=config.embodiment,
        cameras=1 + len(config.extra_cameras),
        fast_render=config.fast_render,
        episodes=episodes,
        successes=successes,
        mean_steps=sum(steps) / episodes,
        frames=frames,
        seconds=round(seconds, 3),
        frames_per_s=round(frames / seconds, 1),
        render_only_frames_per_s=round(render_frames / render_seconds, 1),
    )


def time_rendering(robot: MetaWorldRobot, frames: int) -> float:
    start = time.perf_counter()
    for _ in range(frames):
        robot.render()
    return time.perf_counter() - start


def print_table(rows: list[Row]) -> None:
    header = f"{'task':<10} {'size':>5} {'cams':>4} {'render':>7} {'success':>8} {'steps':>6} "
    header += f"{'frames/s':>9} {'render-only/s':>14}"
    print(header)
    print("-" * len(header))
    for row in rows:
        render = "fast" if row.fast_render else "default"
        print(
            f"{row.task:<10} {row.image_size:>5} {row.cameras:>4} {render:>7} "
            f"{row.successes:>4}/{row.episodes:<3} {row.mean_steps:>6.1f} "
            f"{row.frames_per_s:>9.1f} {row.render_only_frames_per_s:>14.1f}"
        )


def machine() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "mujoco": version("mujoco"),
        "metaworld": version("metaworld"),
        "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.episodes < 1:
        sys.exit("--episodes must be at least 1")
    configs = [
        SimConfig(task, size, args.camera, args.max_steps, fast, embodiment)
        for fast in ((True, False) if args.default_render else (True,))
        for task in args.tasks
        for size in args.sizes
        for embodiment in args.embodiments
    ]
    rows = []
    for config in configs:
        episodes = args.episodes if config.fast_render else 1
        rows.append(measure(config, episodes))
    print_table(rows)
    report = {
        "benchmark": "sim",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {"camera": args.camera, "max_steps": args.max_steps},
        "results": [asdict(row) for row in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
