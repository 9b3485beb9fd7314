"""The nodes' parts without processes: wire format, image decoding, safety, configs, events, and
the policy and recorder logic driven message by message through an in-memory host."""

from __future__ import annotations

import json
import logging
import time
import typing

import numpy as np
import pytest
from embodiment_testing import spec_file
from node_testing import MemoryHost, active_recorder

from vla_rft.contract.config import ConfigError
from vla_rft.contract.constants import (
    ACTION_TOPIC,
    EPISODE_EVENT_TOPIC,
    ESTOP_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    SIM_EMBODIMENT,
    STATE_TOPIC,
    STATUS_TOPIC,
)
from vla_rft.contract.embodiment import load_embodiment
from vla_rft.contract.policy import PolicySpec
from vla_rft.data import messages
from vla_rft.data.episode_store import list_episodes, read_episode
from vla_rft.data.messages import MessageError
from vla_rft_nodes import events
from vla_rft_nodes.configs import (
    NODE_CONFIGS,
    PolicyNodeConfig,
    RecorderNodeConfig,
    field_docs,
    load_node_config,
)
from vla_rft_nodes.dds_types import DDS_TYPES, Image_, dds_topic_name
from vla_rft_nodes.host.base import Codec, Lifecycle
from vla_rft_nodes.policy_node import PolicyNode
from vla_rft_nodes.safety import (
    ActionLimiter,
    EStopLatch,
    UnsafeChunk,
    Watchdog,
    check_chunk,
    hold_action,
)
from vla_rft_nodes.standin_policy import build_standin_onnx

STANDIN = "vla_rft_nodes.standin_policy:load_standin_policy"

# --- Wire format -------------------------------------------------------------------------------


class RosbagsCodec(Codec):
    """The same conversions onto rosbags' message classes (what rosbag2 writes)."""

    def __init__(self):
        super().__init__(messages.typestore().types)

    def _floats(self, values):
        return np.asarray(values, np.float32)

    def _doubles(self, values):
        return np.asarray(values, np.float64)


def test_dds_messages_are_byte_identical_to_ros2_cdr():
    dds, ros = Codec(DDS_TYPES), RosbagsCodec()
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    chunk = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    names = ("dx", "dy", "dz", "grip")
    cases = [
        (lambda c: c.image_to_msg(image, 1_795_000_000_123_456_789), "sensor_msgs/msg/Image"),
        (lambda c: c.floats_to_msg(chunk[1], names), "std_msgs/msg/Float32MultiArray"),
        (lambda c: c.string_to_msg("push the puck ✓"), "std_msgs/msg/String"),
        (lambda c: c.bool_to_msg(True), "std_msgs/msg/Bool"),
        (
            lambda c: c.trajectory_to_msg(chunk, names, 1 / 30, 5 * 10**9 + 7),
            "trajectory_msgs/msg/JointTrajectory",
        ),
        (lambda c: c.joint_state_to_msg(names, chunk[0], 9), "sensor_msgs/msg/JointState"),
        (
            lambda c: c.twist_to_msg(chunk[0][:3], chunk[1][:3], 3, "tool0"),
            "geometry_msgs/msg/TwistStamped",
        ),
        (lambda c: c.doubles_to_msg(chunk[2], names), "std_msgs/msg/Float64MultiArray"),
    ]
    for make, msgtype in cases:
        ours, theirs = make(dds).serialize(), messages.serialize(make(ros))
        assert ours == theirs, msgtype
        back = DDS_TYPES[msgtype].deserialize(theirs)  # and ROS 2 bytes decode on our side
        assert back.serialize() == theirs
    wire = Image_.deserialize(messages.serialize(ros.image_to_msg(image, 42)))
    np.testing.assert_array_equal(dds.image_from_msg(wire), image)
    assert dds.stamp_ns(wire) == 42


def test_dds_topic_names_follow_ros2():
    assert dds_topic_name("/camera/image_raw") == "rt/camera/image_raw"
    for bad in ("camera/image_raw", "/", "/a//b", "/a/"):
        with pytest.raises(ValueError, match="absolute"):
            dds_topic_name(bad)


@pytest.mark.parametrize("encoding", sorted(messages.ENCODING_CHANNELS))
def test_every_accepted_encoding_decodes_to_rgb(encoding):
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    if encoding == "mono8":
        pixels, expected = rgb[:, :, :1], np.repeat(rgb[:, :, :1], 3, axis=2)
    else:
        pixels = rgb[:, :, ::-1] if encoding.startswith("bgr") else rgb
        if encoding.endswith("a8"):
            pixels = np.concatenate([pixels, np.full((5, 7, 1), 9, np.uint8)], axis=2)
        expected = rgb
    padded = np.zeros((5, 7 * pixels.shape[2] + 3), np.uint8)  # rows with padding
    padded[:, : 7 * pixels.shape[2]] = pixels.reshape(5, -1)
    msg = Image_(height=5, width=7, encoding=encoding, step=padded.shape[1], data=padded.tobytes())
    np.testing.assert_array_equal(Codec(DDS_TYPES).image_from_msg(msg), expected)


def test_bad_images_are_refused_with_the_reason():
    codec = Codec(DDS_TYPES)
    cases = [  # (encoding, height, step, bytes) of a 2-pixel-wide image, and the reason
        ("yuv422", 2, 4, 8, "unsupported image encoding 'yuv422'"),
        ("rgb8", 2, 6, 11, "11 bytes but 2x2 rgb8"),
        ("rgb8", 2, 5, 10, "row step 5 is shorter"),
        ("rgb8", 0, 6, 0, "empty image"),
    ]
    for encoding, height, step, nbytes, reason in cases:
        msg = Image_(height=height, width=2, encoding=encoding, step=step, data=bytes(nbytes))
        with pytest.raises(MessageError, match=reason):
            codec.image_from_msg(msg)
    with pytest.raises(MessageError, match=r"\[H, W, 3\]"):
        codec.image_to_msg(np.zeros((4, 4), np.uint8), 0)


# --- Safety ------------------------------------------------------------------------------------


def test_action_limits_and_change_limit():
    limiter = ActionLimiter(low=(-1, -1), high=(1, 0.5), max_change=(0.25, 10))
    action, limited = limiter(np.array([3.0, 2.0]), previous=None)
    np.testing.assert_allclose(action, [1.0, 0.5])
    assert limited == 2
    action, limited = limiter(np.array([-1.0, -1.0]), previous=np.array([0.5, 0.5], np.float32))
    np.testing.assert_allclose(action, [0.25, -1.0])  # dim 0 moves at most 0.25 per tick
    assert limited == 1
    chunk = limiter.chunk(np.full((3, 2), -1.0, np.float32), previous=np.zeros(2, np.float32))
    np.testing.assert_allclose(chunk[:, 0], [-0.25, -0.5, -0.75])


def test_chunk_guard_hold_watchdog_and_latch():
    with pytest.raises(UnsafeChunk, match="non-finite") as err:
        check_chunk(np.array([[0.0, np.nan]]), action_dim=2)
    assert err.value.kind == "nonfinite"
    with pytest.raises(UnsafeChunk, match=r"expected \[K, 2\]"):
        check_chunk(np.zeros((2, 3)), action_dim=2)
    assert check_chunk(np.zeros(2), action_dim=2).shape == (1, 2)
    sawyer = load_embodiment(SIM_EMBODIMENT)  # end-effector deltas: no motion = zeros
    np.testing.assert_array_equal(
        hold_action(np.array([0.3, 0.2, 0.1, -1.0]), sawyer),
        [0, 0, 0, -1],  # gripper kept
    )
    np.testing.assert_array_equal(hold_action(None, sawyer), np.zeros(4))
    dog = Watchdog(0.5)
    assert dog.stale(0.0)
    dog.feed(10.0)
    assert not dog.stale(10.4) and dog.stale(10.6)
    latch = EStopLatch()
    assert latch.engage("first") and not latch.engage("second")
    assert latch.engaged and latch.reason == "first"
    latch.release()
    assert not latch.engaged


# --- Configs and events -------------------------------------------------------------------------


def test_configs_validate_and_every_field_is_documented():
    for cls in NODE_CONFIGS.values():
        cls()
        undocumented = [f for f in cls.__dataclass_fields__ if not field_docs(cls).get(f)]
        assert not undocumented, (cls.__name__, undocumented)
    with pytest.raises(ConfigError, match="unknown embodiment 'sawyer'"):
        PolicyNodeConfig(embodiment="sawyer")
    with pytest.raises(ConfigError, match="trigger must be one of"):
        PolicyNodeConfig(trigger="sometimes")
    with pytest.raises(ConfigError, match="control_rate_hz must be a positive"):
        PolicyNodeConfig(control_rate_hz=0.0)


def test_params_file_wildcard_node_entry_and_overrides(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    status_period_s: 2.0\n"
        "recorder_node:\n  ros__parameters:\n    out_dir: /data/x\n    fps: 15.0\n"
    )
    config = load_node_config(RecorderNodeConfig, path, "recorder_node", ["fps=10.0"])
    assert (config.out_dir, config.fps, config.status_period_s) == ("/data/x", 10.0, 2.0)
    with pytest.raises(ConfigError, match="unknown key"):
        load_node_config(RecorderNodeConfig, path, "recorder_node", ["fsp=10.0"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_node_config(RecorderNodeConfig, tmp_path / "nope.yaml", "recorder_node")


def test_events_round_trip_and_refuse_garbage():
    start = events.StartEvent(episode="e1", task="push-v3", seed=3, perturbation="goal")
    assert events.parse_event(events.to_json(start)) == start
    end = events.EndEvent(success=True, by="operator", steps=4, state=(0.5, 1.0))
    assert events.parse_event(events.to_json(end)) == end
    for text, reason in [
        ("not json", "not JSON"),
        ('{"event": "pause"}', "kind must be one of"),
        ('{"event": "end", "sucess": true}', "unknown keys"),
        ('{"event": "end", "success": "yes"}', "success has the wrong type"),
        ('{"event": "start", "seed": 1.5}', "seed has the wrong type"),
        ('{"event": "start", "perturbation": "wind"}', "perturbation must be one of"),
        ('{"event": "end", "state": ["a"]}', "state has the wrong type"),
    ]:
        with pytest.raises(events.EventError, match=reason):
            events.parse_event(text)


# --- Node logic through an in-memory host ---------------------------------------------------


@pytest.fixture(scope="module")
def standin_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "good": build_standin_onnx(root / "good.onnx"),
        "nan": build_standin_onnx(root / "nan.onnx", bias=float("nan")),
    }


def _policy_node(model, **overrides):
    host = MemoryHost()
    config = PolicyNodeConfig(model_path=str(model), policy_factory=STANDIN, **overrides)
    node = PolicyNode(host, config)
    assert Lifecycle(node).trigger("configure")
    return host, node


def _observe(host, value=100, stamp_ns=None, size=16):
    c = host.codec
    stamp_ns = stamp_ns or time.time_ns()
    host.deliver(IMAGE_TOPIC, c.image_to_msg(np.full((size, size, 3), value, np.uint8), stamp_ns))
    host.deliver(STATE_TOPIC, c.floats_to_msg(np.array([0.1, 0.6, 0.2, 1.0], np.float32)))


def test_policy_node_acts_within_limits_and_holds_when_it_must(standin_models, tmp_path):
    slow_arm = spec_file(tmp_path, max_action_change=[0.1] * 4)
    host, node = _policy_node(standin_models["good"], replan_every=4, embodiment=str(slow_arm))
    c = host.codec
    node.tick(time.monotonic())  # nothing to act on and nothing commanded yet: silence
    node.tick(time.monotonic())
    assert not host.actions() and node.counters["holds.no_instruction"] == 2
    host.deliver(INSTRUCTION_TOPIC, c.string_to_msg("move the gripper to the target"))
    _observe(host)
    first = node.tick(time.monotonic())
    second = node.tick(time.monotonic())
    assert node.counters["actions"] == 2
    np.testing.assert_array_equal(host.actions()[-1], second)
    assert np.all(np.abs(first) <= 0.1 + 1e-6)  # from the hold (zeros), at most 0.1 per tick
    assert np.all(np.abs(second - first) <= 0.1 + 1e-6)
    # the camera stops: after image_timeout_s every tick publishes a hold
    late = time.monotonic() + node.config.image_timeout_s + 0.1
    n = len(host.actions())
    for _ in range(3):
        np.testing.assert_array_equal(node.tick(late)[:3], 0.0)
    assert len(host.actions()) == n + 3 and node.counters["holds.stale_image"] == 3
    # e-stop: latched; releasing the button does not release the robot
    _observe(host)
    host.deliver(ESTOP_TOPIC, c.bool_to_msg(True))
    host.deliver(ESTOP_TOPIC, c.bool_to_msg(False))
    node.tick(time.monotonic())
    assert node.counters["holds.estop"] == 1 and node.estop.engaged
    node.publish_status()
    status = json.loads(host.published[STATUS_TOPIC][-1].data)
    assert status["estop"] is True and status["holding"] == "estop"
    assert status["counters"]["holds.stale_image"] == 3


def test_policy_node_reactivation_releases_the_estop_only_when_released(standin_models):
    host, node = _policy_node(standin_models["good"])
    lifecycle = Lifecycle(node)
    host.deliver(ESTOP_TOPIC, host.codec.bool_to_msg(True))
    assert not lifecycle.trigger("activate")  # refused while pressed
    host.deliver(ESTOP_TOPIC, host.codec.bool_to_msg(False))
    assert lifecycle.trigger("activate") and not node.estop.engaged
    assert lifecycle.trigger("deactivate")
    np.testing.assert_array_equal(host.actions()[-1], np.zeros(4))  # deactivate holds


def test_policy_node_counts_bad_input_and_refuses_nan_chunks(standin_models):
    host, node = _policy_node(standin_models["nan"])
    c = host.codec
    host.deliver(IMAGE_TOPIC, Image_(height=4, width=4, encoding="yuv422", step=8, data=bytes(32)))
    host.deliver(IMAGE_TOPIC, Image_(height=4, width=4, encoding="rgb8", step=12, data=bytes(47)))
    host.deliver(INSTRUCTION_TOPIC, c.string_to_msg("   "))
    host.deliver(STATE_TOPIC, c.floats_to_msg(np.array([0, np.nan, 0, 0], np.float32)))
    host.deliver(STATE_TOPIC, c.floats_to_msg(np.zeros(3, np.float32)))
    host.deliver(EPISODE_EVENT_TOPIC, c.string_to_msg('{"event": "jump"}'))
    counts = node.counters.snapshot()
    assert counts["rejected.image"] == 2 and counts["rejected.instruction"] == 1
    assert counts["rejected.state"] == 2 and counts["rejected.episode_event"] == 1
    host.deliver(INSTRUCTION_TOPIC, c.string_to_msg("move the gripper to the target"))
    _observe(host)
    for _ in range(3):
        np.testing.assert_array_equal(node.tick(time.monotonic()), np.zeros(4))
    assert node.counters["unsafe_chunks.nonfinite"] == 3 and node.counters["actions"] == 0
    assert all(np.all(np.isfinite(a)) for a in host.actions())


class ScriptedPolicy:
    """A policy for the node tests: records what it is asked, answers after `delay_s`."""

    calls: typing.ClassVar[list[str]] = []
    seen: typing.ClassVar[list[tuple[float, float]]] = []  # (image mean, state[0]) per call
    delay_s = 0.0
    spec = PolicySpec(state_dim=4, action_dim=4, chunk_size=8, image_size=64)

    def infer(self, obs):
        ScriptedPolicy.calls.append(obs["instruction"])
        ScriptedPolicy.seen.append((float(obs["image"].mean()), float(obs["state"][0])))
        time.sleep(ScriptedPolicy.delay_s)
        k = len(ScriptedPolicy.calls)
        return {"action": np.full((8, 4), 0.01 * k, np.float32)}  # chunk k: all 0.01 * k

    def reset(self):
        pass


def scripted_policy(model_path, backend):
    """policy_factory for the tests: `test_nodes_units:scripted_policy`."""
    ScriptedPolicy.calls, ScriptedPolicy.seen = [], []
    return ScriptedPolicy()


@pytest.fixture(autouse=True)
def _scripted_policy_registered(register_policy_factory):
    """test_nodes_units:scripted_policy is on the policy node's allow-list, as an entry point."""
    register_policy_factory(SCRIPTED)


SCRIPTED = "test_nodes_units:scripted_policy"


def _scripted_node(**overrides):
    host = MemoryHost()
    config = PolicyNodeConfig(policy_factory=SCRIPTED, **overrides)
    node = PolicyNode(host, config)
    assert Lifecycle(node).trigger("configure")
    host.deliver(INSTRUCTION_TOPIC, host.codec.string_to_msg("move the gripper to the target"))
    _observe(host)
    return host, node


def test_new_instruction_or_episode_empties_the_chunk_queue():
    ScriptedPolicy.delay_s = 0.0
    host, node = _scripted_node(replan_every=8, async_inference=False)
    for _ in range(3):
        node.tick(time.monotonic())
    assert len(ScriptedPolicy.calls) == 1  # one chunk serves 8 ticks
    host.deliver(INSTRUCTION_TOPIC, host.codec.string_to_msg("push the puck to the target"))
    node.tick(time.monotonic())
    assert ScriptedPolicy.calls == ["move the gripper to the target", "push the puck to the target"]
    host.deliver(EPISODE_EVENT_TOPIC, host.codec.string_to_msg(events.to_json(events.StartEvent())))
    node.tick(time.monotonic())  # the last episode's frame is gone: waits for a new one
    assert node.counters["holds.no_image"] == 1
    _observe(host, value=50)
    node.tick(time.monotonic())
    assert len(ScriptedPolicy.calls) == 3


def _deliver_state(host, first: float, source_ns: int) -> None:
    state = np.array([first, 0.6, 0.2, 1.0], np.float32)
    host.deliver(STATE_TOPIC, host.codec.floats_to_msg(state), source_ns)


def test_a_frame_acts_with_the_state_published_with_it_whichever_is_handled_first():
    """A robot (or `ros2 bag play`) publishes a state and its frame together, on two topics:
    the frame goes with the state published nearest to it, within max_state_skew_s, even when
    that state is handled after the frame; no state that close: the newest, counted."""
    ScriptedPolicy.delay_s = 0.0
    host = MemoryHost()
    config = PolicyNodeConfig(policy_factory=SCRIPTED, replan_every=1, async_inference=False)
    node = PolicyNode(host, config)
    assert Lifecycle(node).trigger("configure")
    host.deliver(INSTRUCTION_TOPIC, host.codec.string_to_msg("move the gripper to the target"))
    now = time.time_ns()
    _deliver_state(host, 1.0, now - 33_000_000)  # the last step's state
    image = host.codec.image_to_msg(np.full((16, 16, 3), 40, np.uint8), now)
    host.deliver(IMAGE_TOPIC, image, now)
    assert node.tick(time.monotonic()) is None and not ScriptedPolicy.seen  # waits for its state
    _deliver_state(host, 2.0, now - 100_000)  # published just before the frame, handled after
    node.tick(time.monotonic())
    assert ScriptedPolicy.seen == [(40.0, 2.0)]
    later = now + 100_000_000
    host.deliver(
        IMAGE_TOPIC, host.codec.image_to_msg(np.full((16, 16, 3), 50, np.uint8), later), later
    )
    node.tick(time.monotonic() + node.config.max_state_skew_s)  # no state near it came in time
    assert ScriptedPolicy.seen[-1] == (50.0, 2.0) and node.counters["far_states"] == 1


def test_a_frame_handled_before_the_instruction_is_acted_on_when_the_instruction_comes():
    """`ros2 bag play` sends the latched instruction and the first frame together. When the
    frame is handled first (a hold: no instruction), the instruction must wake the control
    thread at once, or the next frame replaces the first and every chunk starts a frame late."""
    ScriptedPolicy.delay_s = 0.0
    host = MemoryHost()
    config = PolicyNodeConfig(policy_factory=SCRIPTED, async_inference=False, replan_every=1,
                              estop_wait_s=0.0, control_rate_hz=5.0)  # fmt: skip
    lifecycle = Lifecycle(PolicyNode(host, config))
    assert lifecycle.trigger("configure") and lifecycle.trigger("activate")
    try:
        _observe(host, value=10)
        time.sleep(0.02)  # the control thread ticks on it: a hold, no instruction
        host.deliver(INSTRUCTION_TOPIC, host.codec.string_to_msg("push the puck to the target"))
        time.sleep(0.15)  # the next frame comes before a fallback tick (1.5 periods) would
        _observe(host, value=20)
        time.sleep(0.3)
    finally:
        assert lifecycle.trigger("deactivate")
    assert [image for image, _ in ScriptedPolicy.seen] == [10.0, 20.0]


@pytest.mark.parametrize("asynchronous", [True, False])
def test_a_slow_policy_does_not_slow_the_ticks_with_async_inference(asynchronous):
    """Inference takes 60 ms; replanning every 2 ticks. Asynchronous: only the episode's first
    tick waits; the next chunk arrives while the current one is used, aligned to the tick it
    arrives at. Synchronous: every tick that asks waits for its own chunk."""
    ScriptedPolicy.delay_s = 0.06
    host, node = _scripted_node(replan_every=2, async_inference=asynchronous, image_timeout_s=2.0)
    durations, actions = [], []
    for _ in range(8):
        _observe(host)
        start = time.monotonic()
        actions.append(node.tick(start)[0])
        durations.append(time.monotonic() - start)
        time.sleep(0.035)  # ~30 Hz
    node.on_cleanup()
    assert durations[0] >= 0.05 and node.counters["actions"] == 8
    if asynchronous:
        assert max(durations[1:]) < 0.02
        assert len(ScriptedPolicy.calls) >= 3  # new chunks kept coming in
    else:
        assert sum(d >= 0.05 for d in durations) == 4  # ticks 0, 2, 4, 6
    assert actions == sorted(actions)  # later chunks replace earlier ones, never the reverse


def test_recorder_writes_what_it_received_and_closes_on_shutdown(tmp_path):
    host, node, lifecycle = active_recorder(tmp_path)
    c = host.codec
    start = events.StartEvent(episode="ep", task="reach-v3", instruction="reach it", seed=7)
    host.deliver(EPISODE_EVENT_TOPIC, c.string_to_msg(events.to_json(start)))
    rng = np.random.default_rng(0)
    sent = []
    for t in range(4):
        image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        action = rng.uniform(-1, 1, 4).astype(np.float32)
        host.deliver(IMAGE_TOPIC, c.image_to_msg(image, 10**18 + t * 33_000_000))
        host.deliver(STATE_TOPIC, c.floats_to_msg(np.full(4, t, np.float32)))
        host.deliver(ACTION_TOPIC, c.floats_to_msg(action))
        if t == 1:
            host.deliver(ACTION_TOPIC, c.floats_to_msg(np.full(4, np.nan, np.float32)))
        sent.append((image, action))
    assert node.counters["rejected.action"] == 1 and node.counters["steps"] == 4
    lifecycle.shutdown()  # what SIGINT/SIGTERM do
    (path,) = list_episodes(tmp_path)
    episode = read_episode(path)
    np.testing.assert_array_equal(episode.images, np.stack([i for i, _ in sent]))
    np.testing.assert_array_equal(episode.actions, np.stack([a for _, a in sent]))
    np.testing.assert_allclose(episode.timestamps, np.arange(4) * 0.033)
    assert episode.meta.success is False and "interrupted" in episode.meta.extra
    assert (episode.meta.instruction, episode.meta.extra["seed"]) == ("reach it", 7)


def test_recorder_pairs_an_action_with_the_frame_published_before_it_not_the_one_received(tmp_path):
    """The policy's action can arrive before the camera frame it was computed from (different
    topics and writers; seen in the operator guide's shift, 2 to 14 steps of 90): each step
    gets the newest frame and state *published* before its action (DDS source time). Two
    actions on one frame both get it; an action with nothing before it is counted, not kept."""
    host, node, _ = active_recorder(tmp_path)
    c = host.codec
    start = events.StartEvent(episode="ep", task="reach-v3", instruction="reach it")
    host.deliver(EPISODE_EVENT_TOPIC, c.string_to_msg(events.to_json(start)))
    frames = [np.full((8, 8, 3), 10 * k, np.uint8) for k in range(4)]

    def frame(k, at):
        host.deliver(IMAGE_TOPIC, c.image_to_msg(frames[k], 10**18 + k * 33_000_000), at)
        host.deliver(STATE_TOPIC, c.floats_to_msg(np.full(4, k, np.float32)), at + 1)

    def act(value, at):
        host.deliver(ACTION_TOPIC, c.floats_to_msg(np.full(4, value, np.float32)), at)

    act(-1.0, 50)  # before any frame of this episode
    frame(0, 100)
    act(0.0, 110)
    act(0.1, 210)  # arrives before the frame it was computed from
    assert node.counters["steps"] == 1  # it waits for that frame
    frame(1, 200)
    act(0.2, 310)
    act(0.21, 320)  # a second action on frame 2 (e.g. a hold)
    frame(2, 300)
    frame(3, 400)
    act(0.3, 410)
    end = events.EndEvent(success=True, by="operator")
    host.deliver(EPISODE_EVENT_TOPIC, c.string_to_msg(events.to_json(end)))
    (path,) = list_episodes(tmp_path)
    episode = read_episode(path)
    used = [0, 1, 2, 2, 3]
    np.testing.assert_array_equal(episode.images, np.stack([frames[k] for k in used]))
    np.testing.assert_array_equal(episode.states[:, 0], used)
    np.testing.assert_allclose(episode.actions[:, 0], [0.0, 0.1, 0.2, 0.21, 0.3])
    assert episode.problems() == ["1 steps stamped no later than the one before (first: step 3): "
                                  "interleaved messages?"]  # fmt: skip
    assert node.counters["actions_before_observation"] == 1


def test_recorder_keeps_no_step_past_the_episode_step_limit(tmp_path):
    """At its step limit the robot publishes its last frame and then the end event; a policy
    that has not heard the end yet acts on that frame, but the robot executes no more than
    max_steps actions: the episode has those, not the one sent after (seen in the ROS 2 launch
    test as 21 recorded steps of a 20-step episode)."""
    host, node, _ = active_recorder(tmp_path)
    c = host.codec
    start = events.StartEvent(episode="ep", task="reach-v3", instruction="reach it", max_steps=3)
    host.deliver(EPISODE_EVENT_TOPIC, c.string_to_msg(events.to_json(start)))
    for k in range(4):  # frames 0..2 and their actions; frame 3 is the one after the last action
        host.deliver(
            IMAGE_TOPIC, c.image_to_msg(np.full((8, 8, 3), k, np.uint8), 10**18 + k), 100 * k
        )
        host.deliver(STATE_TOPIC, c.floats_to_msg(np.full(4, k, np.float32)), 100 * k + 1)
        host.deliver(ACTION_TOPIC, c.floats_to_msg(np.full(4, k, np.float32)), 100 * k + 10)
    end = events.EndEvent(success=False, reason="max_steps", by="sim", steps=3)
    host.deliver(EPISODE_EVENT_TOPIC, c.string_to_msg(events.to_json(end)), 305)
    (path,) = list_episodes(tmp_path)
    np.testing.assert_array_equal(read_episode(path).actions[:, 0], [0, 1, 2])
    assert node.counters["actions_after_end"] == 1 and node.counters["steps"] == 3


# --- Fault injection: the e-stop against a slow model, hostile instructions ------------------


def _is_motion(msg, keep_dims=(3,)) -> bool:
    action = np.asarray(msg.data, np.float32)
    return bool(np.any(np.delete(action, list(keep_dims)) != 0))


@pytest.mark.slow
@pytest.mark.parametrize(
    "delay_s, settings",
    [(0.06, {"async_inference": False, "replan_every": 1}), (0.2, {})],
    ids=["60ms-sync-replan1", "200ms-defaults"],
)
def test_no_motion_action_after_the_estop_even_with_a_slow_model(delay_s, settings):
    """20 trials: the e-stop arrives at a random moment while the control thread runs (most
    often while it waits for a chunk). Every action published once the latch is engaged must
    be a hold, a hold goes out at once, and the control thread does not sit out the inference
    it was waiting for."""
    ScriptedPolicy.delay_s = delay_s
    host, node = _scripted_node(trigger="timer", image_timeout_s=5.0, state_timeout_s=5.0,
                                estop_wait_s=0.0, **settings)  # fmt: skip
    lifecycle, rng, c = Lifecycle(node), np.random.default_rng(0), host.codec
    published, publish = [], node._action_pub.publish

    def watched(msg):  # (when, a motion command?, was the e-stop engaged?)
        published.append((time.monotonic(), _is_motion(msg), node.estop.engaged))
        publish(msg)

    node._action_pub.publish = watched
    to_hold, to_holding = [], []
    for _ in range(20):
        _observe(host)
        assert lifecycle.trigger("activate")
        time.sleep(rng.uniform(0.0, 3 * delay_s))
        pressed = time.monotonic()
        host.deliver(ESTOP_TOPIC, c.bool_to_msg(True))
        while node._holding != "estop" and time.monotonic() - pressed < 2 * delay_s + 1:
            time.sleep(0.001)
        to_holding.append(time.monotonic() - pressed)
        time.sleep(0.02)
        holds = [t for t, motion, _ in published if t >= pressed and not motion]
        to_hold.append(holds[0] - pressed if holds else float("inf"))
        host.deliver(ESTOP_TOPIC, c.bool_to_msg(False))
        assert lifecycle.trigger("deactivate")
    node.on_cleanup()
    assert sum(motion for _, motion, _ in published) > 0  # the trials acted before the e-stop
    late = [t for t, motion, engaged in published if motion and engaged]
    assert not late, f"{len(late)} motion actions after the e-stop"
    assert max(to_hold) < 0.01, f"a hold went out only {max(to_hold)} s after the e-stop"
    assert max(to_holding) < 0.1, f"the control thread held only after {max(to_holding)} s"


def test_a_huge_instruction_is_refused_counted_and_logged_as_an_excerpt(standin_models, caplog):
    host, node = _policy_node(standin_models["good"])
    c = host.codec
    with caplog.at_level(logging.INFO):
        host.deliver(INSTRUCTION_TOPIC, c.string_to_msg("push" * 25_000))  # 100 KB
    assert node.counters["rejected.instruction"] == 1 and node._instruction is None
    assert "100000 characters" in caplog.text and len(caplog.text) < 2_000
    limit = node.config.max_instruction_chars
    host.deliver(INSTRUCTION_TOPIC, c.string_to_msg("x" * limit))
    assert node._instruction == "x" * limit
    with pytest.raises(ConfigError, match="max_instruction_chars"):
        PolicyNodeConfig(max_instruction_chars=0)


@pytest.mark.parametrize(
    "heard, required, acts", [(True, False, True), (False, False, True), (False, True, False)]
)
def test_after_activation_the_node_holds_until_it_has_heard_the_estop(
    standin_models, heard, required, acts
):
    """Within estop_wait_s of activation it holds unless the e-stop's (latched) state has been
    heard; after it, it acts without one unless estop_required."""
    host, node = _policy_node(standin_models["good"], estop_wait_s=0.3, estop_required=required)
    c, now = host.codec, time.monotonic()
    host.deliver(INSTRUCTION_TOPIC, c.string_to_msg("move the gripper to the target"))
    node._activated_at = now  # as on_activate sets it (without starting the control thread)
    _observe(host)
    node.tick(now)
    assert node._holding == "estop_unknown" and node.counters["actions"] == 0
    if heard:
        host.deliver(ESTOP_TOPIC, c.bool_to_msg(False))  # the latched state: released
        node.tick(now + 0.1)
    else:
        node.tick(now + 0.31)
    assert (node.counters["actions"] == 1) is acts, node.counters.snapshot()
