"""The rclpy host: the nodes on a ROS 2 robot (Humble or Jazzy).

Message classes come from sensor_msgs, std_msgs, trajectory_msgs and builtin_interfaces; images
convert with cv_bridge (after the shared layout check, so both hosts accept and refuse the same
images); every config field is a declared ROS parameter described by its docstring; the policy
node is an rclpy lifecycle node (`ros2 lifecycle set /policy_node activate`).

This module imports rclpy at the top: it is only imported when rclpy is there
(`vla_rft_nodes.host.run_node` picks the host).
"""

from __future__ import annotations

import array
import time
from collections.abc import Callable

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration, Time
from cv_bridge import CvBridge
from geometry_msgs.msg import Twist, TwistStamped, Vector3
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.signals import SignalHandlerOptions
from rclpy.subscription import Subscription
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import (
    Bool,
    Float32MultiArray,
    Float64MultiArray,
    Header,
    MultiArrayDimension,
    MultiArrayLayout,
    String,
)
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from vla_rft.contract.config import ConfigError
from vla_rft.contract.qos import QoS
from vla_rft.data import messages
from vla_rft_nodes.configs import config_from_params, default_params, field_docs
from vla_rft_nodes.host.base import Codec, Host, NodeBase, Publisher, Timer, stop_on_signals

ROS_TYPES = {
    "builtin_interfaces/msg/Time": Time,
    "builtin_interfaces/msg/Duration": Duration,
    "std_msgs/msg/Header": Header,
    "sensor_msgs/msg/Image": Image,
    "std_msgs/msg/String": String,
    "std_msgs/msg/Bool": Bool,
    "std_msgs/msg/MultiArrayDimension": MultiArrayDimension,
    "std_msgs/msg/MultiArrayLayout": MultiArrayLayout,
    "std_msgs/msg/Float32MultiArray": Float32MultiArray,
    "trajectory_msgs/msg/JointTrajectoryPoint": JointTrajectoryPoint,
    "trajectory_msgs/msg/JointTrajectory": JointTrajectory,
    "sensor_msgs/msg/JointState": JointState,
    "geometry_msgs/msg/Vector3": Vector3,
    "geometry_msgs/msg/Twist": Twist,
    "geometry_msgs/msg/TwistStamped": TwistStamped,
    "std_msgs/msg/Float64MultiArray": Float64MultiArray,
}

_RELIABLE = {"reliability": ReliabilityPolicy.RELIABLE, "history": HistoryPolicy.KEEP_LAST}
_PROFILES = {
    QoS.SENSOR_DATA: qos_profile_sensor_data,
    QoS.RELIABLE: QoSProfile(depth=10, durability=DurabilityPolicy.VOLATILE, **_RELIABLE),
    QoS.LATCHED: QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, **_RELIABLE),
}


_MESSAGE_INFO_CALLBACKS = hasattr(Subscription, "CallbackType")
"""rclpy passes a subscription callback with two parameters the message info (Iron and later)."""


class RclpyCodec(Codec):
    """rclpy messages: sequences as array.array, images through cv_bridge."""

    def __init__(self):
        super().__init__(ROS_TYPES)
        self._bridge = CvBridge()

    def _bytes(self, array_: np.ndarray):
        return array.array("B", np.ascontiguousarray(array_).tobytes())

    def _floats(self, values: np.ndarray):
        return array.array("f", np.asarray(values, np.float32).tobytes())

    def _doubles(self, values: np.ndarray):
        return array.array("d", np.asarray(values, np.float64).tobytes())

    def image_to_msg(self, image: np.ndarray, stamp_ns: int, frame_id: str = "camera"):
        image = np.ascontiguousarray(messages.check_rgb_image(image))
        return self._bridge.cv2_to_imgmsg(
            image, encoding="rgb8", header=self.header(stamp_ns, frame_id)
        )

    def image_from_msg(self, msg) -> np.ndarray:
        messages.image_layout(msg.encoding, msg.height, msg.width, msg.step, len(msg.data))
        return np.ascontiguousarray(self._bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8"))


class _RosPublisher(Publisher):
    def __init__(self, publisher):
        self._publisher = publisher

    def publish(self, msg) -> None:
        self._publisher.publish(msg)

    def subscriber_count(self) -> int:
        return self._publisher.get_subscription_count()


class _RosTimer(Timer):
    def __init__(self, timer):
        self._timer = timer

    def cancel(self) -> None:
        self._timer.cancel()


class _LoggerAdapter:
    """rclpy's logger behind the logging.Logger methods the nodes call."""

    def __init__(self, logger):
        self._logger = logger

    def debug(self, text: str) -> None:
        self._logger.debug(text)

    def info(self, text: str) -> None:
        self._logger.info(text)

    def warning(self, text: str) -> None:
        self._logger.warning(text)

    def error(self, text: str) -> None:
        self._logger.error(text)


class RclpyHost(Host):
    kind = "rclpy"

    def __init__(self, node: Node):
        self.ros_node = node
        self.node_name = node.get_name()
        self.codec = RclpyCodec()
        self.log = _LoggerAdapter(node.get_logger())
        self.shutdown_requested = False
        self._source_ns = 0  # source time of the message being handled (source_time_ns)

    def subscribe(
        self,
        topic: str,
        msgtype: str,
        callback: Callable,
        qos: QoS,
        depth: int | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """rclpy deserializes in its C layer, out of this host's reach: `on_error` is not
        called here."""
        profile = _PROFILES[qos]
        if depth is not None:
            profile = QoSProfile(
                depth=depth,
                history=HistoryPolicy.KEEP_LAST,
                reliability=profile.reliability,
                durability=profile.durability,
            )

        def with_info(msg, info) -> None:  # rclpy passes the message info to two-argument callbacks
            self._source_ns = info.get("source_timestamp") or time.time_ns()
            callback(msg)

        def received(msg) -> None:  # rclpy before Iron: no message info; when it arrived
            self._source_ns = time.time_ns()
            callback(msg)

        wrapped = with_info if _MESSAGE_INFO_CALLBACKS else received
        self.ros_node.create_subscription(ROS_TYPES[msgtype], topic, wrapped, profile)

    def publisher(self, topic: str, msgtype: str, qos: QoS) -> Publisher:
        return _RosPublisher(
            self.ros_node.create_publisher(ROS_TYPES[msgtype], topic, _PROFILES[qos])
        )

    def timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        return _RosTimer(self.ros_node.create_timer(period_s, callback))

    def now_ns(self) -> int:
        return self.ros_node.get_clock().now().nanoseconds

    def source_time_ns(self) -> int:
        return self._source_ns

    def request_shutdown(self) -> None:
        self.shutdown_requested = True


def declare_config(node: Node, cls: type):
    """Declare one ROS parameter per field (default and description from the dataclass) and
    build the config from their values (parameter files and -p overrides applied by ROS)."""
    docs = field_docs(cls)
    values = {}
    for name, default in default_params(cls).items():
        descriptor = ParameterDescriptor(
            description=docs.get(name, ""),
            dynamic_typing=isinstance(default, list) and not default,
        )
        node.declare_parameter(name, default, descriptor)
        value = node.get_parameter(name).value
        # a parameter file's empty list (`[]`) has no type for rcl: it arrives unset
        values[name] = default if value is None else value
    return config_from_params(cls, values)


class _RosLifecycleNode(LifecycleNode):
    """An rclpy lifecycle node whose transitions call the vla_rft node's callbacks."""

    core: NodeBase | None = None

    def _transition(self, callback: str, goal: str) -> TransitionCallbackReturn:
        try:
            getattr(self.core, callback)()
        except Exception as err:
            self.get_logger().error(f"{callback} failed: {err}")
            return TransitionCallbackReturn.FAILURE
        self.core.set_state(goal)
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        return self._transition("on_configure", "inactive")

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        result = self._transition("on_activate", "active")
        return super().on_activate(state) if result == TransitionCallbackReturn.SUCCESS else result

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        result = self._transition("on_deactivate", "inactive")
        if result == TransitionCallbackReturn.SUCCESS:
            return super().on_deactivate(state)
        return result

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        return self._transition("on_cleanup", "unconfigured")

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        if self.core.state == "active":
            self._transition("on_deactivate", "inactive")
        return self._transition("on_shutdown", "finalized")


def _start_plain_node(core: NodeBase) -> None:
    """Configure and activate a node that is not a ROS 2 lifecycle node; on failure, end."""
    for callback, goal in (("on_configure", "inactive"), ("on_activate", "active")):
        try:
            getattr(core, callback)()
        except Exception as err:
            core.log.error(f"{callback} failed: {err}")
            core.exit_code = 1
            core.host.request_shutdown()
            return
        core.set_state(goal)


def run(node_cls, argv: list[str]) -> int:
    """rclpy.init, the node, its parameters, the lifecycle, spin until Ctrl-C or shutdown.

    SIGINT and SIGTERM are this function's, not rclpy's: they end the spin while the context is
    still valid, so that the node is deactivated (the policy node publishes its hold) and shut
    down before rclpy is. Returns the node's exit code (2 for bad parameters)."""
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    ros_node = _RosLifecycleNode(node_cls.NAME) if node_cls.LIFECYCLE else Node(node_cls.NAME)
    host = RclpyHost(ros_node)
    try:
        config = declare_config(ros_node, node_cls.CONFIG)
    except ConfigError as err:
        ros_node.get_logger().error(f"bad parameters: {err}")
        ros_node.destroy_node()
        rclpy.try_shutdown()
        return 2
    core = node_cls(host, config)
    stop_on_signals(host)
    executor = SingleThreadedExecutor()
    executor.add_node(ros_node)
    try:
        if node_cls.LIFECYCLE:
            ros_node.core = core
            if getattr(config, "autostart", True):
                ros_node.trigger_configure()
                ros_node.trigger_activate()
        else:
            _start_plain_node(core)
        while rclpy.ok() and not host.shutdown_requested:
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        if core.state == "active":
            core.on_deactivate()
            core.state = "inactive"
        if core.state != "finalized":
            core.on_shutdown()
        executor.shutdown()
        ros_node.destroy_node()
        rclpy.try_shutdown()
    return core.exit_code
