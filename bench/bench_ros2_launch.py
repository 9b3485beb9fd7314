"""The operators' command under a real ROS 2 against `vla-rft bringup --sim`: the same exported
policy, the same seeds, success rate and wall time side by side.

    .venv/bin/python bench/bench_ros2_launch.py --policy-model models/current [--episodes 10]

Builds the package with ros2_ws/build.sh (colcon, as ros2_ws/README.md does), then runs
`ros2 launch vla_rft bringup.launch.py use_sim:=true record:=false policy_model:=... backend:=...`
(rclpy over rmw_cyclonedds_cpp) and `vla-rft bringup --sim` (the Cyclone DDS host) with
config/bringup.yaml's evaluation settings and `--episodes` per task. Needs an installed ROS 2
(scripts/install_ros2.sh). Prints the table and writes bench/results/ros2_launch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report

from vla_rft_nodes.domain import LOOPBACK_CYCLONEDDS
from vla_rft_nodes.host.ros2_env import sourced_env

REPO = Path(__file__).resolve().parents[1]


def run(label: str, cmd: list[str], env: dict, report_dir: Path) -> dict:
    start = time.monotonic()
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"{label} exited {done.returncode}:\n{done.stdout[-3000:]}")
    episodes = json.loads((report_dir / "report.json").read_text())["episodes"]
    keyed = {(e["task"], e["perturbation"], e["seed"]): e for e in episodes}
    return {"seconds": seconds, "episodes": keyed}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--policy-model", type=Path, default=Path("models/current"))
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task")
    args = p.parse_args()
    model = args.policy_model.resolve()
    env = {
        **sourced_env(), "ROS_DOMAIN_ID": str(random.randint(100, 230)),
        "CYCLONEDDS_URI": os.environ.get("CYCLONEDDS_URI", LOOPBACK_CYCLONEDDS),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    }  # fmt: skip
    build = subprocess.run([str(REPO / "ros2_ws" / "build.sh")], env=env, capture_output=True)
    if build.returncode != 0:
        raise RuntimeError(f"ros2_ws/build.sh failed:\n{build.stdout.decode()[-3000:]}")
    launch_env = sourced_env(REPO / "ros2_ws" / "install" / "setup.bash")
    launch_env.update({k: env[k] for k in ("ROS_DOMAIN_ID", "CYCLONEDDS_URI")})

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        params = yaml.safe_load((REPO / "config" / "bringup.yaml").read_text())
        manager = params["eval_manager_node"]["ros__parameters"]
        manager.update(episodes=args.episodes, out_dir=str(tmp / "launch"), save_media=False)
        (tmp / "params.yaml").write_text(yaml.safe_dump(params))
        launch = run("ros2 launch", [
            "ros2", "launch", "vla_rft", "bringup.launch.py", "use_sim:=true", "record:=false",
            f"policy_model:={model}", f"backend:={args.backend}",
            f"params_file:={tmp / 'params.yaml'}",
        ], launch_env, tmp / "launch")  # fmt: skip
        bringup = run("vla-rft bringup", [
            sys.executable, "-m", "vla_rft_nodes.bringup", "--sim", "--no-record",
            "--policy-model", str(model), "--backend", args.backend,
            "--episodes", str(args.episodes), "--report-dir", str(tmp / "bringup"),
            "--set", "eval_manager_node.save_media=false",
        ], {**os.environ, **{k: env[k] for k in ("ROS_DOMAIN_ID", "CYCLONEDDS_URI")}},
            tmp / "bringup")  # fmt: skip

    seeds = sorted(launch["episodes"])
    same = sum(
        launch["episodes"][s]["success"] == bringup["episodes"].get(s, {}).get("success")
        for s in seeds
    )
    rows = []
    for label, result in (
        ("ros2 launch (rclpy)", launch),
        ("vla-rft bringup (Cyclone DDS)", bringup),
    ):
        episodes = list(result["episodes"].values())
        successes = sum(e["success"] for e in episodes)
        rows.append({
            "graph": label, "episodes": len(episodes), "successes": successes,
            "success rate": round(successes / len(episodes), 3),
            "mean steps": round(sum(e["steps"] for e in episodes) / len(episodes), 1),
            "same outcome per seed": f"{same}/{len(seeds)}", "wall s": round(result["seconds"], 1),
        })  # fmt: skip
    print(f"policy {model} ({args.backend}), {len(seeds)} episodes, seeds from {seeds[0]}")
    report("ros2_launch", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
