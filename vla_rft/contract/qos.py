"""The three QoS profiles the graph uses, as rclpy's presets define them. Each host turns them
into its own QoS objects; the episode store records them as the QoS a bag offers on replay."""

from __future__ import annotations

import enum


class QoS(enum.Enum):
    """A topic's delivery contract."""

    SENSOR_DATA = "sensor_data"
    """Best effort, keep last 5, volatile: camera frames and robot state (ROS sensor data)."""
    RELIABLE = "reliable"
    """Reliable, keep last 10, volatile: actions, events, e-stop (ROS default)."""
    LATCHED = "latched"
    """Reliable, keep last 1, transient local: the instruction and node status."""

    @property
    def reliable(self) -> bool:
        return self is not QoS.SENSOR_DATA

    @property
    def transient_local(self) -> bool:
        return self is QoS.LATCHED

    @property
    def depth(self) -> int:
        return {QoS.SENSOR_DATA: 5, QoS.RELIABLE: 10, QoS.LATCHED: 1}[self]
