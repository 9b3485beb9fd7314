"""How the policy node talks to a ROS 2 arm: the state it reads and the command it sends, chosen
by parameters (`state_msg`, `command_msg`). The raw action vector always goes out on
/vla_rft/action as well (the recorder and the simulated robot read it).

    state_msg       what arrives on /vla_rft/state (remap it, e.g. to /joint_states)
      float32_array   std_msgs/Float32MultiArray: the policy's state vector as it is
      joint_state     sensor_msgs/JointState: the positions of `state_joint_names`, in that order

    command_msg     what the node also publishes on /vla_rft/command for every action and hold
      none            nothing
      twist_stamped   geometry_msgs/TwistStamped for end-effector-delta policies (MoveIt Servo,
                      remap to /servo_node/delta_twist_cmds): action dimension d drives
                      `command_axes[d]` ('linear.x' ... 'angular.z', or '' for none), scaled by
                      `command_scale[d]`
      float64_array   std_msgs/Float64MultiArray, the scaled action (ros2_control forward command
                      controllers, remap to /<controller>/commands)
      joint_trajectory  trajectory_msgs/JointTrajectory, one point: the scaled action as positions
                      of `command_joint_names`, reached `command_time_s` later (the joint
                      trajectory controller, remap to /<controller>/joint_trajectory)
"""

from __future__ import annotations

import numpy as np

from vla_rft.contract.constants import (
    DOUBLES_TYPE,
    FLOATS_TYPE,
    JOINT_STATE_TYPE,
    TRAJECTORY_TYPE,
    TWIST_STAMPED_TYPE,
)
from vla_rft_nodes.host.base import Codec

COMMAND_TOPIC = "/vla_rft/command"
STATE_MSGS = {"float32_array": FLOATS_TYPE, "joint_state": JOINT_STATE_TYPE}
"""state_msg -> the ROS 2 type read on /vla_rft/state."""
COMMAND_MSGS = {
    "none": None,
    "twist_stamped": TWIST_STAMPED_TYPE,
    "float64_array": DOUBLES_TYPE,
    "joint_trajectory": TRAJECTORY_TYPE,
}
"""command_msg -> the ROS 2 type published on COMMAND_TOPIC."""
TWIST_AXES = ("linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z")


def check_interfaces(config, spec) -> None:
    """ValueError when the state/command parameters of a PolicyNodeConfig do not fit together
    (called from its __post_init__)."""
    c = config
    if c.state_msg not in STATE_MSGS:
        raise ValueError(f"state_msg must be one of {sorted(STATE_MSGS)}, got {c.state_msg!r}")
    if c.state_msg == "joint_state" and len(c.state_joint_names) != spec.state_dim:
        raise ValueError(
            f"state_msg joint_state needs state_dim ({spec.state_dim}) state_joint_names, "
            f"got {list(c.state_joint_names)}"
        )
    if c.command_msg not in COMMAND_MSGS:
        raise ValueError(
            f"command_msg must be one of {sorted(COMMAND_MSGS)}, got {c.command_msg!r}"
        )
    if c.command_scale and len(c.command_scale) != spec.action_dim:
        raise ValueError(
            f"command_scale has {len(c.command_scale)} entries but action_dim is {spec.action_dim}"
        )
    if c.command_msg == "twist_stamped":
        axes = [a for a in c.command_axes if a]
        if len(c.command_axes) != spec.action_dim or not set(axes) <= set(TWIST_AXES):
            raise ValueError(
                f"command_msg twist_stamped needs one of {TWIST_AXES} or '' per action "
                f"dimension ({spec.action_dim}) in command_axes, got {list(c.command_axes)}"
            )
        if len(set(axes)) != len(axes):
            raise ValueError(f"command_axes drives an axis twice: {list(c.command_axes)}")
    if c.command_msg == "joint_trajectory":
        if len(c.command_joint_names) != spec.action_dim:
            raise ValueError(
                f"command_msg joint_trajectory needs action_dim ({spec.action_dim}) "
                f"command_joint_names, got {list(c.command_joint_names)}"
            )
        if not c.command_time_s > 0:
            raise ValueError(f"command_time_s must be > 0, got {c.command_time_s}")


def read_state(codec: Codec, config, msg) -> np.ndarray:
    """The policy's state vector from a /vla_rft/state message; MessageError when it does not
    fit."""
    if config.state_msg == "joint_state":
        return codec.joint_positions_from_msg(msg, tuple(config.state_joint_names))
    return codec.floats_from_msg(msg, config.spec.state_dim)


def command_msg(codec: Codec, config, action: np.ndarray, stamp_ns: int):
    """The /vla_rft/command message for one action (or hold), or None for command_msg none."""
    kind = config.command_msg
    if kind == "none":
        return None
    scaled = np.asarray(action, np.float64) * (
        np.asarray(config.command_scale, np.float64) if config.command_scale else 1.0
    )
    if kind == "twist_stamped":
        twist = np.zeros(6)
        for value, axis in zip(scaled, config.command_axes, strict=True):
            if axis:
                twist[TWIST_AXES.index(axis)] = value
        return codec.twist_to_msg(twist[:3], twist[3:], stamp_ns, config.command_frame_id)
    if kind == "float64_array":
        return codec.doubles_to_msg(scaled, config.spec.action_names)
    return codec.trajectory_to_msg(
        scaled[None], tuple(config.command_joint_names), 0.0, stamp_ns,
        start_s=config.command_time_s,
    )  # fmt: skip
