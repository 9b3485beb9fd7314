"""The two hosts the nodes run on, and `run_node`, which picks one.

rclpy when it can be imported (a sourced ROS 2), else Cyclone DDS; VLA_RFT_HOST=cyclonedds or
VLA_RFT_HOST=rclpy forces the choice.
"""

from __future__ import annotations

import os
import sys

from vla_rft_nodes.host.base import Codec, Host, Lifecycle, NodeBase

HOSTS = ("rclpy", "cyclonedds")


def choose_host() -> str:
    """'rclpy' or 'cyclonedds', from VLA_RFT_HOST or from whether rclpy imports."""
    forced = os.environ.get("VLA_RFT_HOST", "").strip()
    if forced:
        if forced not in HOSTS:
            raise ValueError(f"VLA_RFT_HOST must be one of {HOSTS}, got {forced!r}")
        return forced
    try:
        import rclpy  # noqa: F401
    except ImportError:
        return "cyclonedds"
    return "rclpy"


def run_node(node_cls, argv: list[str] | None = None) -> int:
    """Run a node class on the chosen host until shutdown; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if choose_host() == "rclpy":
        from vla_rft_nodes.host import rclpy_host

        return rclpy_host.run(node_cls, [sys.argv[0], *argv])
    from vla_rft_nodes.host import cyclonedds_host

    return cyclonedds_host.run(node_cls, argv)


__all__ = ["HOSTS", "Codec", "Host", "Lifecycle", "NodeBase", "choose_host", "run_node"]
