"""ROS 2 nodes of vla_rft: policy, episode recorder, simulated robot, evaluation manager.

The node logic (`*_node.py`, `safety.py`, `inference.py`, `events.py`) is written once against
`host.base.Host` and runs on two hosts: rclpy on a ROS 2 robot (`host/rclpy_host.py`) and
Cyclone DDS, wire-compatible with ROS 2, where ROS 2 is not installed
(`host/cyclonedds_host.py`). Parameters are the dataclasses of `configs.py`, read from the same
ROS 2 parameter files by both. `bringup.py` is `vla-rft bringup`. See docs/NODES.md.
"""
