"""What a node needs from its middleware, and the node base class written against it.

A node (policy, recorder, simulated robot, evaluation manager) is host-independent: it gets a
`Host` to subscribe, publish, start timers, log and tell the time, and a `Codec` to turn numpy
arrays into the host's message objects and back. Two hosts implement it: rclpy (a ROS 2 robot)
and Cyclone DDS (anywhere, wire-compatible with ROS 2).

Every node has the ROS 2 lifecycle (configure, activate, deactivate, cleanup, shutdown). The
policy node is a ROS 2 lifecycle node; the hosts configure and activate the others at start.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from vla_rft.contract.constants import (
    BOOL_TYPE,
    DOUBLES_TYPE,
    FLOATS_TYPE,
    GRAPH_ID_ENV,
    IMAGE_TYPE,
    JOINT_STATE_TYPE,
    STATUS_MSGTYPE,
    STATUS_TOPIC,
    STRING_TYPE,
    TRAJECTORY_TYPE,
    TWIST_STAMPED_TYPE,
)
from vla_rft.contract.qos import QoS
from vla_rft.data import messages
from vla_rft.data.messages import MessageError
from vla_rft_nodes.events import EventError, parse_event

# --- Messages ----------------------------------------------------------------------------------


class Codec:
    """numpy <-> the host's message objects, for the message types in the graph.

    `types` maps ROS 2 type names to the host's classes (rclpy message classes, or the IdlStruct
    mirrors of `vla_rft_nodes.dds_types`); both take the same keyword fields. Hosts override the
    hooks for sequence fields and, on rclpy, the image conversion (cv_bridge).
    """

    def __init__(self, types: Mapping[str, type]):
        self.types = types

    # hooks: how a numpy array becomes a sequence field of this host's messages
    def _bytes(self, array: np.ndarray) -> Any:
        return np.ascontiguousarray(array).reshape(-1)

    def _floats(self, values: np.ndarray) -> Any:
        return [float(x) for x in values]

    def _doubles(self, values: np.ndarray) -> Any:
        return [float(x) for x in values]

    def header(self, stamp_ns: int, frame_id: str = ""):
        t = self.types
        stamp = t["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        return t["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)

    @staticmethod
    def stamp_ns(msg) -> int:
        """Header stamp of a message, nanoseconds."""
        return int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)

    def image_to_msg(self, image: np.ndarray, stamp_ns: int, frame_id: str = "camera"):
        """RGB uint8 [H, W, 3] -> sensor_msgs/Image (rgb8)."""
        h, w, _ = messages.check_rgb_image(image).shape
        return self.types[IMAGE_TYPE](
            header=self.header(stamp_ns, frame_id), height=h, width=w, encoding="rgb8",
            is_bigendian=0, step=w * 3, data=self._bytes(image),
        )  # fmt: skip

    def image_from_msg(self, msg) -> np.ndarray:
        """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> RGB uint8 [H, W, 3]."""
        return messages.decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)

    def floats_to_msg(self, values: np.ndarray, labels: tuple[str, ...] = ()):
        """float32 [N] -> std_msgs/Float32MultiArray (dimension label: the names)."""
        values = np.asarray(values, np.float32).reshape(-1)
        return self._multi_array(FLOATS_TYPE, self._floats(values), values.size, labels)

    def doubles_to_msg(self, values: np.ndarray, labels: tuple[str, ...] = ()):
        """float64 [N] -> std_msgs/Float64MultiArray (ros2_control's forward command
        controllers take one of these per command)."""
        values = np.asarray(values, np.float64).reshape(-1)
        return self._multi_array(DOUBLES_TYPE, self._doubles(values), values.size, labels)

    def _multi_array(self, msgtype: str, data, size: int, labels: tuple[str, ...]):
        t = self.types
        dim = t["std_msgs/msg/MultiArrayDimension"](label=",".join(labels), size=size, stride=size)
        layout = t["std_msgs/msg/MultiArrayLayout"](dim=[dim], data_offset=0)
        return t[msgtype](layout=layout, data=data)

    def floats_from_msg(self, msg, size: int | None = None) -> np.ndarray:
        """std_msgs/Float32MultiArray -> float32 [N]; MessageError on a wrong size or NaN."""
        values = np.asarray(msg.data, dtype=np.float32).reshape(-1)
        if size is not None and values.size != size:
            raise MessageError(f"expected {size} values, got {values.size}")
        if not np.all(np.isfinite(values)):
            raise MessageError(f"non-finite values in {values.tolist()}")
        return values

    def string_to_msg(self, text: str):
        return self.types[STRING_TYPE](data=text)

    def bool_to_msg(self, value: bool):
        return self.types[BOOL_TYPE](data=bool(value))

    def trajectory_to_msg(
        self,
        chunk: np.ndarray,
        joint_names: tuple[str, ...],
        dt_s: float,
        stamp_ns: int,
        start_s: float = 0.0,
    ):
        """Action chunk [K, A] -> trajectory_msgs/JointTrajectory, point k at start_s + k * dt_s."""
        t = self.types
        empty = self._doubles(np.zeros(0))
        points = []
        for k, action in enumerate(np.asarray(chunk, np.float64)):
            ns = round((start_s + k * dt_s) * 1e9)
            at = t["builtin_interfaces/msg/Duration"](sec=ns // 10**9, nanosec=ns % 10**9)
            points.append(
                t["trajectory_msgs/msg/JointTrajectoryPoint"](
                    positions=self._doubles(action),
                    velocities=empty,
                    accelerations=empty,
                    effort=empty,
                    time_from_start=at,
                )
            )
        return t[TRAJECTORY_TYPE](
            header=self.header(stamp_ns), joint_names=list(joint_names), points=points
        )

    def joint_state_to_msg(self, names: tuple[str, ...], positions: np.ndarray, stamp_ns: int):
        """Joint positions -> sensor_msgs/JointState (no velocities or efforts)."""
        empty = self._doubles(np.zeros(0))
        return self.types[JOINT_STATE_TYPE](
            header=self.header(stamp_ns), name=list(names),
            position=self._doubles(np.asarray(positions, np.float64)), velocity=empty, effort=empty,
        )  # fmt: skip

    def joint_positions_from_msg(self, msg, names: tuple[str, ...]) -> np.ndarray:
        """sensor_msgs/JointState -> float32 positions of `names`, in that order (the message
        may list more joints, in any order); MessageError when one is missing or not finite."""
        listed = list(msg.name)
        if len(msg.position) != len(listed):
            raise MessageError(f"{len(listed)} joint names but {len(msg.position)} positions")
        index = {name: i for i, name in enumerate(listed)}
        missing = [name for name in names if name not in index]
        if missing:
            raise MessageError(f"no position for joints {missing} (the message has {listed[:20]})")
        values = np.asarray([msg.position[index[name]] for name in names], np.float32)
        if not np.all(np.isfinite(values)):
            raise MessageError(f"non-finite joint positions {values.tolist()}")
        return values

    def twist_to_msg(self, linear: np.ndarray, angular: np.ndarray, stamp_ns: int, frame_id: str):
        """Linear [3] and angular [3] velocities -> geometry_msgs/TwistStamped (what MoveIt
        Servo takes)."""
        t = self.types
        vector = t["geometry_msgs/msg/Vector3"]
        linear, angular = (np.asarray(v, np.float64) for v in (linear, angular))
        twist = t["geometry_msgs/msg/Twist"](
            linear=vector(x=float(linear[0]), y=float(linear[1]), z=float(linear[2])),
            angular=vector(x=float(angular[0]), y=float(angular[1]), z=float(angular[2])),
        )
        return t[TWIST_STAMPED_TYPE](header=self.header(stamp_ns, frame_id), twist=twist)


# --- Host --------------------------------------------------------------------------------------


class Publisher(ABC):
    @abstractmethod
    def publish(self, msg) -> None: ...

    @abstractmethod
    def subscriber_count(self) -> int: ...


class Timer(ABC):
    @abstractmethod
    def cancel(self) -> None: ...


class Host(ABC):
    """The middleware as a node sees it. Callbacks and timers run on the host's executor
    thread, one at a time; `publish` may be called from any thread."""

    node_name: str
    codec: Codec
    log: logging.Logger
    kind: ClassVar[str]
    """'rclpy' or 'cyclonedds'."""

    @abstractmethod
    def subscribe(
        self,
        topic: str,
        msgtype: str,
        callback: Callable,
        qos: QoS,
        depth: int | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """`depth` overrides the profile's history depth (a recorder that must not drop
        frames while it writes to disk keeps more). `on_error(err)` is called for each sample
        that does not deserialize (a host that can see them); the others still arrive."""

    @abstractmethod
    def publisher(self, topic: str, msgtype: str, qos: QoS) -> Publisher: ...

    @abstractmethod
    def timer(self, period_s: float, callback: Callable[[], None]) -> Timer: ...

    @abstractmethod
    def now_ns(self) -> int:
        """Wall-clock time for message stamps (ROS: the node's clock)."""

    def source_time_ns(self) -> int:
        """When the message whose callback is running was published (its DDS source
        timestamp, the writer's wall clock); now where the middleware does not say."""
        return time.time_ns()

    @abstractmethod
    def request_shutdown(self) -> None:
        """Stop spinning soon (the node asked to end, e.g. the evaluation is over)."""


# --- Nodes -------------------------------------------------------------------------------------


def stop_on_signals(host: Host) -> None:
    """SIGINT and SIGTERM, logged, end `host`'s spin; the host's run loop then deactivates and
    shuts the node down (both hosts install this instead of their middleware's handlers).

    Later SIGINTs and SIGTERMs are ignored: Ctrl-C in a terminal signals every process of the
    group and `ros2 launch` signals each node again, and one that arrived while the host was
    closing, or while Python was exiting (which restores the default handler), killed a node
    that was stopping cleanly. A node that hangs is killed by bringup or launch (SIGKILL)."""

    def on_signal(signum: int, _frame) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        host.log.info(f"{signal.Signals(signum).name}: shutting down")
        host.request_shutdown()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)


def latency_summary(samples_ms) -> dict[str, float]:
    """{'p50', 'p99', 'max', 'n'} of a window of durations in milliseconds ({} when empty)."""
    arr = np.asarray(list(samples_ms), dtype=np.float64)
    if arr.size == 0:
        return {}
    p50, p99 = np.percentile(arr, [50, 99])
    return {"p50": round(p50, 3), "p99": round(p99, 3), "max": round(arr.max(), 3), "n": arr.size}


def rss_mb(pid: int | str = "self") -> float | None:
    """Resident memory of a process in MiB (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class Counters:
    """Thread-safe named counts, reported in the node status."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))


class NodeBase:
    """Status publishing, counters, throttled logging and the lifecycle callbacks.

    Subclasses create their subscriptions in __init__ (callbacks check `self.active`) and do
    the real work in on_configure / on_activate / on_deactivate / on_cleanup / on_shutdown,
    raising an exception to fail a transition.
    """

    NAME: ClassVar[str]
    """Node name, executable name and parameter-file key."""
    CONFIG: ClassVar[type]
    """The node's parameter dataclass."""
    LIFECYCLE: ClassVar[bool] = False
    """True for a ROS 2 lifecycle node (driven by the launch file or `autostart`)."""

    def __init__(self, host: Host, config):
        self.host = host
        self.config = config
        self.log = host.log
        self.codec = host.codec
        self.state = "unconfigured"
        self.counters = Counters()
        self.exit_code = 0
        self._last_log: dict[str, float] = {}
        self.graph = os.environ.get(GRAPH_ID_ENV, "")
        """The graph this node belongs to (empty: started on its own)."""
        self._status_pub = host.publisher(STATUS_TOPIC, STATUS_MSGTYPE, QoS.LATCHED)
        host.timer(config.status_period_s, self.publish_status)

    @property
    def active(self) -> bool:
        return self.state == "active"

    def subscribe(
        self, topic: str, msgtype: str, callback: Callable, qos: QoS, depth: int | None = None
    ) -> None:
        """Subscribe with a guard: an exception in `callback` is logged and counted, and the
        node keeps running (rclpy would otherwise stop spinning)."""

        def guarded(msg):
            try:
                callback(msg)
            except Exception as err:  # the node must outlive any one bad message
                self.counters.add("callback_errors")
                self.warn_throttled(
                    f"callback:{topic}", f"error handling a message on {topic}: {err!r}\n"
                    + traceback.format_exc(limit=3)
                )  # fmt: skip

        def undecodable(err: Exception) -> None:
            self.counters.add(f"undecodable.{topic}")
            self.warn_throttled(f"undecodable:{topic}", f"dropped a sample on {topic}: {err}")

        self.host.subscribe(topic, msgtype, guarded, qos, depth, undecodable)

    def reject(self, what: str, err: Exception) -> None:
        """Count an input that was refused and say why (at most once a second per kind)."""
        self.counters.add(f"rejected.{what}")
        self.warn_throttled(f"reject:{what}", f"rejected {what}: {err}")

    def warn_throttled(self, key: str, text: str, period_s: float = 1.0) -> None:
        now = time.monotonic()
        if now - self._last_log.get(key, -period_s) >= period_s:
            self._last_log[key] = now
            self.log.warning(text)

    def status(self) -> dict[str, Any]:
        """What the node reports on /vla_rft/status; subclasses add their own facts."""
        return {
            "node": self.NAME,
            "graph": self.graph,
            "host": self.host.kind,
            "state": self.state,
            "stamp_ns": self.host.now_ns(),
            "counters": self.counters.snapshot(),
        }

    def read_event(self, msg):
        """The episode event in `msg`, or None: a malformed one is rejected (counted, logged)
        and one from another graph on the domain is counted as `foreign_events` and ignored."""
        try:
            event = parse_event(msg.data)
        except EventError as err:
            self.reject("episode_event", err)
            return None
        if event.graph and self.graph and event.graph != self.graph:
            self.counters.add("foreign_events")
            self.warn_throttled(
                "foreign", f"ignored an episode event of graph {event.graph} (this is {self.graph})"
            )
            return None
        return event

    def publish_status(self) -> None:
        self._status_pub.publish(self.codec.string_to_msg(json.dumps(self.status())))

    def set_state(self, state: str) -> None:
        """Called by the host after each successful lifecycle transition."""
        self.state = state
        self.publish_status()

    # lifecycle callbacks; raise to fail the transition
    def on_configure(self) -> None: ...

    def on_activate(self) -> None: ...

    def on_deactivate(self) -> None: ...

    def on_cleanup(self) -> None: ...

    def on_shutdown(self) -> None:
        """Last call before the process ends (also after SIGINT/SIGTERM)."""


class Lifecycle:
    """The ROS 2 lifecycle state machine, for hosts without rclpy.lifecycle.

    unconfigured --configure--> inactive --activate--> active --deactivate--> inactive
    inactive --cleanup--> unconfigured;  any --shutdown--> finalized
    """

    TRANSITIONS: ClassVar[dict[str, tuple[str, str, str]]] = {
        "configure": ("unconfigured", "inactive", "on_configure"),
        "activate": ("inactive", "active", "on_activate"),
        "deactivate": ("active", "inactive", "on_deactivate"),
        "cleanup": ("inactive", "unconfigured", "on_cleanup"),
    }

    def __init__(self, node: NodeBase):
        self.node = node

    def trigger(self, transition: str) -> bool:
        """Run one transition; False (and a logged reason) if it is not allowed or fails."""
        node = self.node
        if transition == "shutdown":
            self.shutdown()
            return True
        if transition not in self.TRANSITIONS:
            node.log.error(f"unknown lifecycle transition {transition!r}")
            return False
        start, goal, callback = self.TRANSITIONS[transition]
        if node.state != start:
            node.log.error(f"cannot {transition} from state {node.state} (needs {start})")
            return False
        try:
            getattr(node, callback)()
        except Exception as err:
            node.log.error(f"{transition} failed: {err}")
            node.counters.add(f"lifecycle.{transition}_failed")
            return False
        node.set_state(goal)
        node.log.info(f"{transition}: now {goal}")
        return True

    def shutdown(self) -> None:
        node = self.node
        if node.state == "finalized":
            return
        if node.state == "active":
            self.trigger("deactivate")
        try:
            node.on_shutdown()
        finally:
            node.set_state("finalized")
