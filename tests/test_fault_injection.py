"""Fault injection over DDS: the malformed-input corpus, an e-stop, and a recorder SIGKILLed at
random points, against the nodes as processes on loopback (docs/NODES.md, "What each fault gets").

Each bad input must be counted under the counter the table names, the node must stay alive, no
motion command may come from a bad frame or after the e-stop, and every step the recorder had
received before a kill must be in the recovered episode.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from graph_testing import (
    POLICY_INPUTS,
    RECORDER_INPUTS,
    Feeder,
    garbled,
    motion,
    output,
    send_steps,
    standin_args,
    start_episode,
)

from vla_rft.contract.constants import (
    ACTION_TOPIC,
    EPISODE_EVENT_TOPIC,
    ESTOP_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    STATE_TOPIC,
)
from vla_rft.contract.qos import QoS
from vla_rft.data.episode_store import list_episodes, read_episode
from vla_rft_nodes.dds_types import Image_
from vla_rft_nodes.standin_policy import build_standin_onnx

pytestmark = pytest.mark.slow

BAD_IMAGES = [
    Image_(height=8, width=8, encoding="yuv422", step=16, data=bytes(128)),  # unknown encoding
    Image_(height=8, width=8, encoding="rgb8", step=24, data=bytes(100)),  # data too short
    Image_(height=8, width=8, encoding="rgb8", step=20, data=bytes(192)),  # step != width * 3
]


def _send_corpus(spy, send_bad_actions=False):
    """Every kind of malformed input once (or as listed); returns {counter: times sent}."""
    c = spy.host.codec
    sent = {}

    def send(topic, msg, counter):
        spy.publish(topic, msg)
        sent[counter] = sent.get(counter, 0) + 1
        time.sleep(0.02)  # best-effort topics: one at a time, so none is overwritten unread

    for image in BAD_IMAGES:
        send(IMAGE_TOPIC, image, "rejected.image")
    send(STATE_TOPIC, c.floats_to_msg(np.array([0, np.nan, 0, 0], np.float32)), "rejected.state")
    send(STATE_TOPIC, c.floats_to_msg(np.zeros(7, np.float32)), "rejected.state")
    send(INSTRUCTION_TOPIC, c.string_to_msg("   "), "rejected.instruction")
    send(INSTRUCTION_TOPIC, c.string_to_msg("push" * 25_000), "rejected.instruction")
    send(INSTRUCTION_TOPIC, garbled(c.string_to_msg("push it"), "push it"),
         f"undecodable.{INSTRUCTION_TOPIC}")  # fmt: skip
    send(EPISODE_EVENT_TOPIC, c.string_to_msg('{"event": "jump"}'), "rejected.episode_event")
    send(EPISODE_EVENT_TOPIC, garbled(c.string_to_msg('{"event": "end"}'), "end"),
         f"undecodable.{EPISODE_EVENT_TOPIC}")  # fmt: skip
    if send_bad_actions:
        send(ACTION_TOPIC, c.floats_to_msg(np.array([np.inf, 0, 0, 0], np.float32)),
             "rejected.action")  # fmt: skip
        send(ACTION_TOPIC, garbled(c.floats_to_msg(np.zeros(4), ("dx",)), "dx"),
             f"undecodable.{ACTION_TOPIC}")  # fmt: skip
    return sent


def _counted(spy, node, expected):
    def done():
        counters = spy.statuses.get(node, {}).get("counters", {})
        return all(counters.get(k, 0) == n for k, n in expected.items())

    spy.wait_for(done, timeout=10, what=f"{node} to count {expected}")


def test_policy_node_counts_every_bad_input_and_never_moves_on_one(spy, nodes, tmp_path):
    proc = nodes.start("vla_rft_nodes.policy_node",
                       *standin_args(build_standin_onnx(tmp_path / "good.onnx")))  # fmt: skip
    spy.wait_active("policy_node", POLICY_INPUTS)
    c = spy.host.codec
    spy.publish(ESTOP_TOPIC, c.bool_to_msg(False))
    spy.publish(INSTRUCTION_TOPIC, c.string_to_msg("move the gripper to the target"))
    # only bad frames (with good states): nothing to act on
    for _ in range(5):
        spy.publish(STATE_TOPIC, c.floats_to_msg(np.array([0.1, 0.6, 0.2, 1.0], np.float32)))
        for image in BAD_IMAGES:
            spy.publish(IMAGE_TOPIC, image)
            time.sleep(0.02)
    time.sleep(0.3)
    assert not any(motion(m) for _, m in spy.received[ACTION_TOPIC])
    expected = {"rejected.image": 15}
    _counted(spy, "policy_node", expected)

    for counter, n in _send_corpus(spy).items():
        expected[counter] = expected.get(counter, 0) + n
    _counted(spy, "policy_node", expected)
    assert spy.statuses["policy_node"]["instruction"] == "move the gripper to the target"

    # good frames: it acts; then an e-stop from a latched writer: holds from then on
    estop = spy.host.publisher(ESTOP_TOPIC, "std_msgs/msg/Bool", QoS.LATCHED)
    spy.wait_for(lambda: estop.subscriber_count() >= 3, what="the e-stop writer matched")
    feeder = Feeder(spy)
    try:
        spy.wait_for(lambda: any(motion(m) for _, m in spy.received[ACTION_TOPIC]), what="acting")
        pressed = time.monotonic()
        estop.publish(c.bool_to_msg(True))
        spy.wait_for(lambda: spy.statuses["policy_node"]["estop"], what="e-stop")
        time.sleep(0.5)
    finally:
        feeder.stop()
    after = [motion(m) for t, m in spy.received[ACTION_TOPIC] if t > pressed]
    first_hold = after.index(False)
    assert not any(after[first_hold:]), "a motion command after the e-stop's hold"
    assert first_hold <= 1, "more than the action in flight went out after the e-stop"
    assert proc.poll() is None, output(proc)


def _recorder(nodes, rec):
    return nodes.start("vla_rft_nodes.recorder_node",
                       "--set", f"out_dir={rec}", "--set", "status_period_s=0.05")  # fmt: skip


def test_recorder_counts_bad_input_and_a_sigkill_anywhere_loses_no_received_step(
    spy, nodes, tmp_path
):
    """The corpus, then 10 recorders each SIGKILLed at a random moment of an episode (before its
    first step, while its file opens, between or during steps): each next recorder recovers the
    last one's episode, and every step a recorder had reported is in it, as sent."""
    rec, rng = tmp_path / "rec", np.random.default_rng(7)
    proc = _recorder(nodes, rec)
    spy.wait_active("recorder_node", (*RECORDER_INPUTS, INSTRUCTION_TOPIC))
    start_episode(spy, "corpus")
    send_steps(spy, 2, 10**18, rng)
    expected = _send_corpus(spy, send_bad_actions=True)
    expected["steps"] = 2
    _counted(spy, "recorder_node", expected)
    assert proc.poll() is None, output(proc)

    rounds = []
    for r in range(10):
        if r:
            spy.statuses.pop("recorder_node", None)
            proc = _recorder(nodes, rec)
            spy.wait_active("recorder_node", RECORDER_INPUTS)
        start_episode(spy, f"kill{r}")
        kill_after = rng.uniform(0.0, 0.6)
        killer = threading.Timer(kill_after, proc.send_signal, (signal.SIGKILL,))
        sent, reported = [], 0
        killer.start()
        while proc.poll() is None and len(sent) < 60:
            reported = spy.statuses.get("recorder_node", {}).get("episode_steps", reported)
            sent += send_steps(spy, 1, 10**18 + (r + 1) * 10**15 + len(sent) * 33_333_333, rng)
        proc.wait(timeout=10)
        killer.cancel()
        rounds.append((f"kill{r}", sent, reported, kill_after))

    done = subprocess.run([sys.executable, "-m", "vla_rft.cli", "episodes", "recover", str(rec)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    recorded = {p.name: p for p in list_episodes(rec)}
    for name, sent, reported, kill_after in rounds:
        steps = len(read_episode(recorded[name])) if name in recorded else 0
        where = f"{name} (killed after {kill_after:.3f} s, {len(sent)} sent)"
        assert reported <= steps <= len(sent), f"{where}: {steps} recovered, {reported} reported"
        if steps:
            episode = read_episode(recorded[name])
            np.testing.assert_array_equal(episode.actions, np.stack([a for _, a in sent[:steps]]))
            np.testing.assert_array_equal(episode.images, np.stack([i for i, _ in sent[:steps]]))
    assert any(reported for _, _, reported, _ in rounds), "no kill came after a step"
    check = subprocess.run([sys.executable, "-m", "vla_rft.cli", "episodes", "check", str(rec)],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_node_stopped_with_ctrl_c_in_a_terminal_exits_0_whatever_more_sigint_it_gets(
    spy, nodes, tmp_path
):
    """Ctrl-C in a terminal signals the whole process group, and `ros2 launch` then signals
    each node again: a SIGINT that arrived while Python was exiting killed the node (-2), and
    `ros2 launch` reported `process has died` and exited 1 for an orderly stop."""
    proc = nodes.start("vla_rft_nodes.recorder_node", "--set", f"out_dir={tmp_path / 'rec'}")
    spy.wait_active("recorder_node", RECORDER_INPUTS)
    proc.send_signal(signal.SIGINT)
    while proc.poll() is None:  # more SIGINTs, over the whole way out
        proc.send_signal(signal.SIGINT)
        time.sleep(0.002)
    assert proc.returncode == 0, output(proc)[-3000:]
