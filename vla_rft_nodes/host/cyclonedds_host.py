"""The Cyclone DDS host: the nodes without ROS 2, on the ROS 2 wire format.

Topics are `rt/<ros topic>` with the ROS 2 type names (`vla_rft_nodes.dds_types`), the domain
is ROS_DOMAIN_ID, and the network setup comes from CYCLONEDDS_URI, as for rmw_cyclonedds_cpp;
so these nodes and ROS 2 nodes see each other. One executor thread waits on every reader and
timer and runs their callbacks one at a time, samples in the order they were written (source
timestamp), as rclpy's single-threaded executor would.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cyclonedds.core import (
    GuardCondition,
    InstanceState,
    Policy,
    Qos,
    ReadCondition,
    SampleState,
    ViewState,
    WaitSet,
)
from cyclonedds.domain import DomainParticipant
from cyclonedds.internal import InvalidSample
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from vla_rft.contract.config import ConfigError
from vla_rft.contract.constants import STRING_TYPE
from vla_rft.contract.qos import QoS
from vla_rft_nodes.configs import load_node_config
from vla_rft_nodes.dds_types import DDS_TYPES, TYPE_HASHES, dds_topic_name
from vla_rft_nodes.host.base import Codec, Host, Lifecycle, Publisher, Timer, stop_on_signals

_PROFILES = {  # reliability, durability, history depth: as rclpy's presets
    QoS.SENSOR_DATA: (Policy.Reliability.BestEffort, Policy.Durability.Volatile, 5),
    QoS.RELIABLE: (
        Policy.Reliability.Reliable(duration(milliseconds=100)),
        Policy.Durability.Volatile,
        10,
    ),
    QoS.LATCHED: (
        Policy.Reliability.Reliable(duration(milliseconds=100)),
        Policy.Durability.TransientLocal,
        1,
    ),
}


def dds_qos(profile: QoS, depth: int | None = None, msgtype: str = "") -> Qos:
    """The DDS QoS of a ROS 2 profile; with `msgtype`, its type hash in USER_DATA, as
    rmw_cyclonedds_cpp writes it (ROS 2 tools then know the endpoint's type)."""
    reliability, durability, default_depth = _PROFILES[profile]
    policies = [reliability, durability, Policy.History.KeepLast(depth or default_depth)]
    if msgtype in TYPE_HASHES:
        policies.append(Policy.Userdata(f"typehash={TYPE_HASHES[msgtype]};".encode()))
    return Qos(*policies)


_TAKE_BATCH = 64
_IDLE_WAIT_S = 0.5


def domain_id_from_env() -> int:
    """ROS_DOMAIN_ID, as ROS 2 reads it (0 when unset)."""
    raw = os.environ.get("ROS_DOMAIN_ID", "").strip()
    if not raw:
        return 0
    if not raw.isdigit() or not 0 <= int(raw) <= 232:
        raise ValueError(f"ROS_DOMAIN_ID must be an integer in [0, 232], got {raw!r}")
    return int(raw)


class _DdsPublisher(Publisher):
    def __init__(self, writer: DataWriter):
        self._writer = writer

    def publish(self, msg) -> None:
        self._writer.write(msg)

    def subscriber_count(self) -> int:
        """Matched readers. cyclonedds-python sizes an array, then fills it: a reader that
        matches in between makes it index past the end (IndexError), so count again."""
        for _ in range(100):
            try:
                return len(self._writer.get_matched_subscriptions())
            except IndexError:
                continue
        return len(self._writer.get_matched_subscriptions())


@dataclass
class _Timer(Timer):
    period_s: float
    callback: Callable[[], None]
    due: float
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Subscription:
    reader: DataReader
    callback: Callable
    topic: str
    condition: ReadCondition = field(repr=False)
    on_error: Callable[[Exception], None] | None = None


class CycloneHost(Host):
    """Host on a Cyclone DDS participant; `spin()` runs the executor until shutdown."""

    kind = "cyclonedds"

    def __init__(
        self, node_name: str, domain_id: int | None = None, remaps: dict[str, str] | None = None
    ):
        self.node_name = node_name
        self.codec = Codec(DDS_TYPES)
        self.log = logging.getLogger(node_name)
        self.remaps = dict(remaps or {})
        self._source_ns = 0  # source time of the sample being handled (source_time_ns)
        self.participant = DomainParticipant(
            domain_id_from_env() if domain_id is None else domain_id
        )
        self._waitset = WaitSet(self.participant)
        self._wake = GuardCondition(self.participant)
        self._waitset.attach(self._wake)
        self._topics: dict[str, Topic] = {}
        self._subs: list[_Subscription] = []
        self._timers: list[_Timer] = []
        self._lock = threading.Lock()
        self._shutdown = threading.Event()

    def _topic(self, ros_topic: str, msgtype: str) -> Topic:
        name = dds_topic_name(self.remaps.get(ros_topic, ros_topic))
        if msgtype not in DDS_TYPES:
            raise ValueError(f"no DDS type for {msgtype}; known: {sorted(DDS_TYPES)}")
        if name not in self._topics:
            self._topics[name] = Topic(self.participant, name, DDS_TYPES[msgtype])
        return self._topics[name]

    def subscribe(
        self,
        topic: str,
        msgtype: str,
        callback: Callable,
        qos: QoS,
        depth: int | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        reader = DataReader(
            self.participant, self._topic(topic, msgtype), qos=dds_qos(qos, depth, msgtype)
        )
        condition = ReadCondition(reader, SampleState.Any | ViewState.Any | InstanceState.Any)
        with self._lock:
            self._subs.append(_Subscription(reader, callback, topic, condition, on_error))
        self._waitset.attach(condition)
        self._wake.set(True)

    def publisher(self, topic: str, msgtype: str, qos: QoS) -> Publisher:
        return _DdsPublisher(
            DataWriter(self.participant, self._topic(topic, msgtype), dds_qos(qos, msgtype=msgtype))
        )

    def timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        if not period_s > 0:
            raise ValueError(f"timer period must be positive, got {period_s}")
        timer = _Timer(period_s, callback, time.monotonic() + period_s)
        with self._lock:
            self._timers.append(timer)
        self._wake.set(True)
        return timer

    def now_ns(self) -> int:
        return time.time_ns()

    def source_time_ns(self) -> int:
        return self._source_ns

    def request_shutdown(self) -> None:
        self._shutdown.set()
        self._wake.set(True)

    @property
    def shutting_down(self) -> bool:
        return self._shutdown.is_set()

    # --- executor ------------------------------------------------------------------------------

    def spin(self) -> None:
        """Run callbacks and timers until request_shutdown()."""
        while not self._shutdown.is_set():
            self.spin_once(_IDLE_WAIT_S)

    def spin_once(self, timeout_s: float) -> None:
        with self._lock:
            timers = [t for t in self._timers if not t.cancelled]
            self._timers = timers
            subs = list(self._subs)
        now = time.monotonic()
        wait = min([timeout_s] + [t.due - now for t in timers])
        if wait > 0:
            self._waitset.wait(duration(seconds=wait))
        self._wake.set(False)
        self._dispatch_samples(subs)
        now = time.monotonic()
        for timer in timers:
            if not timer.cancelled and timer.due <= now:
                # a timer that fell behind skips the ticks it missed (as rclpy's do)
                timer.due = max(timer.due + timer.period_s, now)
                timer.callback()

    def _dispatch_samples(self, subs: list[_Subscription]) -> None:
        batch = []
        for order, sub in enumerate(subs):
            for sample in self._take(sub):
                if not isinstance(sample, InvalidSample):
                    batch.append((sample.sample_info.source_timestamp, order, sub, sample))
        batch.sort(key=lambda item: (item[0], item[1]))
        for source_ns, _, sub, sample in batch:
            self._source_ns = source_ns
            sub.callback(sample)

    def _take(self, sub: _Subscription) -> list:
        """Up to _TAKE_BATCH samples, taken one at a time: a sample that does not deserialize
        (a foreign or broken writer) is taken, reported to on_error and skipped alone."""
        samples = []
        for _ in range(_TAKE_BATCH):
            try:
                taken = sub.reader.take(N=1)
            except Exception as err:
                if sub.on_error is None:
                    self.log.warning(f"dropped an undecodable sample on {sub.topic}: {err}")
                else:
                    sub.on_error(err)
                continue
            if not taken:
                break
            samples += taken
        return samples

    def close(self) -> None:
        """Delete the participant (remote nodes see its readers and writers go at once)."""
        with self._lock:
            self._subs.clear()
            self._timers.clear()
        self._topics.clear()
        participant, self.participant = self.participant, None
        if participant is not None:
            participant.__del__()  # deletes its readers and writers in the C library now


# --- running a node ------------------------------------------------------------------------------

LIFECYCLE_COMMANDS = ("configure", "activate", "deactivate", "cleanup", "shutdown")


def lifecycle_topic(node_name: str) -> str:
    """Where the Cyclone DDS host takes lifecycle commands (std_msgs/String), standing in for
    the ROS 2 change_state service: `/<node>/lifecycle`."""
    return f"/{node_name}/lifecycle"


def build_parser(node_cls) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=node_cls.NAME,
        description=f"{(node_cls.__doc__ or '').strip().splitlines()[0]} (Cyclone DDS host; "
        "ROS_DOMAIN_ID and CYCLONEDDS_URI as for ROS 2)",
    )
    p.add_argument("--params-file", type=Path, help="ROS 2 parameter file (config/*.yaml)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a parameter"
    )
    p.add_argument("--name", default=node_cls.NAME, help="node name (its parameter-file key)")
    p.add_argument(
        "-r", "--remap", action="append", default=[], metavar="FROM:=TO", help="remap a topic"
    )
    p.add_argument("--domain-id", type=int, help="DDS domain (default: ROS_DOMAIN_ID or 0)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def _parse_remaps(items: list[str]) -> dict[str, str]:
    remaps = {}
    for item in items:
        src, sep, dst = item.partition(":=")
        if not sep or not src.startswith("/") or not dst.startswith("/"):
            raise ConfigError(f"remap {item!r} is not of the form /from:=/to")
        remaps[src] = dst
    return remaps


def run(node_cls, argv: list[str]) -> int:
    """Parse arguments, build the node's config and host, drive the lifecycle, spin.

    SIGINT and SIGTERM end the spin; the node is then deactivated and shut down, so that
    e.g. the recorder closes its episode. Returns the node's exit code (2 for bad parameters,
    1 when a node that autostarts fails to configure or activate)."""
    args = build_parser(node_cls).parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format=f"[%(levelname)s] [%(asctime)s] [{args.name}]: %(message)s",
    )
    log = logging.getLogger(args.name)
    try:
        config = load_node_config(node_cls.CONFIG, args.params_file, args.name, args.set)
        remaps = _parse_remaps(args.remap)
        host = CycloneHost(args.name, args.domain_id, remaps)
    except (ConfigError, ValueError) as err:
        log.error(f"bad parameters: {err}")
        return 2
    stop_on_signals(host)
    node = node_cls(host, config)
    lifecycle = Lifecycle(node)
    host.subscribe(
        lifecycle_topic(args.name),
        STRING_TYPE,
        lambda msg: lifecycle.trigger(msg.data.strip()),
        QoS.RELIABLE,
    )
    try:
        autostart = getattr(config, "autostart", True)
        if autostart and not (lifecycle.trigger("configure") and lifecycle.trigger("activate")):
            node.exit_code = 1
            host.request_shutdown()
        host.spin()
    finally:
        lifecycle.shutdown()
        host.close()
    return node.exit_code
