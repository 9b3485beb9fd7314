"""The nodes as separate processes over Cyclone DDS on loopback, with this test as a spy.

Every test gets its own random DDS domain; discovery and data stay on 127.0.0.1. Processes are
always stopped, killed if need be.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from graph_testing import (
    POLICY_INPUTS,
    RECORDER_INPUTS,
    TYPES,
    Feeder,
    garbled,
    motion,
    output,
    send_steps,
    standin_args,
    start_episode,
)
from rosbags.highlevel import AnyReader

from vla_rft.contract.constants import (
    ACTION_TOPIC,
    EPISODE_EVENT_TOPIC,
    ESTOP_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    PARTIAL_PREFIX,
    STATE_TOPIC,
)
from vla_rft.contract.qos import QoS
from vla_rft.data.episode_store import list_episodes, read_episode
from vla_rft_nodes.dds_types import Image_
from vla_rft_nodes.host.cyclonedds_host import CycloneHost, lifecycle_topic
from vla_rft_nodes.policy_node import IDLE_REASONS
from vla_rft_nodes.standin_policy import build_standin_onnx

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


# --- closed loop ---------------------------------------------------------------------------------


def _read_bag(path):
    """(images uint8 [T, H, W, 3], image stamps [T], actions [T, A]) with rosbags' own reader."""
    images, stamps, actions = [], [], []
    with AnyReader([path]) as reader:
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == IMAGE_TOPIC:
                images.append(msg.data.reshape(msg.height, msg.width, 3))
                stamps.append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
            elif conn.topic == ACTION_TOPIC:
                actions.append(np.asarray(msg.data, np.float32))
    return np.stack(images), np.array(stamps), np.stack(actions)


def test_closed_loop_episode_is_recorded_as_it_crossed_the_wire(spy, dds, tmp_path):
    """bringup --sim: simulated robot, policy (ONNX Runtime) and recorder as processes."""
    build_standin_onnx(tmp_path / "runs" / "standin" / "policy.onnx")
    cmd = [
        sys.executable, "-m", "vla_rft_nodes.bringup", "--sim", "--standin-policy",
        "--episodes", "1", "--record-dir", "rec", "--report-dir", "report", "--timeout", "60",
        "--params-file", str(REPO / "config" / "bringup.yaml"),
        "--set", "sim_robot_node.image_size=32", "--set", "eval_manager_node.max_steps=20",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=dds, cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]

    (path,) = list_episodes(tmp_path / "rec")
    episode = read_episode(path)
    assert episode.meta.task == "reach-v3" and episode.meta.extra["seed"] == 1000
    images, stamps, actions = _read_bag(path)
    assert len(images) == len(actions) == len(episode)

    # every recorded frame is a frame the camera sent, with the same stamp
    wire_images = {spy.host.codec.stamp_ns(m): m for _, m in spy.received[IMAGE_TOPIC]}
    for image, stamp in zip(images, stamps, strict=True):
        np.testing.assert_array_equal(image, spy.host.codec.image_from_msg(wire_images[stamp]))
    # the recorded actions are the actions sent between the episode's start and end, in order
    event_times = {json.loads(m.data)["event"]: t for t, m in spy.received[EPISODE_EVENT_TOPIC]}
    wire_actions = [
        np.asarray(m.data, np.float32)
        for t, m in spy.received[ACTION_TOPIC]
        if event_times["start"] < t < event_times["end"]
    ]
    np.testing.assert_array_equal(actions, np.stack(wire_actions))

    report = json.loads((tmp_path / "report" / "report.json").read_text())
    (result,) = report["episodes"]
    assert result["success"] is False and result["steps"] == 20  # the stand-in reaches nothing
    # one action per frame, so the robot executed exactly the recorded actions; unless the
    # watchdog held the robot (a machine too loaded to render in time), and the simulator,
    # stepping at its own rate, used only the newest of the holds sent meanwhile
    counters = spy.statuses["policy_node"]["counters"]
    faults = [k for k in counters if k.startswith("holds.") and k[6:] not in IDLE_REASONS]
    assert len(episode) == 20 if not faults else len(episode) >= 20, counters
    assert (tmp_path / "report" / "report.md").read_text().startswith("| task |")
    # which model ran, everywhere: the stand-in, with its file's hash; not a registry version
    model = report["policy"]
    assert model["standin"] is True and model["version"] is None and len(model["sha256"]) == 64
    assert episode.meta.source == "standin" and episode.meta.extra["model"] == model


# --- recorder: crash, recovery, SIGTERM ------------------------------------------------------


def test_recorder_killed_mid_episode_loses_nothing(spy, nodes, tmp_path):
    rec = tmp_path / "rec"
    args = ("--set", f"out_dir={rec}", "--set", "status_period_s=0.1")
    first = nodes.start("vla_rft_nodes.recorder_node", *args)
    spy.wait_active("recorder_node", RECORDER_INPUTS)
    c, rng = spy.host.codec, np.random.default_rng(0)
    start_episode(spy, "killed")
    time.sleep(0.1)
    sent = send_steps(spy, 3, 10**18, rng)
    # garbage in the middle: counted, reported, not recorded
    spy.publish(ACTION_TOPIC, c.floats_to_msg(np.array([0, np.nan, 0, 0], np.float32)))
    bad = Image_(height=16, width=16, encoding="yuv422", step=32, data=bytes(512))
    spy.publish(IMAGE_TOPIC, bad)
    sent += send_steps(spy, 3, 10**18 + 10**8, rng)
    status = lambda: spy.statuses.get("recorder_node", {})  # noqa: E731
    spy.wait_for(lambda: status().get("episode_steps") == 6, what="6 recorded steps")
    spy.wait_for(lambda: status()["counters"].get("rejected.image") == 1, what="bad image count")
    assert status()["counters"]["rejected.action"] == 1
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert (rec / f"{PARTIAL_PREFIX}killed").is_dir() and not list_episodes(rec)

    # the next recorder recovers it, and a SIGTERM mid-episode closes the new one properly
    spy.statuses.pop("recorder_node")
    second = nodes.start("vla_rft_nodes.recorder_node", *args)
    spy.wait_active("recorder_node", RECORDER_INPUTS)
    start_episode(spy, "terminated")
    time.sleep(0.1)
    sent_after = send_steps(spy, 2, 2 * 10**18, rng)
    spy.wait_for(lambda: status().get("episode_steps") == 2, what="2 recorded steps")
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=10) == 0, output(second)

    killed, terminated = (read_episode(rec / name) for name in ("killed", "terminated"))
    for episode, expected in ((killed, sent), (terminated, sent_after)):
        np.testing.assert_array_equal(episode.images, np.stack([i for i, _ in expected]))
        np.testing.assert_array_equal(episode.actions, np.stack([a for _, a in expected]))
        assert episode.meta.success is False
    assert killed.meta.extra["recovered"]["steps"] == 6
    assert "interrupted" in terminated.meta.extra


# --- policy node: bad input, NaN, e-stop, lifecycle ----------------------------------------


def test_policy_node_survives_bad_input_and_nan_and_obeys_estop(spy, nodes, tmp_path):
    model = build_standin_onnx(tmp_path / "nan.onnx", bias=float("nan"))
    proc = nodes.start(
        "vla_rft_nodes.policy_node",
        "--set", "policy_factory=vla_rft_nodes.standin_policy:load_standin_policy",
        "--set", f"model_path={model}", "--set", "status_period_s=0.1", "--set", "trigger=timer",
    )  # fmt: skip
    spy.wait_active("policy_node", POLICY_INPUTS)
    c = spy.host.codec
    counters = lambda: spy.statuses["policy_node"]["counters"]  # noqa: E731
    spy.publish(ESTOP_TOPIC, c.bool_to_msg(False))  # the e-stop's state: released
    spy.publish(INSTRUCTION_TOPIC, c.string_to_msg(""))
    spy.publish(IMAGE_TOPIC, Image_(height=8, width=8, encoding="16UC1", step=16, data=bytes(128)))
    spy.publish(IMAGE_TOPIC, Image_(height=8, width=8, encoding="rgb8", step=24, data=bytes(100)))
    spy.wait_for(
        lambda: counters().get("rejected.image") == 2 and counters().get("rejected.instruction"),
        what="rejected inputs in the status",
    )
    # valid input, a policy that answers NaN: the robot is held, nothing non-finite goes out
    spy.publish(INSTRUCTION_TOPIC, c.string_to_msg("move the gripper to the target"))
    for _ in range(10):
        spy.publish(IMAGE_TOPIC, c.image_to_msg(np.zeros((8, 8, 3), np.uint8), time.time_ns()))
        spy.publish(STATE_TOPIC, c.floats_to_msg(np.zeros(4, np.float32)))
        time.sleep(0.03)
    spy.wait_for(lambda: counters().get("unsafe_chunks.nonfinite", 0) >= 3, what="NaN counted")
    actions = [np.asarray(m.data) for _, m in spy.received[ACTION_TOPIC]]
    assert actions and all(np.all(a == 0) for a in actions)
    # e-stop latches; lifecycle deactivate + activate (with the button released) clears it
    spy.publish(ESTOP_TOPIC, c.bool_to_msg(True))
    spy.wait_for(lambda: spy.statuses["policy_node"]["estop"], what="e-stop")
    spy.publish(ESTOP_TOPIC, c.bool_to_msg(False))
    time.sleep(0.3)
    assert spy.statuses["policy_node"]["estop"] is True
    for command, state in (("deactivate", "inactive"), ("activate", "active")):
        spy.publish(lifecycle_topic("policy_node"), c.string_to_msg(command))
        spy.wait_for(lambda s=state: spy.statuses["policy_node"]["state"] == s, what=state)
    assert spy.statuses["policy_node"]["estop"] is False
    assert proc.poll() is None, output(proc)


# --- e-stop across a restart, fault injection ------------------------------------------------


def test_a_restarted_policy_node_keeps_holding_for_a_pressed_estop(spy, nodes, tmp_path):
    """The e-stop is pressed (a latched writer that stays up), the policy node is killed and
    started again: the new node must not send one motion command."""
    args = standin_args(build_standin_onnx(tmp_path / "good.onnx"))
    first = nodes.start("vla_rft_nodes.policy_node", *args)
    spy.wait_active("policy_node", POLICY_INPUTS)
    estop = spy.host.publisher(ESTOP_TOPIC, "std_msgs/msg/Bool", QoS.LATCHED)
    c = spy.host.codec
    spy.publish(INSTRUCTION_TOPIC, c.string_to_msg("move the gripper to the target"))
    feeder = Feeder(spy)
    try:
        spy.wait_for(lambda: any(motion(m) for _, m in spy.received[ACTION_TOPIC]), what="acting")
        estop.publish(c.bool_to_msg(True))
        spy.wait_for(lambda: spy.statuses["policy_node"]["estop"], what="e-stop")
        first.kill()
        first.wait(timeout=10)
        spy.statuses.pop("policy_node")
        restarted = time.monotonic()
        second = nodes.start("vla_rft_nodes.policy_node", *args)
        spy.wait_for(lambda: spy.statuses.get("policy_node", {}).get("state") == "active")
        time.sleep(2.0)
    finally:
        feeder.stop()
    after = [m for t, m in spy.received[ACTION_TOPIC] if t > restarted]
    assert not any(motion(m) for m in after), f"{sum(map(motion, after))} motion actions"
    status = spy.statuses["policy_node"]
    assert status["estop"] is True and status["holding"] == "estop", status
    assert second.poll() is None, output(second)


def test_one_undecodable_sample_loses_nothing_else(dds):
    """10 actions whose dimension label is not UTF-8 among 200 valid ones, all queued before
    the executor takes them: the 200 arrive, the 10 are counted."""
    host = CycloneHost("listener")
    received, bad = [], []
    host.subscribe(ACTION_TOPIC, TYPES[ACTION_TOPIC], received.append, QoS.RELIABLE, depth=300,
                   on_error=bad.append)  # fmt: skip
    writer_host = CycloneHost("writer")
    writer = writer_host.publisher(ACTION_TOPIC, TYPES[ACTION_TOPIC], QoS.RELIABLE)
    try:
        deadline = time.monotonic() + 10
        while writer.subscriber_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        c = writer_host.codec
        for i in range(210):
            if i % 21 == 20:
                writer.publish(garbled(c.floats_to_msg(np.zeros(4), ("label",)), "label"))
            else:
                writer.publish(c.floats_to_msg(np.full(4, i, np.float32)))
        time.sleep(0.5)
        while len(received) + len(bad) < 210 and time.monotonic() < deadline:
            host.spin_once(0.1)
    finally:
        writer_host.close()
        host.close()
    assert len(received) == 200 and len(bad) == 10
    assert [int(m.data[0]) for m in received] == [i for i in range(210) if i % 21 != 20]


# --- the evaluation manager's exit status ------------------------------------------------------


def test_an_evaluation_whose_episodes_ran_no_step_exits_non_zero(nodes, tmp_path):
    """No robot answers: the episode times out with 0 steps, which is a failed run (the launch
    and `vla-rft bringup` report the manager's status), not an honest 0% success rate."""
    manager = nodes.start(
        "vla_rft_nodes.eval_manager_node",
        "--set", "wait_for_nodes=[]", "--set", "episodes=1", "--set", "episode_timeout_s=1.0",
        "--set", "settle_s=0.0", "--set", "save_media=false", "--set", f"out_dir={tmp_path / 'r'}",
    )  # fmt: skip
    status = manager.wait(timeout=60)
    text = output(manager)
    assert status == 1 and "ran no step" in text, text
    assert json.loads((tmp_path / "r" / "report.json").read_text())["episodes"][0]["steps"] == 0


def test_subscriber_count_survives_readers_matching_while_it_counts(dds):
    """cyclonedds-python sizes its array of matched readers, then fills it: a reader matching in
    between raised IndexError('invalid index'), which failed a quickstart evaluation at start-up
    (the manager counts its listeners while the nodes discover each other)."""
    writer = CycloneHost("counter")
    pub = writer.publisher("/matching", "std_msgs/msg/String", QoS.RELIABLE)
    stop, errors, counts = threading.Event(), [], []

    def count():
        while not stop.is_set():
            try:
                counts.append(pub.subscriber_count())
            except Exception as err:
                errors.append(err)
                stop.set()

    counter = threading.Thread(target=count)
    counter.start()
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and not stop.is_set():
            readers = [CycloneHost(f"reader{i}") for i in range(4)]
            for host in readers:
                host.subscribe("/matching", "std_msgs/msg/String", lambda _: None, QoS.RELIABLE)
            time.sleep(0.01)
            for host in readers:
                host.close()
    finally:
        stop.set()
        counter.join()
        writer.close()
    assert not errors, errors[0]
    assert max(counts) >= 1
