"""The rclpy host's contract, in a process where rclpy imports: the same messages, bytes, QoS,
parameters and lifecycle as the Cyclone DDS host.

`tests/test_ros2.py::test_the_rclpy_host_contract_under_ros2` runs this file under a sourced ROS 2
and fails on any skip; in the unsourced suite it is skipped (rclpy does not import there).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

rclpy = pytest.importorskip(
    "rclpy", reason="needs a sourced ROS 2; tests/test_ros2.py runs this file under one"
)

from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402

from vla_rft.contract.qos import QoS  # noqa: E402
from vla_rft_nodes.configs import NODE_CONFIGS, default_params, field_docs  # noqa: E402
from vla_rft_nodes.dds_types import DDS_TYPES  # noqa: E402
from vla_rft_nodes.host import rclpy_host  # noqa: E402
from vla_rft_nodes.host.base import Codec, NodeBase  # noqa: E402


@pytest.fixture(scope="module")
def context():
    rclpy.init()
    yield
    rclpy.try_shutdown()


@pytest.fixture(scope="module")
def codecs():
    return rclpy_host.RclpyCodec(), Codec(DDS_TYPES)


def _messages(codec: Codec) -> dict[str, object]:
    """One message of every type the nodes send, built through `codec`."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    chunk = rng.uniform(-1, 1, (3, 4))
    return {
        "sensor_msgs/msg/Image": codec.image_to_msg(image, 1_234_567_890_123, "camera"),
        "std_msgs/msg/Float32MultiArray": codec.floats_to_msg(
            np.array([0.5, -1.0, 2.25, 0.0]), ("a", "b", "c", "d")
        ),
        "std_msgs/msg/String": codec.string_to_msg('{"event": "start", "text": "grüß"}'),
        "std_msgs/msg/Bool": codec.bool_to_msg(True),
        "trajectory_msgs/msg/JointTrajectory": codec.trajectory_to_msg(
            chunk, ("a", "b", "c", "d"), 0.1, 42
        ),
        "sensor_msgs/msg/JointState": codec.joint_state_to_msg(("a", "b"), chunk[0, :2], 5),
        "geometry_msgs/msg/TwistStamped": codec.twist_to_msg(chunk[0, :3], chunk[1, :3], 6, "f"),
        "std_msgs/msg/Float64MultiArray": codec.doubles_to_msg(chunk[2], ("a", "b", "c", "d")),
    }


def test_both_hosts_know_the_same_message_types():
    assert set(rclpy_host.ROS_TYPES) == set(DDS_TYPES)


@pytest.mark.parametrize("msgtype", sorted(_messages(Codec(DDS_TYPES))))
def test_every_message_is_byte_identical_on_both_hosts(msgtype, codecs):
    """rclpy's CDR (through cv_bridge for images) equals the Cyclone DDS host's, and each host
    reads the other's bytes back."""
    ros_codec, dds_codec = codecs
    ros_msg, dds_msg = _messages(ros_codec)[msgtype], _messages(dds_codec)[msgtype]
    ros_bytes, dds_bytes = serialize_message(ros_msg), dds_msg.serialize()
    assert ros_bytes == dds_bytes
    assert deserialize_message(dds_bytes, rclpy_host.ROS_TYPES[msgtype]) == ros_msg
    assert DDS_TYPES[msgtype].deserialize(ros_bytes).serialize() == dds_bytes


def test_images_convert_through_the_real_cv_bridge(codecs):
    ros_codec, dds_codec = codecs
    image = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    msg = ros_codec.image_to_msg(image, 7)
    np.testing.assert_array_equal(ros_codec.image_from_msg(msg), image)
    np.testing.assert_array_equal(dds_codec.image_from_msg(msg), image)
    bgr = ros_codec._bridge.cv2_to_imgmsg(np.ascontiguousarray(image[..., ::-1]), "bgr8")
    np.testing.assert_array_equal(ros_codec.image_from_msg(bgr), image)


def test_qos_profiles_match_the_contract():
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    profiles = rclpy_host._PROFILES
    assert set(profiles) == set(QoS)
    assert profiles[QoS.SENSOR_DATA].reliability == ReliabilityPolicy.BEST_EFFORT
    assert profiles[QoS.RELIABLE].reliability == ReliabilityPolicy.RELIABLE
    assert profiles[QoS.RELIABLE].durability == DurabilityPolicy.VOLATILE
    assert profiles[QoS.LATCHED].durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert profiles[QoS.LATCHED].reliability == ReliabilityPolicy.RELIABLE


@pytest.mark.parametrize("name", sorted(NODE_CONFIGS))
def test_every_config_field_is_a_described_ros_parameter(name, context):
    cls = NODE_CONFIGS[name]
    node = rclpy.create_node(f"contract_{name}")
    try:
        config = rclpy_host.declare_config(node, cls)
        assert config == cls()
        docs = field_docs(cls)
        for field in dataclasses.fields(cls):
            descriptor = node.describe_parameter(field.name)
            assert descriptor.description == docs[field.name] != "", field.name
        builtin = {"use_sim_time", "start_type_description_service"}  # rclpy's own
        assert set(default_params(cls)) == set(node._parameters) - builtin
    finally:
        node.destroy_node()


@dataclasses.dataclass
class _ProbeConfig:
    status_period_s: float = 1.0


class _Probe(NodeBase):
    """A node that records its lifecycle callbacks."""

    NAME = "probe"
    CONFIG = _ProbeConfig
    LIFECYCLE = True

    def __init__(self, host):
        super().__init__(host, _ProbeConfig())
        self.calls = []

    def on_configure(self):
        self.calls.append("configure")

    def on_activate(self):
        self.calls.append("activate")

    def on_deactivate(self):
        self.calls.append("deactivate")

    def on_cleanup(self):
        self.calls.append("cleanup")


def test_ros_lifecycle_transitions_drive_the_node(context):
    ros_node = rclpy_host._RosLifecycleNode("probe")
    try:
        core = _Probe(rclpy_host.RclpyHost(ros_node))
        ros_node.core = core
        ros_node.trigger_configure()
        assert core.state == "inactive"
        ros_node.trigger_activate()
        assert core.state == "active"
        ros_node.trigger_deactivate()
        assert core.state == "inactive"
        ros_node.trigger_cleanup()
        assert core.calls == ["configure", "activate", "deactivate", "cleanup"]
        assert core.state == "unconfigured"
    finally:
        ros_node.destroy_node()


def test_a_callback_knows_when_its_message_was_published(context):
    """The recorder pairs an action with the frame published before it (step_pairing.py): the
    rclpy host gives each callback its message's DDS source timestamp, not the arrival time."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    ros_node = Node("source_time_probe")
    host = rclpy_host.RclpyHost(ros_node)
    seen = []
    try:
        host.subscribe("/probe", "std_msgs/msg/String", lambda m: seen.append(
            (m.data, host.source_time_ns(), time.time_ns())), QoS.RELIABLE)  # fmt: skip
        publisher = host.publisher("/probe", "std_msgs/msg/String", QoS.RELIABLE)
        executor = SingleThreadedExecutor()
        executor.add_node(ros_node)
        published = []
        for k in range(3):
            published.append(time.time_ns())
            publisher.publish(host.codec.string_to_msg(str(k)))
            time.sleep(0.05)  # the callback runs later than the publish
        deadline = time.monotonic() + 5
        while len(seen) < 3 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert [data for data, _, _ in seen] == ["0", "1", "2"]
        for (_, source, handled), sent in zip(seen, published, strict=True):
            assert sent <= source < sent + 20_000_000 and source < handled - 20_000_000
    finally:
        ros_node.destroy_node()
