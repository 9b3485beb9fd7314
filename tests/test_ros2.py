"""The package under a real ROS 2 (marker `ros2`): colcon builds it, `ros2 launch` runs the
graph to the end over rmw_cyclonedds_cpp, the command-line tools see what they should, and the
rclpy host talks to the Cyclone DDS host.

ROS 2 comes from scripts/install_ros2.sh (.ci/run runs it first); these tests skip only where
no ROS 2 is installed. Each runs ROS 2 in child processes (tests/ros2_testing.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from graph_testing import (
    LIFECYCLE,
    POLICY_INPUTS,
    RECORDER_INPUTS,
    STANDIN_FACTORY,
    Feeder,
    motion_since,
    standin_args,
)
from guide_testing import Shift, part_commands
from ros2_testing import (
    PACKAGE_FILES,
    REPO,
    colcon_build,
    copy_package,
    requires_ros2,
    ros2_env,
    tool_venv,
)
from rosbags.highlevel import AnyReader

from vla_rft.contract.constants import (
    ACTION_TOPIC,
    EPISODE_EVENT_TOPIC,
    ESTOP_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    JOINT_STATE_TYPE,
    STATE_TOPIC,
    STATUS_TOPIC,
    STRING_TYPE,
)
from vla_rft.contract.qos import QoS
from vla_rft.data.episode_store import (
    list_episodes,
    read_episode,
    read_episode_meta,
    write_episode,
)
from vla_rft_nodes import events
from vla_rft_nodes.configs import PolicyNodeConfig, field_docs
from vla_rft_nodes.dds_types import TYPE_HASHES
from vla_rft_nodes.host.cyclonedds_host import CycloneHost
from vla_rft_nodes.node_table import NODES
from vla_rft_nodes.robot_interfaces import COMMAND_MSGS, COMMAND_TOPIC, command_msg
from vla_rft_nodes.standin_policy import build_standin_onnx

pytestmark = [pytest.mark.ros2, pytest.mark.slow, requires_ros2]

LAUNCH = "ros2 launch vla_rft bringup.launch.py use_sim:=true record:=true"
"""The operators' command, as README.md and docs/OPERATOR_GUIDE.md give it (plus the package)."""
ROS2CLI_CTRL_C = (signal.SIGINT, signal.SIGTERM)
"""How a `ros2` command ends on Ctrl-C (ros2cli/cli.py): SIGINT's status when Python raised
KeyboardInterrupt, SIGTERM's when rclpy's own signal handler shut the command's context down
first (ExternalShutdownException; always so when the command started with SIGINT ignored).
Which of the two is a race inside rclpy: the guide's e-stop publisher ended with 15 in two CI
runs at stop 28 and with 2 in every other run."""


# --- colcon build ------------------------------------------------------------------------------


def _check_installed_layout(install: Path) -> None:
    share = install / "vla_rft" / "share" / "vla_rft"
    assert (share / "launch" / "bringup.launch.py").is_file()
    assert (share / "config" / "bringup.yaml").is_file()
    assert (share / "package.xml").is_file()
    index = install / "vla_rft" / "share" / "ament_index" / "resource_index" / "packages"
    assert (index / "vla_rft").is_file()
    (site,) = install.glob("vla_rft/lib/python3*/site-packages")
    packages = {p.parent.relative_to(site).as_posix() for p in site.rglob("__init__.py")}
    assert {"vla_rft/contract", "vla_rft/pipeline", "vla_rft/rollout", "vla_rft_nodes"} <= packages
    assert (site / "vla_rft/contract/embodiments/metaworld-sawyer.yaml").is_file()
    for node in NODES:
        script = install / "vla_rft" / "lib" / "vla_rft" / node
        # the first python3 on PATH runs the nodes (this project's environment), not colcon's
        assert script.read_text().splitlines()[0] == "#!/usr/bin/env python3", node


@pytest.mark.parametrize("setuptools_version", ["68.1.2", "59.6.0"], ids=["jazzy", "humble"])
def test_colcon_builds_the_package_with_the_setuptools_ros2_ships(setuptools_version, tmp_path):
    """Jazzy ships setuptools 68.1.2, Humble 59.6.0; colcon reads setup.py with either."""
    python = tool_venv(f"colcon-setuptools-{setuptools_version}", (
        "colcon-common-extensions==0.3.0", f"setuptools=={setuptools_version}",
    ))  # fmt: skip
    workspace = copy_package(tmp_path)
    done = colcon_build(workspace, ros2_env(), python)
    assert done.returncode == 0, done.stdout[-4000:]
    _check_installed_layout(workspace / "install")


# --- ros2 launch --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package built with colcon (this environment's), as an operator would: the overlay's
    setup.bash."""
    workspace = copy_package(tmp_path_factory.mktemp("ws"))
    done = colcon_build(workspace, ros2_env())
    assert done.returncode == 0, done.stdout[-4000:]
    return workspace / "install" / "setup.bash"


def _params(tmp_path: Path, **overrides) -> Path:
    """config/bringup.yaml with the stand-in policy, short episodes and tmp_path outputs;
    `overrides` are {node: {parameter: value}}."""
    params = yaml.safe_load((REPO / "config" / "bringup.yaml").read_text())
    short = {
        "policy_node": {"policy_factory": STANDIN_FACTORY},
        "recorder_node": {"out_dir": str(tmp_path / "rec")},
        "sim_robot_node": {"image_size": 32},
        "eval_manager_node": {
            "episodes": 2, "max_steps": 20, "out_dir": str(tmp_path / "report"),
            "startup_timeout_s": 60.0, "episode_timeout_s": 30.0,
        },
    }  # fmt: skip
    for node, values in [*short.items(), *overrides.items()]:
        params[node]["ros__parameters"].update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _bag_info_counts(info: str) -> dict[str, int]:
    """{topic: count} from `ros2 bag info` output."""
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"Topic: (\S+) \| Type: \S+ \| Count: (\d+)", info)
    }


def _launch(installed: Path, tmp_path: Path, params: Path, timeout: float = 240.0):
    model = build_standin_onnx(tmp_path / "standin" / "policy.onnx")
    cmd = f"{LAUNCH} policy_model:={model} backend:=onnxruntime params_file:={params}"
    return subprocess.run(
        cmd.split(), env=ros2_env(installed), cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=timeout,
    )  # fmt: skip


def test_ros2_launch_runs_the_evaluation_to_the_end_and_exits_by_itself(installed, tmp_path):
    done = _launch(installed, tmp_path, _params(tmp_path))
    log = done.stdout
    assert done.returncode == 0, log[-6000:]
    for node in NODES:  # every node ended by itself or on SIGINT, without an error
        assert f"[{node}-" in log and "process has finished cleanly" in log, node
    assert "Traceback" not in log and "RCLError" not in log, log[-6000:]

    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [e["steps"] for e in report["episodes"]] == [20, 20]
    episodes = list_episodes(tmp_path / "rec")
    assert len(episodes) == 2
    for path in episodes:  # read back with rosbags, and with `ros2 bag info`
        with AnyReader([path]) as reader:
            counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts[ACTION_TOPIC] == len(read_episode(path)) == 20
        assert _bag_info_counts(_ros2(ros2_env(installed), "bag", "info", str(path))) == counts


def test_ros2_launch_exits_non_zero_when_a_node_fails(installed, tmp_path):
    """A simulated robot with a bad parameter exits 2 at once: the launch must say so."""
    params = _params(tmp_path, sim_robot_node={"rate_hz": -1.0})
    done = _launch(installed, tmp_path, params, timeout=120.0)
    assert done.returncode != 0, done.stdout[-4000:]
    assert "sim_robot_node exited with status 2" in done.stdout


# --- the rclpy host ----------------------------------------------------------------------------


def test_the_rclpy_host_contract_under_ros2():
    """tests/test_rclpy_host.py (messages byte for byte, cv_bridge, QoS, parameters, lifecycle)
    in a process with the real rclpy; nothing in it may skip."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         str(REPO / "tests" / "test_rclpy_host.py")],
        env=ros2_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-6000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-3000:]


# --- the command line and a mixed graph --------------------------------------------------------


def _ros2(env, *args: str, timeout: float = 60.0) -> str:
    """Run a `ros2` command (without the ros2 daemon, which would outlive the test); its output
    (it must succeed)."""
    no_daemon = ["--no-daemon"] if args[0] in ("param", "lifecycle") else []
    done = subprocess.run(
        ["ros2", *args, *no_daemon], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, f"ros2 {' '.join(args)}:\n{done.stdout[-3000:]}"
    return done.stdout


def _ctrl_c(proc: subprocess.Popen) -> str:
    """SIGINT to the process group, as Ctrl-C in a terminal (`ros2 run` and its node); the
    output. Killed after 20 s."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate()[0] + "\n[killed after 20 s]"


def test_lifecycle_parameters_and_estop_from_the_ros2_command_line(spy, installed, tmp_path):
    """The policy node under rclpy; this test's Cyclone DDS host feeds it (a mixed graph) while
    `ros2 lifecycle`, `ros2 param` and `ros2 topic pub` drive it as an operator would."""
    env = ros2_env(installed)
    model = build_standin_onnx(tmp_path / "standin.onnx")
    params = [f"{k}:={v}" for k, v in (
        ("policy_factory", STANDIN_FACTORY), ("model_path", model), ("trigger", "timer"),
        ("status_period_s", 0.1),
    )]  # fmt: skip
    node = subprocess.Popen(
        ["ros2", "run", "vla_rft", "policy_node", "--ros-args", *(
            a for p in params for a in ("-p", p))],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    feeder = None
    try:
        spy.wait_active("policy_node", [t for t in POLICY_INPUTS if t != LIFECYCLE], timeout=60)
        c = spy.host.codec
        spy.publish(INSTRUCTION_TOPIC, c.string_to_msg("move the gripper to the target"))
        feeder = Feeder(spy)
        spy.wait_for(lambda: motion_since(spy, 0) > 0, what="motion from the rclpy node")

        described = _ros2(env, "param", "describe", "/policy_node", "replan_every")
        assert field_docs(PolicyNodeConfig)["replan_every"].split()[0] in described
        listed = _ros2(env, "param", "list", "/policy_node")
        assert {f.name for f in dataclasses.fields(PolicyNodeConfig)} <= set(listed.split())
        assert _ros2(env, "param", "get", "/policy_node", "trigger").strip().endswith("timer")

        _ros2(env, "lifecycle", "set", "/policy_node", "deactivate")
        held = time.monotonic()
        time.sleep(1.0)
        assert motion_since(spy, held) == 0
        assert spy.statuses["policy_node"]["state"] == "inactive"
        _ros2(env, "lifecycle", "set", "/policy_node", "activate")
        spy.wait_for(lambda: motion_since(spy, held) > 0, what="motion after activate")

        _ros2(env, "topic", "pub", "--once", "-w", "3", "--qos-reliability", "reliable",
              "--qos-durability", "transient_local", ESTOP_TOPIC, "std_msgs/msg/Bool",
              "{data: true}")  # fmt: skip
        pressed = time.monotonic()
        spy.wait_for(lambda: spy.statuses["policy_node"]["estop"], what="the e-stop")
        time.sleep(1.0)
        assert motion_since(spy, pressed) == 0
    finally:
        if feeder is not None:
            feeder.stop()
        out = _ctrl_c(node)
    assert node.returncode == 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]


def test_cyclone_policy_node_closes_the_loop_with_rclpy_robot_and_manager(
    dds, nodes, installed, tmp_path
):
    """The reverse mix: the policy node on the Cyclone DDS host, the simulated robot and the
    evaluation manager under rclpy; one episode runs to its step limit."""
    env = ros2_env(installed)
    model = build_standin_onnx(tmp_path / "standin.onnx")
    nodes.start("vla_rft_nodes.policy_node", *standin_args(model))
    robot = subprocess.Popen(
        ["ros2", "run", "vla_rft", "sim_robot_node", "--ros-args", "-p", "image_size:=32"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        manager = subprocess.run(
            ["ros2", "run", "vla_rft", "eval_manager_node", "--ros-args",
             "-p", "episodes:=1", "-p", "max_steps:=15", "-p", "save_media:=false",
             "-p", f"out_dir:={tmp_path / 'report'}", "-p", "startup_timeout_s:=90.0",
             "-p", "wait_for_nodes:=[sim_robot_node, policy_node]"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=180,
        )  # fmt: skip
    finally:
        robot_out = _ctrl_c(robot)
    assert manager.returncode == 0, manager.stdout[-4000:] + robot_out[-2000:]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [e["steps"] for e in report["episodes"]] == [15]
    assert robot.returncode == 0, robot_out[-3000:]


# --- rosbag2 ------------------------------------------------------------------------------------


def test_ros2_bag_play_puts_an_episode_back_on_the_wire(spy, episode_factory, tmp_path):
    """An episode written by the episode store, played by `ros2 bag play` (rosbag2's MCAP
    plugin), arrives at this test's Cyclone DDS reader frame for frame."""
    env = ros2_env()
    if "bag" not in _ros2(env, "--help"):
        pytest.skip("this ROS 2 has no rosbag2 (scripts/install_ros2.sh builds it)")
    episode = episode_factory(steps=12, size=16)
    path = write_episode(tmp_path, "played", episode)
    _ros2(env, "bag", "play", str(path), "--delay", "2", "--rate", "0.25",
          "--topics", IMAGE_TOPIC, ACTION_TOPIC)  # fmt: skip
    spy.wait_for(lambda: len(spy.received[ACTION_TOPIC]) >= len(episode), 20, "the actions")
    time.sleep(0.5)
    actions = [np.asarray(m.data, np.float32) for _, m in spy.received[ACTION_TOPIC]]
    np.testing.assert_array_equal(np.stack(actions), episode.actions)
    images = [spy.host.codec.image_from_msg(m) for _, m in spy.received[IMAGE_TOPIC]]
    assert len(images) >= len(episode) // 2  # best effort, as the camera topic is
    sent = [next(i for i, x in enumerate(episode.images) if np.array_equal(x, im)) for im in images]
    assert sent == sorted(sent)  # frames the episode has, in its order


def test_ros2_bag_play_republishes_the_instruction_latched(dds, episode_factory, tmp_path):
    """The episode records the QoS the recorder heard each topic with: a node that joins after
    `ros2 bag play` sent the instruction still gets it, as from the live graph."""
    env = ros2_env()
    if "bag" not in _ros2(env, "--help"):
        pytest.skip("this ROS 2 has no rosbag2 (scripts/install_ros2.sh builds it)")
    episode = episode_factory(steps=40, size=16)
    path = write_episode(tmp_path, "latched", episode)
    play = subprocess.Popen(
        ["ros2", "bag", "play", str(path), "--rate", "0.05"], env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    late = CycloneHost("late_joiner")
    try:
        time.sleep(4.0)  # the instruction, at the bag's start, is out; nobody was listening
        assert play.poll() is None, play.stdout.read()
        heard = []
        late.subscribe(INSTRUCTION_TOPIC, STRING_TYPE, lambda m: heard.append(m.data), QoS.LATCHED)
        threading.Thread(target=late.spin, daemon=True).start()
        deadline = time.monotonic() + 10
        while not heard and time.monotonic() < deadline:
            time.sleep(0.05)
        assert heard == [episode.meta.instruction]
    finally:
        late.request_shutdown()
        os.killpg(play.pid, signal.SIGINT)
        play.wait(timeout=20)
        late.close()


REPLAYED_STEPS = 30
SYNC_POLICY = {"policy_factory": STANDIN_FACTORY, "async_inference": False, "status_period_s": 0.1}
"""The stand-in (deterministic: a function of the frame and the state) asked synchronously: each
chunk comes from the frame of the tick that asked, a new one every replan_every ticks."""


REPLAY = ("--delay", "1", "--rate", "0.25", "--topics", IMAGE_TOPIC, STATE_TOPIC, INSTRUCTION_TOPIC)
"""`ros2 bag play` arguments, docs/NODES.md's: the policy node's inputs; --delay: the player's
writers meet the node's readers before the first frame (best effort) goes out; --rate: a frame
that comes before the node acted on the last one is skipped (frames_skipped), and at 30 Hz the
niced player and node on 2 shared cores stalled long enough (1-3 of 30 frames, in about one run
of ten); 133 ms between frames stays well within image_timeout_s."""


def _actions_after(spy, n: int) -> list[np.ndarray]:
    return [np.asarray(m.data, np.float32) for _, m in spy.received[ACTION_TOPIC][n:]]


def _record_a_policy_episode(spy, nodes, model: Path, rec: Path) -> tuple[Path, list]:
    """The policy node (Cyclone DDS host) drives a robot played by this test (a state, then the
    frame of that state, at 30 Hz; the next step once the action is in) while the recorder
    records; the episode and the actions the policy published."""
    policy = nodes.start("vla_rft_nodes.policy_node",
                         *(a for k, v in SYNC_POLICY.items() for a in ("--set", f"{k}={v}")),
                         "--set", f"model_path={model}")  # fmt: skip
    nodes.start("vla_rft_nodes.recorder_node", "--set", f"out_dir={rec}",
                "--set", "status_period_s=0.1")  # fmt: skip
    spy.wait_active("policy_node", [t for t in POLICY_INPUTS if t != LIFECYCLE], timeout=60)
    spy.wait_active("recorder_node", RECORDER_INPUTS, timeout=60)
    c, rng = spy.host.codec, np.random.default_rng(7)
    instruction = "push the puck to the target"
    operator = CycloneHost("operator")  # closed after the episode: its latched instruction goes
    operator.publisher(INSTRUCTION_TOPIC, STRING_TYPE, QoS.LATCHED).publish(
        c.string_to_msg(instruction)
    )
    start = events.StartEvent(episode="replayed", instruction=instruction, fps=30.0)
    spy.publish(EPISODE_EVENT_TOPIC, c.string_to_msg(events.to_json(start)))
    time.sleep(0.5)  # the start (reliable) reaches both before the first frame
    # past its e-stop wait, with the instruction: frame 0 is acted on at once, as every other
    spy.wait_for(lambda: spy.statuses["policy_node"]["holding"] == "no_image", what="readiness")
    first = len(spy.received[ACTION_TOPIC])
    for t in range(REPLAYED_STEPS):
        due = time.monotonic() + 1 / 30
        spy.publish(STATE_TOPIC, c.floats_to_msg(rng.normal(size=4).astype(np.float32)))
        image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        spy.publish(IMAGE_TOPIC, c.image_to_msg(image, time.time_ns()))
        spy.wait_for(lambda n=first + t + 1: len(spy.received[ACTION_TOPIC]) >= n, 10, f"act {t}")
        time.sleep(max(0.0, due - time.monotonic()))
    live = _actions_after(spy, first)
    operator.close()
    spy.publish(EPISODE_EVENT_TOPIC, c.string_to_msg(events.to_json(events.EndEvent())))
    spy.wait_for(lambda: list_episodes(rec), what="the episode written")
    spy.wait_for(lambda: spy.statuses["policy_node"]["counters"]["actions"] >= REPLAYED_STEPS)
    assert spy.statuses["policy_node"]["counters"]["actions"] == REPLAYED_STEPS
    policy.send_signal(signal.SIGINT)
    policy.wait(timeout=20)
    return list_episodes(rec)[0], live


def test_replaying_an_episode_into_a_policy_node_reproduces_its_actions(spy, nodes, tmp_path):
    """`ros2 bag play` of a recorded episode's camera, state and instruction into a fresh policy
    node under rclpy: it publishes the actions the episode recorded, one per recorded frame and
    bit for bit (the same float32 inputs through the same ONNX Runtime graph, chunks starting
    at the same frames). It fails if a frame is paired with another step's state, or if the
    first frame is not acted on (every chunk would start a frame late)."""
    env = ros2_env()
    if "bag" not in _ros2(env, "--help"):
        pytest.skip("this ROS 2 has no rosbag2 (scripts/install_ros2.sh builds it)")
    model = build_standin_onnx(tmp_path / "standin.onnx")
    path, live = _record_a_policy_episode(spy, nodes, model, tmp_path / "rec")
    episode = read_episode(path)
    assert len(episode) == REPLAYED_STEPS
    np.testing.assert_array_equal(episode.actions, np.stack(live))

    spy.statuses.pop("policy_node")
    params = [f"{k}:={v}" for k, v in {**SYNC_POLICY, "model_path": model}.items()]
    node = subprocess.Popen(
        [sys.executable, "-m", "vla_rft_nodes.policy_node", "--ros-args",
         *(a for p in params for a in ("-p", p))],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        spy.wait_active("policy_node", [t for t in POLICY_INPUTS if t != LIFECYCLE], timeout=60)
        # past its e-stop wait (the bag has no e-stop), so it acts from the first frame on
        spy.wait_for(lambda: spy.statuses["policy_node"]["holding"] == "no_instruction",
                     what="the end of the e-stop wait")  # fmt: skip
        first = len(spy.received[ACTION_TOPIC])
        _ros2(env, "bag", "play", str(path), *REPLAY)
        time.sleep(1.0)  # the last actions, and a status that counts them
        status = spy.statuses["policy_node"]
    finally:
        out = _ctrl_c(node)
    assert status["instruction"] == episode.meta.instruction  # from the bag
    assert status["counters"].get("actions") == REPLAYED_STEPS, (status["counters"], out[-3000:])
    replayed = _actions_after(spy, first)[:REPLAYED_STEPS]
    np.testing.assert_array_equal(np.stack(replayed), episode.actions)


# --- the interfaces a ROS 2 arm speaks ---------------------------------------------------------

ARM_JOINTS = ("shoulder", "elbow", "wrist", "finger")
ARM_COMMANDS = {
    "twist_stamped": {"command_axes": ["linear.x", "linear.y", "linear.z", ""],
                      "command_scale": [0.1, 0.1, 0.1, 0.0]},
    "float64_array": {"command_scale": [2.0, 2.0, 2.0, 1.0]},
    "joint_trajectory": {"command_joint_names": list(ARM_JOINTS), "command_time_s": 0.2},
}  # fmt: skip


def _command_vector(msg) -> np.ndarray:
    """The numbers a command message carries (twist: linear then angular)."""
    if hasattr(msg, "twist"):
        t = msg.twist
        return np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z])
    if hasattr(msg, "points"):
        return np.asarray(msg.points[0].positions, np.float64)
    return np.asarray(msg.data, np.float64)


class _Arm:
    """A joint-space arm on the Cyclone DDS host: publishes sensor_msgs/JointState at 30 Hz
    (joints in reverse order) and moves on every command it receives on /vla_rft/command."""

    def __init__(self, command: str):
        self.host = CycloneHost("arm")
        self.positions = np.zeros(len(ARM_JOINTS))
        self.commands: list = []
        self._state = self.host.publisher(STATE_TOPIC, JOINT_STATE_TYPE, QoS.SENSOR_DATA)
        self.host.subscribe(COMMAND_TOPIC, COMMAND_MSGS[command], self._on_command, QoS.RELIABLE)
        self.host.timer(1 / 30, self._publish_state)
        self._thread = threading.Thread(target=self.host.spin, daemon=True)
        self._thread.start()

    def _on_command(self, msg) -> None:
        self.commands.append(msg)
        self.positions = self.positions + 0.01

    def _publish_state(self) -> None:
        msg = self.host.codec.joint_state_to_msg(ARM_JOINTS[::-1], self.positions[::-1], 1)
        self._state.publish(msg)

    def close(self) -> None:
        self.host.request_shutdown()
        self._thread.join(timeout=5)
        self.host.close()


@pytest.mark.parametrize("command", sorted(ARM_COMMANDS))
def test_an_arm_speaking_joint_state_and_a_ros2_command_type_closes_the_loop(
    command, spy, installed, tmp_path
):
    """The policy node under rclpy reads sensor_msgs/JointState and sends `command` beside the
    raw action: every command carries what the adapter makes of an action the node sent, and
    the arm, moved by them, feeds new joint states back."""
    env = ros2_env(installed)
    params = {
        "policy_factory": STANDIN_FACTORY,
        "model_path": str(build_standin_onnx(tmp_path / "standin.onnx")),
        "trigger": "timer", "status_period_s": 0.1,
        "state_msg": "joint_state", "state_joint_names": list(ARM_JOINTS),
        "command_msg": command, **ARM_COMMANDS[command],
    }  # fmt: skip
    cli = [a for k, v in params.items() for a in ("-p", f"{k}:={json.dumps(v)}")]
    node = subprocess.Popen(
        ["ros2", "run", "vla_rft", "policy_node", "--ros-args", *cli],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    arm, feeder = _Arm(command), None
    try:
        spy.wait_for(lambda: spy.statuses.get("policy_node", {}).get("state") == "active", 60)
        spy.publish(INSTRUCTION_TOPIC, spy.host.codec.string_to_msg("reach the red goal"))
        feeder = Feeder(spy, send_state=False)
        spy.wait_for(lambda: len(arm.commands) >= 30, what=f"{command} commands")
        config = PolicyNodeConfig(**{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in params.items()})  # fmt: skip
        sent = [np.asarray(m.data, np.float32) for _, m in list(spy.received[ACTION_TOPIC])]
        expected = [_command_vector(command_msg(arm.host.codec, config, a, 0)) for a in sent]
        for msg in arm.commands[5:30]:
            got = _command_vector(msg)
            assert any(np.allclose(got, e, atol=1e-6) for e in expected), got
        assert any(np.abs(_command_vector(m)).max() > 0 for m in arm.commands), "only holds"
        if command == "joint_trajectory":
            assert list(arm.commands[-1].joint_names) == list(ARM_JOINTS)
        counters = spy.statuses["policy_node"]["counters"]
        assert not [k for k in counters if k.startswith("rejected.")], counters
    finally:
        if feeder is not None:
            feeder.stop()
        arm.close()
        out = _ctrl_c(node)
    assert node.returncode == 0, out[-4000:]


# --- docs/OPERATOR_GUIDE.md part 3 ----------------------------------------------------------------


@pytest.fixture
def ros2_site(debug_loop, tmp_path) -> Path:
    """A checkout as the guide's reader has it: the package, ros2_ws/, .venv and models/ (the
    debug quickstart's registry)."""
    dirs, _, rc = debug_loop
    assert rc == 0
    site = tmp_path / "site"
    copy_package(tmp_path / "pkg")
    shutil.copytree(tmp_path / "pkg" / "src" / "vla_rft", site)
    (site / "ros2_ws" / "src").mkdir(parents=True)
    shutil.copy2(REPO / "ros2_ws" / "build.sh", site / "ros2_ws" / "build.sh")
    (site / "ros2_ws" / "src" / "vla_rft").symlink_to("../..")
    (site / ".venv").symlink_to(Path(sys.executable).parents[1])
    shutil.copytree(dirs["models"], site / "models", symlinks=True)
    assert {p.name for p in site.iterdir()} >= set(PACKAGE_FILES)
    return site


def _policy(spy) -> dict:
    return spy.statuses["policy_node"]


def test_the_operator_guides_ros2_commands_run_as_written(ros2_site, spy, dds, tmp_path):
    """Part 3 of docs/OPERATOR_GUIDE.md, command by command, from an unsourced shell: build,
    launch for a real robot (this test plays its camera and joint driver), status, an episode
    recorded and labelled, the e-stop pressed, released and the policy node reactivated."""
    robot_yaml = tmp_path / "robot.yaml"
    robot_yaml.write_text(yaml.safe_dump({"policy_node": {"ros__parameters": {
        "status_period_s": 0.2}}}))  # fmt: skip
    values = {"/path/to/robot.yaml": str(robot_yaml)}
    env = {**dds, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}  # fmt: skip
    env.pop("VLA_RFT_HOST")
    shift, robot = Shift(ros2_site, env), None
    recorded = ros2_site / "data" / "recorded"
    try:
        for command in part_commands("Part 3"):
            text = command.filled(values)
            if len(shift.background) > 1:  # the e-stop publisher: released with Ctrl-C first
                shift.ctrl_c(exit_status=ROS2CLI_CTRL_C)
            if command.keeps_running:
                pressed = time.monotonic()
                shift.start(text)
                if "ros2 launch" in text:
                    robot = Feeder(spy, size=64)
                    spy.wait_for(lambda: {"policy_node", "recorder_node"} <= {
                        n for n, s in spy.statuses.items() if s.get("state") == "active"
                    }, 120, "the launched graph active")  # fmt: skip
                else:
                    spy.wait_for(lambda: _policy(spy)["estop"], 20, "the e-stop")
                    time.sleep(0.5)
                    assert motion_since(spy, pressed) == 0
                continue
            out = shift.run(text)
            if "ros2 topic echo" in text:
                (data,) = [line for line in out.splitlines() if line.startswith("data: ")]
                assert json.loads(yaml.safe_load(data)["data"])["node"], out
            elif "/vla_rft/instruction" in text:
                said = "move the gripper to the target"
                spy.wait_for(lambda s=said: _policy(spy)["instruction"] == s, 10, "the instruction")
            elif '\\"start\\"' in text:
                started = time.monotonic()
                time.sleep(2.0)  # the robot works
                assert motion_since(spy, started) >= 10
            elif '\\"end\\"' in text:
                spy.wait_for(lambda: list_episodes(recorded), 10, "the recorded episode")
                meta = read_episode_meta(list_episodes(recorded)[0])
                assert (meta.task, meta.success, meta.extra["ended_by"]) == (
                    "reach-v3", True, "operator")  # fmt: skip
            elif "ros2 lifecycle set" in text:
                back = {"state": "active", "estop": False}
                spy.wait_for(lambda b=back: b.items() <= _policy(spy).items(), 10, "reactivated")
        out = shift.ctrl_c()  # Ctrl-C in terminal 1
        assert "Traceback" not in out, out[-4000:]
    finally:
        shift.close()
        if robot is not None:
            robot.stop()
        subprocess.run(shift._bash("ros2 daemon stop"), cwd=ros2_site, env=env,
                       capture_output=True, timeout=60)  # fmt: skip


def test_ros2_tools_read_the_type_hash_of_the_cyclone_hosts_endpoints(spy):
    """`vla-rft bringup`'s nodes (the Cyclone DDS host) seen by ROS 2's own tools: each
    endpoint carries its type's hash as rmw_cyclonedds_cpp does (USER_DATA `typehash=...;`),
    else every `ros2` command printed 'Failed to parse type hash' for each of them."""
    env = ros2_env()
    done = subprocess.run(
        ["ros2", "topic", "info", "--verbose", "--no-daemon", STATUS_TOPIC], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Failed to parse type hash" not in done.stdout, done.stdout[-3000:]
    hashes = re.findall(r"Topic type hash: (\S+)", done.stdout)
    assert hashes and set(hashes) == {TYPE_HASHES[STRING_TYPE]}, done.stdout[-3000:]
    prefix = Path(env["AMENT_PREFIX_PATH"].split(":")[-1])
    for name, digest in TYPE_HASHES.items():  # each as the installed ROS 2 describes it
        package, _, msg = name.split("/")
        described = json.loads((prefix / "share" / package / "msg" / f"{msg}.json").read_text())
        assert {"type_name": name, "hash_string": digest} in described["type_hashes"], name
