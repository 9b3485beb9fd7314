"""The DDS domain a graph runs on, as `vla-rft bringup` and the operator's commands see it.

    env = graph_env(domain_id=None)        # the settings bringup gives its nodes
    with DomainClient(env) as domain:
        domain.statuses(1.5)               # {node: its latest status} of every vla_rft node
        domain.send(topic, msgtype, msg, QoS.LATCHED)   # -> readers that matched

Discovery and data stay on loopback unless CYCLONEDDS_URI says otherwise; the domain is
ROS_DOMAIN_ID (or the one given). A tool that used Cyclone DDS's defaults instead would miss
the graph without an error: use these.
"""

from __future__ import annotations

import json
import os
import time

from vla_rft.contract.constants import STATUS_MSGTYPE, STATUS_TOPIC
from vla_rft.contract.qos import QoS

LOOPBACK_CYCLONEDDS = (
    "<CycloneDDS><Domain Id='any'><General><Interfaces><NetworkInterface name='lo'/>"
    "</Interfaces><AllowMulticast>false</AllowMulticast></General><Discovery><Peers>"
    "<Peer address='127.0.0.1'/></Peers><ParticipantIndex>auto</ParticipantIndex>"
    "<MaxAutoParticipantIndex>40</MaxAutoParticipantIndex></Discovery></Domain></CycloneDDS>"
)
"""Discovery and data on loopback only (unicast to 127.0.0.1, no multicast)."""
MATCH_WAIT_S = 3.0
"""How long a sender waits for the graph's readers to match before it reports none."""


def graph_env(domain_id: int | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a graph's processes: Cyclone DDS host, loopback DDS unless
    CYCLONEDDS_URI is set, and `domain_id` (else ROS_DOMAIN_ID, else 0)."""
    env = {**(os.environ if base is None else base), "VLA_RFT_HOST": "cyclonedds"}
    env.setdefault("CYCLONEDDS_URI", LOOPBACK_CYCLONEDDS)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("ROS_DOMAIN_ID", "0")
    return env


def describe(env: dict[str, str]) -> str:
    """'DDS domain N (loopback only)' for people."""
    dds = "loopback only" if env["CYCLONEDDS_URI"] == LOOPBACK_CYCLONEDDS else "CYCLONEDDS_URI"
    return f"DDS domain {env['ROS_DOMAIN_ID']} ({dds})"


class DomainClient:
    """A short-lived participant on the graph's domain, for bringup's check and `vla-rft op`."""

    def __init__(self, env: dict[str, str], name: str = "vla_rft_op"):
        os.environ["CYCLONEDDS_URI"] = env["CYCLONEDDS_URI"]  # read when the participant is made
        from vla_rft_nodes.host.cyclonedds_host import CycloneHost

        self.host = CycloneHost(name, domain_id=int(env["ROS_DOMAIN_ID"]))
        self._statuses: dict[str, dict] = {}
        self.host.subscribe(STATUS_TOPIC, STATUS_MSGTYPE, self._keep, QoS.LATCHED, depth=50)

    def _keep(self, msg) -> None:
        try:
            status = json.loads(msg.data)
            self._statuses[str(status["node"])] = status
        except (ValueError, KeyError, TypeError):
            self._statuses["(a node with an unreadable status)"] = {}

    def spin(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.host.spin_once(min(0.05, max(0.0, deadline - time.monotonic())))

    def statuses(self, seconds: float) -> dict[str, dict]:
        """{node: its newest status} heard within `seconds` (latched: live nodes answer at once)."""
        self.spin(seconds)
        return dict(self._statuses)

    def wait_for(self, predicate, seconds: float) -> bool:
        """Spin until `predicate(statuses)` holds or `seconds` pass."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if predicate(self._statuses):
                return True
            self.spin(0.05)
        return bool(predicate(self._statuses))

    def send(self, topic: str, msgtype: str, msg, qos: QoS) -> int:
        """Publish `msg` once its readers have matched (at most MATCH_WAIT_S); the number of
        readers it reached (0: nobody on the domain reads `topic`)."""
        publisher = self.host.publisher(topic, msgtype, qos)
        deadline = time.monotonic() + MATCH_WAIT_S
        while publisher.subscriber_count() == 0 and time.monotonic() < deadline:
            self.spin(0.05)
        readers = publisher.subscriber_count()
        publisher.publish(msg)
        self.spin(0.3)  # reliable delivery completes while the writer lives
        return readers

    def close(self) -> None:
        self.host.close()

    def __enter__(self) -> DomainClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
