"""The policy node's ROS 2 arm interfaces (vla_rft_nodes/robot_interfaces.py): JointState in;
TwistStamped, Float64MultiArray and JointTrajectory out. Message content here; the closed loop
under real ROS 2 is in tests/test_ros2.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vla_rft.contract.config import ConfigError
from vla_rft.data.messages import MessageError
from vla_rft_nodes.configs import PolicyNodeConfig
from vla_rft_nodes.dds_types import DDS_TYPES
from vla_rft_nodes.host.base import Codec
from vla_rft_nodes.robot_interfaces import command_msg, read_state

CODEC = Codec(DDS_TYPES)
ARM_JOINTS = ("shoulder", "elbow", "wrist", "finger")


def _config(**changes) -> PolicyNodeConfig:
    return dataclasses.replace(PolicyNodeConfig(), **changes)


def test_joint_state_positions_are_picked_by_name_in_the_policy_order():
    config = _config(state_msg="joint_state", state_joint_names=("elbow", "shoulder", "wrist", "x"))
    msg = CODEC.joint_state_to_msg(
        ("x", "shoulder", "extra", "wrist", "elbow"), np.array([9.0, 1.0, 7.0, 3.0, 2.0]), 5
    )
    np.testing.assert_array_equal(read_state(CODEC, config, msg), [2.0, 1.0, 3.0, 9.0])


@pytest.mark.parametrize(
    "names, positions, match",
    [
        (("shoulder", "elbow", "wrist"), [1.0, 2.0, 3.0], "no position for joints"),
        (("shoulder", "elbow", "wrist", "finger"), [1.0, 2.0, 3.0], "4 joint names but 3"),
        (ARM_JOINTS, [1.0, float("nan"), 3.0, 4.0], "non-finite"),
    ],
    ids=["missing joint", "short positions", "nan"],
)
def test_a_joint_state_that_does_not_fit_is_a_message_error(names, positions, match):
    config = _config(state_msg="joint_state", state_joint_names=ARM_JOINTS)
    msg = CODEC.joint_state_to_msg(names, np.zeros(len(names)), 0)
    msg.position = list(positions)
    with pytest.raises(MessageError, match=match):
        read_state(CODEC, config, msg)


def test_twist_stamped_drives_the_named_axes_with_the_scale():
    config = _config(
        command_msg="twist_stamped", command_axes=("linear.x", "linear.y", "angular.z", ""),
        command_scale=(0.1, 0.2, 0.5, 1.0), command_frame_id="tool0",
    )  # fmt: skip
    msg = command_msg(CODEC, config, np.array([1.0, -0.5, 0.4, 0.9], np.float32), 7 * 10**9 + 3)
    assert (msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z) == pytest.approx(
        (0.1, -0.1, 0.0)
    )
    assert (msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z) == pytest.approx(
        (0.0, 0.0, 0.2)
    )
    assert msg.header.frame_id == "tool0" and CODEC.stamp_ns(msg) == 7 * 10**9 + 3


def test_float64_array_is_the_scaled_action():
    config = _config(command_msg="float64_array", command_scale=(2.0, 2.0, 2.0, 1.0))
    msg = command_msg(CODEC, config, np.array([0.5, -0.25, 0.0, 1.0]), 0)
    assert list(msg.data) == [1.0, -0.5, 0.0, 1.0]
    assert msg.layout.dim[0].size == 4


def test_joint_trajectory_names_the_joints_and_times_the_point():
    config = _config(
        command_msg="joint_trajectory", command_joint_names=ARM_JOINTS, command_time_s=0.25
    )
    msg = command_msg(CODEC, config, np.array([0.1, 0.2, 0.3, 0.4]), 11)
    assert list(msg.joint_names) == list(ARM_JOINTS)
    (point,) = msg.points
    assert list(point.positions) == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert (point.time_from_start.sec, point.time_from_start.nanosec) == (0, 250_000_000)


def test_no_command_message_by_default():
    assert command_msg(CODEC, PolicyNodeConfig(), np.zeros(4), 0) is None


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"state_msg": "joint_states"}, "state_msg must be one of"),
        ({"state_msg": "joint_state"}, "needs state_dim \\(4\\) state_joint_names"),
        ({"command_msg": "twist"}, "command_msg must be one of"),
        ({"command_msg": "twist_stamped"}, "command_axes"),
        (
            {"command_msg": "twist_stamped", "command_axes": ("linear.x", "linear.x", "", "")},
            "drives an axis twice",
        ),
        (
            {"command_msg": "twist_stamped", "command_axes": ("linear.q", "", "", "")},
            "command_axes",
        ),
        ({"command_msg": "joint_trajectory"}, "command_joint_names"),
        (
            {"command_msg": "joint_trajectory", "command_joint_names": ARM_JOINTS,
             "command_time_s": 0.0},
            "command_time_s must be > 0",
        ),
        ({"command_scale": (1.0, 2.0)}, "command_scale has 2 entries"),
    ],
)  # fmt: skip
def test_interface_parameters_that_do_not_fit_are_refused_at_configure(changes, match):
    with pytest.raises(ConfigError, match=match):
        _config(**changes)
