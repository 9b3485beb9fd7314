"""The node graph as tests see it: a spy on every topic, node processes, a camera feeder.

Used by the tests that run nodes as processes over Cyclone DDS on loopback (the `dds`, `spy` and
`nodes` fixtures in conftest.py give each test its own random domain).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict

import numpy as np

from vla_rft.contract.constants import (
    ACTION_TOPIC,
    EPISODE_EVENT_TOPIC,
    ESTOP_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    STATE_TOPIC,
    STATUS_TOPIC,
)
from vla_rft.contract.qos import QoS
from vla_rft_nodes import events
from vla_rft_nodes.host.cyclonedds_host import CycloneHost, lifecycle_topic

STANDIN_FACTORY = "vla_rft_nodes.standin_policy:load_standin_policy"
TYPES = {
    IMAGE_TOPIC: "sensor_msgs/msg/Image",
    STATE_TOPIC: "std_msgs/msg/Float32MultiArray",
    ACTION_TOPIC: "std_msgs/msg/Float32MultiArray",
    INSTRUCTION_TOPIC: "std_msgs/msg/String",
    EPISODE_EVENT_TOPIC: "std_msgs/msg/String",
    STATUS_TOPIC: "std_msgs/msg/String",
    ESTOP_TOPIC: "std_msgs/msg/Bool",
}
QOS = {
    IMAGE_TOPIC: QoS.SENSOR_DATA,
    STATE_TOPIC: QoS.SENSOR_DATA,
    INSTRUCTION_TOPIC: QoS.LATCHED,
    STATUS_TOPIC: QoS.LATCHED,
}
LIFECYCLE = lifecycle_topic("policy_node")


class Spy:
    """This test on the graph: subscribes to every topic and has a writer on each."""

    def __init__(self):
        self.host = CycloneHost("spy")
        self.received = defaultdict(list)  # topic -> [(arrival time, message)]
        self.statuses: dict[str, dict] = {}
        for topic, msgtype in TYPES.items():
            qos = QOS.get(topic, QoS.RELIABLE)
            self.host.subscribe(topic, msgtype, self._keep(topic), qos)
        self.pubs = {
            topic: self.host.publisher(topic, t, QOS.get(topic, QoS.RELIABLE))
            for topic, t in TYPES.items()
        }
        self.pubs[LIFECYCLE] = self.host.publisher(LIFECYCLE, "std_msgs/msg/String", QoS.RELIABLE)
        self._thread = threading.Thread(target=self.host.spin, daemon=True)
        self._thread.start()

    def _keep(self, topic):
        def keep(msg):
            self.received[topic].append((time.monotonic(), msg))
            if topic == STATUS_TOPIC:
                status = json.loads(msg.data)
                self.statuses[status["node"]] = status

        return keep

    def publish(self, topic, msg):
        self.pubs[topic].publish(msg)

    def wait_for(self, predicate, timeout=30.0, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; statuses: {self.statuses}")

    def wait_active(self, node, topics, timeout=30.0):
        """Until `node` reports active and our writers on `topics` reach its readers."""
        self.wait_for(lambda: self.statuses.get(node, {}).get("state") == "active", timeout, node)
        for topic in topics:  # + 1: our own reader on the topic (none on the lifecycle topic)
            readers = 1 if topic == LIFECYCLE else 2
            self.wait_for(
                lambda t=topic, n=readers: self.pubs[t].subscriber_count() >= n, 10, topic
            )

    def close(self):
        self.host.request_shutdown()
        self._thread.join(timeout=5)
        self.host.close()


class Nodes:
    """Node processes, stopped (and killed if they hang) at the end of the test."""

    def __init__(self, env, cwd):
        self.env, self.cwd, self.procs = env, cwd, []

    def start(self, module, *args):
        cmd = [sys.executable, "-m", module, *args]
        proc = subprocess.Popen(
            cmd, env=self.env, cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def output(proc) -> str:
    return proc.stdout.read() if proc.stdout else ""


def send_steps(spy, n, start_stamp, rng):
    c = spy.host.codec
    sent = []
    for t in range(n):
        image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        state = rng.normal(size=4).astype(np.float32)
        action = rng.uniform(-1, 1, 4).astype(np.float32)
        spy.publish(IMAGE_TOPIC, c.image_to_msg(image, start_stamp + t * 33_333_333))
        spy.publish(STATE_TOPIC, c.floats_to_msg(state))
        time.sleep(0.01)  # sensor data is best effort: let it land before the action
        spy.publish(ACTION_TOPIC, c.floats_to_msg(action))
        sent.append((image, action))
    return sent


RECORDER_INPUTS = (IMAGE_TOPIC, STATE_TOPIC, ACTION_TOPIC, EPISODE_EVENT_TOPIC)
POLICY_INPUTS = (IMAGE_TOPIC, STATE_TOPIC, INSTRUCTION_TOPIC, ESTOP_TOPIC, LIFECYCLE)


def start_episode(spy, name):
    start = events.StartEvent(episode=name, task="push-v3", instruction="push the puck", seed=3)
    spy.publish(EPISODE_EVENT_TOPIC, spy.host.codec.string_to_msg(events.to_json(start)))


class Feeder:
    """Camera and state at ~30 Hz from a thread, as a robot would send them."""

    def __init__(self, spy, size=8, send_state=True):
        self.spy, self.size, self._stop = spy, size, threading.Event()
        self.send_state = send_state
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        c = self.spy.host.codec
        while not self._stop.is_set():
            image = np.full((self.size, self.size, 3), 90, np.uint8)
            self.spy.publish(IMAGE_TOPIC, c.image_to_msg(image, time.time_ns()))
            if self.send_state:
                state = np.array([0.1, 0.6, 0.2, 1.0], np.float32)
                self.spy.publish(STATE_TOPIC, c.floats_to_msg(state))
            time.sleep(0.033)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)


def motion(msg) -> bool:
    return bool(np.any(np.asarray(msg.data)[:3] != 0))  # the gripper (last) keeps its command


def motion_since(spy, t0: float) -> int:
    """Motion commands the spy received after monotonic time `t0`."""
    return sum(motion(m) for t, m in list(spy.received[ACTION_TOPIC]) if t > t0)


def run_op(env, *args: str) -> subprocess.CompletedProcess:
    """`vla-rft op ARGS` in a child process on `env`'s domain; its result (output captured)."""
    return subprocess.run([sys.executable, "-m", "vla_rft.cli", "op", *args], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def standin_args(model):
    return (
        "--set", f"policy_factory={STANDIN_FACTORY}",
        "--set", f"model_path={model}", "--set", "status_period_s=0.1", "--set", "trigger=timer",
    )  # fmt: skip


def garbled(msg, text: str):
    """`msg` with the UTF-8 of `text` in its CDR replaced by bytes that are not UTF-8 (what a
    foreign or broken writer can put on the wire; this serializer would refuse to)."""
    raw = msg.serialize()
    patched = raw.replace(text.encode(), b"\xff" * len(text.encode()))
    assert patched != raw
    msg.serialize = lambda **_: patched
    return msg
