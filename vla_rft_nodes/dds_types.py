"""The ROS 2 messages the nodes use, as Cyclone DDS IdlStruct types that ROS 2 itself would send.

ROS 2 (rmw_cyclonedds) names a message `pkg::msg::dds_::Name_` and a topic `/a/b` `rt/a/b`; with
those names and the same field layout, a sample serialized here is byte-identical to the ROS 2
CDR that rosbag2 stores (tests/test_nodes_units.py checks every type against `rosbags`), so these
nodes and ROS 2 nodes on the same domain talk to each other.

Image data travels as raw bytes: its XTypes description stays `sequence<uint8>` as in ROS 2,
but the Python serializer is swapped for a byte copy (a 224x224 image in 0.05 ms instead of
10 ms through a list of ints).
"""

from dataclasses import dataclass, field

from cyclonedds.idl import IdlStruct
from cyclonedds.idl._machinery import BytesMachine
from cyclonedds.idl.types import float32, float64, int32, sequence, uint8, uint32

ROS_TOPIC_PREFIX = "rt"
"""rmw_cyclonedds publishes ROS topic `/a/b` as DDS topic `rt/a/b`."""


def dds_topic_name(ros_topic: str) -> str:
    """'/camera/image_raw' -> 'rt/camera/image_raw' (the name ROS 2 uses on the wire)."""
    name = ros_topic.strip()
    if not name.startswith("/") or name.endswith("/") or "//" in name or len(name) < 2:
        raise ValueError(f"a ROS topic name is absolute, like /camera/image_raw; got {ros_topic!r}")
    return f"{ROS_TOPIC_PREFIX}{name}"


@dataclass
class Time_(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32 = 0
    nanosec: uint32 = 0


@dataclass
class Duration_(IdlStruct, typename="builtin_interfaces::msg::dds_::Duration_"):
    sec: int32 = 0
    nanosec: uint32 = 0


@dataclass
class Header_(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time_ = field(default_factory=Time_)
    frame_id: str = ""


@dataclass
class Image_(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    header: Header_ = field(default_factory=Header_)
    height: uint32 = 0
    width: uint32 = 0
    encoding: str = ""
    is_bigendian: uint8 = 0
    step: uint32 = 0
    data: sequence[uint8] = b""  # bytes-like; see _RawBytesMachine


@dataclass
class String_(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    data: str = ""


@dataclass
class Bool_(IdlStruct, typename="std_msgs::msg::dds_::Bool_"):
    data: bool = False


@dataclass
class MultiArrayDimension_(IdlStruct, typename="std_msgs::msg::dds_::MultiArrayDimension_"):
    label: str = ""
    size: uint32 = 0
    stride: uint32 = 0


@dataclass
class MultiArrayLayout_(IdlStruct, typename="std_msgs::msg::dds_::MultiArrayLayout_"):
    dim: sequence[MultiArrayDimension_] = field(default_factory=list)
    data_offset: uint32 = 0


@dataclass
class Float32MultiArray_(IdlStruct, typename="std_msgs::msg::dds_::Float32MultiArray_"):
    layout: MultiArrayLayout_ = field(default_factory=MultiArrayLayout_)
    data: sequence[float32] = field(default_factory=list)


@dataclass
class JointTrajectoryPoint_(
    IdlStruct, typename="trajectory_msgs::msg::dds_::JointTrajectoryPoint_"
):
    positions: sequence[float64] = field(default_factory=list)
    velocities: sequence[float64] = field(default_factory=list)
    accelerations: sequence[float64] = field(default_factory=list)
    effort: sequence[float64] = field(default_factory=list)
    time_from_start: Duration_ = field(default_factory=Duration_)


@dataclass
class JointTrajectory_(IdlStruct, typename="trajectory_msgs::msg::dds_::JointTrajectory_"):
    header: Header_ = field(default_factory=Header_)
    joint_names: sequence[str] = field(default_factory=list)
    points: sequence[JointTrajectoryPoint_] = field(default_factory=list)


@dataclass
class JointState_(IdlStruct, typename="sensor_msgs::msg::dds_::JointState_"):
    header: Header_ = field(default_factory=Header_)
    name: sequence[str] = field(default_factory=list)
    position: sequence[float64] = field(default_factory=list)
    velocity: sequence[float64] = field(default_factory=list)
    effort: sequence[float64] = field(default_factory=list)


@dataclass
class Vector3_(IdlStruct, typename="geometry_msgs::msg::dds_::Vector3_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0


@dataclass
class Twist_(IdlStruct, typename="geometry_msgs::msg::dds_::Twist_"):
    linear: Vector3_ = field(default_factory=Vector3_)
    angular: Vector3_ = field(default_factory=Vector3_)


@dataclass
class TwistStamped_(IdlStruct, typename="geometry_msgs::msg::dds_::TwistStamped_"):
    header: Header_ = field(default_factory=Header_)
    twist: Twist_ = field(default_factory=Twist_)


@dataclass
class Float64MultiArray_(IdlStruct, typename="std_msgs::msg::dds_::Float64MultiArray_"):
    layout: MultiArrayLayout_ = field(default_factory=MultiArrayLayout_)
    data: sequence[float64] = field(default_factory=list)


class _RawBytesMachine(BytesMachine):
    """sequence<uint8> as one copy of any contiguous buffer (bytes, numpy) in, bytes out.

    On the wire identical to Cyclone's sequence-of-primitive encoding: a uint32 length, then the
    bytes (cyclonedds 11.0.x internals, pinned)."""

    def serialize(self, buffer, value, *args, **kwargs):
        super().serialize(buffer, memoryview(value).cast("B"), *args, **kwargs)


def _raw_bytes_field(cls: type[IdlStruct], name: str) -> None:
    idl = cls.__idl__
    idl.populate()
    for machine in (idl.v1_machine, idl.v2_machine):
        machine.members_machines[name] = _RawBytesMachine()


_raw_bytes_field(Image_, "data")

DDS_TYPES: dict[str, type[IdlStruct]] = {
    "builtin_interfaces/msg/Time": Time_,
    "builtin_interfaces/msg/Duration": Duration_,
    "std_msgs/msg/Header": Header_,
    "sensor_msgs/msg/Image": Image_,
    "std_msgs/msg/String": String_,
    "std_msgs/msg/Bool": Bool_,
    "std_msgs/msg/MultiArrayDimension": MultiArrayDimension_,
    "std_msgs/msg/MultiArrayLayout": MultiArrayLayout_,
    "std_msgs/msg/Float32MultiArray": Float32MultiArray_,
    "trajectory_msgs/msg/JointTrajectoryPoint": JointTrajectoryPoint_,
    "trajectory_msgs/msg/JointTrajectory": JointTrajectory_,
    "sensor_msgs/msg/JointState": JointState_,
    "geometry_msgs/msg/Vector3": Vector3_,
    "geometry_msgs/msg/Twist": Twist_,
    "geometry_msgs/msg/TwistStamped": TwistStamped_,
    "std_msgs/msg/Float64MultiArray": Float64MultiArray_,
}
"""ROS 2 type name -> IdlStruct class."""

_TYPE_DIGESTS: dict[str, dict[str, str]] = {
    "builtin_interfaces": {
        "Time": "b106235e25a4c5ed35098aa0a61a3ee9c9b18d197f398b0e4206cea9acf9c197",
        "Duration": "e8d009f659816f758b75334ee1a9ca5b5c0b859843261f14c7f937349599d93b",
    },
    "std_msgs": {
        "Header": "f49fb3ae2cf070f793645ff749683ac6b06203e41c891e17701b1cb597ce6a01",
        "String": "df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18",
        "Bool": "feb91e995ff9ebd09c0cb3d2aed18b11077585839fb5db80193b62d74528f6c9",
        "MultiArrayDimension": "5e773a60a4c7fc8a54985f307c7837aa2994252a126c301957a24e31282c9cbe",
        "MultiArrayLayout": "4c66e6f78e740ac103a94cf63259f968e48c617e7699e829b63c21a5cb50dac6",
        "Float32MultiArray": "0599f6f85b4bfca379873a0b4375a0aca022156bd2d7021275d116ed1fa8bfe0",
        "Float64MultiArray": "1025ddc6b9552d191f89ef1a8d2f60f3d373e28b283d8891ddcc974e8c55397f",
    },
    "sensor_msgs": {
        "Image": "d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47",
        "JointState": "a13ee3a330e346c9d87b5aa18d24e11690752bd33a0350f11c5882bc9179260e",
    },
    "trajectory_msgs": {
        "JointTrajectoryPoint": "de8907036d8bd45aac6f30cc9044a3d4a329c42cbf719aff7d95a584cfa532d7",
        "JointTrajectory": "179b33eba59d676f6d967ac71fe35e7ca2f64b2f3928f4a018cec115e213796e",
    },
    "geometry_msgs": {
        "Vector3": "cc12fe83e4c02719f1ce8070bfd14aecd40f75a96696a67a2a1f37f7dbb0765d",
        "Twist": "9c45bf16fe0983d80e3cfe750d6835843d265a9a6c46bd2e609fcddde6fb8d2a",
        "TwistStamped": "5f0fcd4f81d5d06ad9b4c4c63e3ea51b82d6ae4d0558f1d475229b1121db6f64",
    },
}
TYPE_HASHES: dict[str, str] = {
    f"{package}/msg/{name}": f"RIHS01_{digest}"
    for package, digests in _TYPE_DIGESTS.items()
    for name, digest in digests.items()
}
"""ROS 2 type name -> its type hash (REP 2016, RIHS01; the same from Iron on). ROS 2 endpoints
announce it in their USER_DATA (`typehash=...;`) and ROS 2 tools warn about endpoints that do
not; tests/test_ros2.py checks these against the installed ROS 2's type descriptions."""
