"""Camera-to-action latency and control rate of the policy node, through Cyclone DDS on loopback.

This process is the camera and the robot: it publishes frames and states at 30 Hz; the policy
node runs as its own process (as on a robot) and answers each frame with an action. Latency is
frame publish -> action arrival, both here (one DDS hop each way, inference, safety checks).
The policy node runs on each host in turn: the Cyclone DDS host and, when a ROS 2 is installed,
rclpy over rmw_cyclonedds_cpp (the camera stays on the Cyclone DDS host: the same wire).

    .venv/bin/python bench/bench_control_loop.py                       # stand-in ONNX policy
    .venv/bin/python bench/bench_control_loop.py --model models/policy --backend onnxruntime
    .venv/bin/python bench/bench_control_loop.py --model PKG --embodiment metaworld-sawyer-wrist
                                                 # a two-camera package: both cameras published

Rows: image size x mode. "1:sync" asks the policy on every frame and waits for the answer (each
action computed from its own frame: latency includes inference); "4:async" is the default
(a chunk every 4 ticks, computed while the current one is used: latency does not include
inference; "obs age" is how old the frame behind each action is). "frames without action" are
frames whose action had not arrived when the next frame was sent (missed control ticks).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import percentiles, report

from vla_rft.contract.constants import (
    ACTION_TOPIC,
    INSTRUCTION_TOPIC,
    SIM_EMBODIMENT,
    SIM_WRIST_EMBODIMENT,
    STATE_TOPIC,
    STATUS_TOPIC,
)
from vla_rft.contract.embodiment import load_embodiment
from vla_rft.contract.qos import QoS
from vla_rft_nodes.domain import LOOPBACK_CYCLONEDDS
from vla_rft_nodes.host.base import rss_mb
from vla_rft_nodes.host.ros2_env import ros2_prefix, sourced_env
from vla_rft_nodes.policy_node import IDLE_REASONS
from vla_rft_nodes.standin_policy import build_standin_onnx

RATE_HZ = 30.0
WARMUP_S = 2.0


class Camera:
    """Frames (every camera of the robot, one stamp) and states out, actions and the policy
    node's status in."""

    def __init__(self, embodiment: str):
        from vla_rft_nodes.host.cyclonedds_host import CycloneHost

        self.host = CycloneHost("bench_camera")
        c = "std_msgs/msg/"
        topics = [camera.topic for camera in load_embodiment(embodiment).cameras]
        self.image_pubs = [
            self.host.publisher(topic, "sensor_msgs/msg/Image", QoS.SENSOR_DATA) for topic in topics
        ]
        self.state_pub = self.host.publisher(STATE_TOPIC, c + "Float32MultiArray", QoS.RELIABLE)
        self.instruction_pub = self.host.publisher(INSTRUCTION_TOPIC, c + "String", QoS.LATCHED)
        self.arrivals: list[int] = []
        self.status: dict = {}
        self.host.subscribe(
            ACTION_TOPIC, c + "Float32MultiArray", lambda _: self.arrivals.append(time.time_ns()),
            QoS.RELIABLE, depth=1000,
        )  # fmt: skip
        self.host.subscribe(STATUS_TOPIC, c + "String", self._on_status, QoS.LATCHED)
        self._thread = threading.Thread(target=self.host.spin, daemon=True)
        self._thread.start()

    def _on_status(self, msg):
        status = json.loads(msg.data)
        if status["node"] == "policy_node":
            self.status = status

    def wait_until(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def run(self, size: int, seconds: float) -> list[int]:
        """Publish frames at RATE_HZ for `seconds`; returns their publish times (ns)."""
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(8)]
        state = np.array([0.0, 0.6, 0.2, 1.0], np.float32)
        codec, sent = self.host.codec, []
        period, start = 1.0 / RATE_HZ, time.monotonic()
        for i in range(int(seconds * RATE_HZ)):
            time.sleep(max(0.0, start + i * period - time.monotonic()))
            self.state_pub.publish(codec.floats_to_msg(state))
            stamp = time.time_ns()
            for k, publisher in enumerate(self.image_pubs):
                publisher.publish(codec.image_to_msg(images[(i + k) % len(images)], stamp))
            sent.append(stamp)
        time.sleep(0.2)
        return sent

    def close(self):
        self.host.request_shutdown()
        self._thread.join(timeout=5)
        self.host.close()


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def start_policy_node(host: str, params: dict[str, str]) -> subprocess.Popen:
    """The policy node as its own process on `host`: the Cyclone DDS host, or rclpy under the
    installed ROS 2 (rmw_cyclonedds_cpp, the same domain and CYCLONEDDS_URI)."""
    module = [sys.executable, "-m", "vla_rft_nodes.policy_node"]
    if host == "cyclonedds":
        sets = [a for k, v in params.items() for a in ("--set", f"{k}={v}")]
        env = {**os.environ, "VLA_RFT_HOST": "cyclonedds"}
        return subprocess.Popen([*module, *sets, "--log-level", "ERROR"], env=env)
    ros_params = [a for k, v in params.items() for a in ("-p", f"{k}:={v}")]
    env = {**sourced_env(), "VLA_RFT_HOST": "rclpy"}
    for key in ("CYCLONEDDS_URI", "ROS_DOMAIN_ID"):
        env[key] = os.environ[key]
    command = [*module, "--ros-args", *ros_params, "--log-level", "ERROR"]
    return subprocess.Popen(command, env=env)


def measure(args, host: str, size: int, mode: str, model: Path, factory: str) -> dict:
    replan_every, timing = mode.split(":")
    node = start_policy_node(host, {
        "model_path": str(model), "backend": args.backend, "policy_factory": factory,
        "replan_every": replan_every, "control_rate_hz": str(RATE_HZ), "trigger": args.trigger,
        "async_inference": "true" if timing == "async" else "false", "status_period_s": "0.5",
        "embodiment": args.embodiment,
    })  # fmt: skip
    camera = Camera(args.embodiment)
    try:
        camera.wait_until(lambda: camera.status.get("state") == "active", 120, "the policy node")
        camera.wait_until(
            lambda: min(pub.subscriber_count() for pub in camera.image_pubs) >= 1, 10, "matching"
        )
        camera.instruction_pub.publish(camera.host.codec.string_to_msg(args.instruction))
        time.sleep(0.3)
        sent = camera.run(size, WARMUP_S + args.seconds)
        status, rss, peak = camera.status, rss_mb(node.pid), peak_rss_mb(node.pid)
        if os.environ.get("BENCH_DEBUG"):
            print(json.dumps(status, indent=1))
    finally:
        camera.close()
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.kill()
    first = int(WARMUP_S * RATE_HZ)
    arrivals = np.array(camera.arrivals, dtype=np.int64)
    latencies, missed = [], 0
    for i in range(first, len(sent) - 1):
        window = arrivals[(arrivals >= sent[i]) & (arrivals < sent[i + 1])]
        if window.size:
            latencies.append((window[0] - sent[i]) / 1e9)
        else:
            missed += 1
    span = (sent[-1] - sent[first]) / 1e9
    in_span = np.count_nonzero((arrivals >= sent[first]) & (arrivals <= sent[-1]))
    counters = status.get("counters", {})
    return {
        "host": host,
        "image px": size,
        "mode": mode,
        **{k: round(v, 2) for k, v in percentiles(latencies).items()},
        "max_ms": round(float(max(latencies)) * 1e3, 2) if latencies else None,
        "frames": len(sent) - 1 - first,
        "frames without action": missed,
        "actions/s": round(float(in_span / span), 2),
        "node missed ticks": counters.get("missed_ticks", 0),
        "node fault holds": sum(
            v for k, v in counters.items() if k.startswith("holds.") and k[6:] not in IDLE_REASONS
        ),
        "inference p50 ms": status.get("inference_ms", {}).get("p50"),
        "obs age p99 ms": status.get("action_observation_age_ms", {}).get("p99"),
        "policy node RSS MiB": rss,
        "policy node peak RSS MiB": peak,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, help="exported policy (default: the stand-in ONNX)")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument(
        "--factory", default="vla_rft.runtime.loader:load_policy", help="policy_factory for --model"
    )
    p.add_argument(
        "--hosts", default="cyclonedds,rclpy",
        help="policy node hosts, each a row group (rclpy: under the installed ROS 2; skipped "
        "with a note when there is none)",
    )  # fmt: skip
    p.add_argument("--sizes", default="64,224")
    p.add_argument("--modes", default="1:sync,4:async", help="replan_every:sync|async, ...")
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per row")
    p.add_argument("--trigger", default="camera", choices=("camera", "timer"))
    p.add_argument("--instruction", default="move the gripper to the target")
    p.add_argument(
        "--embodiment",
        default=SIM_EMBODIMENT,
        help=f"the robot's spec: its cameras are published (default: {SIM_EMBODIMENT}; "
        f"{SIM_WRIST_EMBODIMENT} adds the wrist camera a two-camera policy reads)",
    )
    p.add_argument("--name", default="control_loop", help="results name (bench/results/NAME.json)")
    args = p.parse_args()
    os.environ.setdefault("CYCLONEDDS_URI", LOOPBACK_CYCLONEDDS)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(100, 230)))
    if args.model:
        model, factory, policy = args.model, args.factory, str(args.model)
    else:
        model = build_standin_onnx(Path("/tmp/vla_rft_bench/standin.onnx"))
        factory, policy = "vla_rft_nodes.standin_policy:load_standin_policy", "stand-in ONNX"
    hosts = args.hosts.split(",")
    if "rclpy" in hosts and ros2_prefix() is None:
        print("no ROS 2 installed (scripts/install_ros2.sh): no rclpy rows", flush=True)
        hosts.remove("rclpy")
    rows = []
    for size in map(int, args.sizes.split(",")):
        for mode in args.modes.split(","):
            for host in hosts:  # side by side, so that both see the same machine
                row = measure(args, host, size, mode, model, factory)
                cameras = len(load_embodiment(args.embodiment).cameras)
                rows.append({"policy": policy, "cameras": cameras, "trigger": args.trigger, **row})
                print(rows[-1], flush=True)
    report(args.name, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
