"""An in-memory host for node unit tests: no DDS, every message through a CDR round trip."""

from __future__ import annotations

import logging
import time
from collections import defaultdict

import numpy as np

from vla_rft.contract.constants import ACTION_TOPIC
from vla_rft_nodes.dds_types import DDS_TYPES
from vla_rft_nodes.host.base import Codec, Host, Publisher, Timer


class MemoryHost(Host):
    """Delivers messages by calling the callbacks (after a CDR round trip); records publishes."""

    kind = "memory"

    def __init__(self):
        self.node_name = "test"
        self.codec = Codec(DDS_TYPES)
        self.log = logging.getLogger("memory-host")
        self.subs = defaultdict(list)
        self.published = defaultdict(list)

    def subscribe(self, topic, msgtype, callback, qos, depth=None, on_error=None):
        self.subs[topic].append(callback)

    def publisher(self, topic, msgtype, qos):
        sink = self.published[topic]

        class _Pub(Publisher):
            def publish(self, msg):
                sink.append(msg)

            def subscriber_count(self):
                return 1

        return _Pub()

    def timer(self, period_s, callback):
        class _Timer(Timer):
            def cancel(self):
                pass

        return _Timer()

    def now_ns(self):
        return time.time_ns()

    def request_shutdown(self):
        pass

    def deliver(self, topic, msg, source_ns=None):
        """Call `topic`'s callbacks with `msg` as it would arrive, published at `source_ns`
        (default: now)."""
        wire = type(msg).deserialize(msg.serialize())
        self._source_ns = self.now_ns() if source_ns is None else source_ns
        for callback in self.subs[topic]:
            callback(wire)

    def source_time_ns(self):
        return self._source_ns

    def actions(self):
        return [np.asarray(m.data, np.float32) for m in self.published[ACTION_TOPIC]]


def active_recorder(out_dir, **overrides):
    """(host, recorder node, its lifecycle): a recorder writing to `out_dir`, configured and
    active on a MemoryHost."""
    from vla_rft_nodes.configs import RecorderNodeConfig
    from vla_rft_nodes.host.base import Lifecycle
    from vla_rft_nodes.recorder_node import RecorderNode

    host = MemoryHost()
    node = RecorderNode(host, RecorderNodeConfig(out_dir=str(out_dir), **overrides))
    lifecycle = Lifecycle(node)
    assert lifecycle.trigger("configure") and lifecycle.trigger("activate")
    return host, node, lifecycle
