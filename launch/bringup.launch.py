"""Bring up the vla_rft graph on ROS 2: the policy node, the recorder and, in simulation, the
simulated robot and the evaluation manager.

    ros2 launch vla_rft bringup.launch.py use_sim:=true policy_model:=/path/to/models/current
    ros2 launch vla_rft bringup.launch.py use_sim:=false record:=true backend:=tensorrt

The policy node is a lifecycle node: this file configures it and, once it is inactive,
activates it (`ros2 lifecycle set /policy_node deactivate` holds the robot). The parameters come
from `params_file` (default: this package's config/bringup.yaml, the same file
`vla-rft bringup` reads); the launch arguments override the policy's model and backend. In
simulation the evaluation manager runs its episodes, writes the report and exits, which ends the
launch.
"""

import os
import uuid

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    RegisterEventHandler,
    SetEnvironmentVariable,
    Shutdown,
)
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription
from vla_rft.contract.constants import GRAPH_ID_ENV

PACKAGE = "vla_rft"


def _on_exit(name: str, ends_the_run: bool):
    """What the launch does when node `name` exits: an error status (or a signal) is raised,
    which makes `ros2 launch` shut the graph down and exit 1; a clean exit of the node that
    ends the run (the evaluation manager) shuts the graph down."""

    def on_exit(event, context):
        if event.returncode != 0:
            raise RuntimeError(f"{name} exited with status {event.returncode}")
        if ends_the_run:
            return [Shutdown(reason=f"{name} finished")]
        return None

    return on_exit


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "bringup.yaml")
    use_sim = LaunchConfiguration("use_sim")
    policy_model = LaunchConfiguration("policy_model")
    backend = LaunchConfiguration("backend")
    record = LaunchConfiguration("record")
    params_file = LaunchConfiguration("params_file")

    arguments = [
        DeclareLaunchArgument(
            "use_sim", default_value="true",
            description="run the simulated robot and the evaluation manager",
        ),
        DeclareLaunchArgument(
            "policy_model", default_value="models/current",
            description="exported policy package (or checkpoint for the torch backend)",
        ),
        DeclareLaunchArgument(
            "backend", default_value="auto",
            description="inference backend: auto, onnxruntime, tensorrt or torch",
        ),
        DeclareLaunchArgument(
            "record", default_value="true", description="record every episode (recorder node)"
        ),
        DeclareLaunchArgument(
            "params_file", default_value=default_params, description="node parameter file"
        ),
    ]  # fmt: skip

    policy_node = LifecycleNode(
        package=PACKAGE,
        executable="policy_node",
        name="policy_node",
        namespace="",
        output="screen",
        parameters=[
            params_file,
            {"model_path": policy_model, "backend": backend, "autostart": False},
        ],
    )
    recorder_node = Node(
        package=PACKAGE,
        executable="recorder_node",
        name="recorder_node",
        output="screen",
        parameters=[params_file],
        condition=IfCondition(record),
    )
    sim_robot_node = Node(
        package=PACKAGE,
        executable="sim_robot_node",
        name="sim_robot_node",
        output="screen",
        parameters=[params_file],
        condition=IfCondition(use_sim),
    )
    # the evaluation manager waits for the recorder only when there is one
    eval_managers = [
        Node(
            package=PACKAGE,
            executable="eval_manager_node",
            name="eval_manager_node",
            output="screen",
            parameters=[params_file, {"wait_for_nodes": wait_for}],
            condition=IfCondition(
                PythonExpression(
                    [
                        "'",
                        use_sim,
                        "'.lower() == 'true' and '",
                        record,
                        f"'.lower() == '{recording}'",
                    ]
                )
            ),
        )
        for recording, wait_for in (
            ("true", ["sim_robot_node", "policy_node", "recorder_node"]),
            ("false", ["sim_robot_node", "policy_node"]),
        )
    ]

    # like `vla-rft bringup`: when the evaluation is over, the whole graph stops; a node that
    # exits with an error ends the launch with a non-zero status
    exit_handlers = [
        RegisterEventHandler(
            OnProcessExit(target_action=node, on_exit=_on_exit(name, name == "eval_manager_node"))
        )
        for name, node in (
            ("policy_node", policy_node),
            ("recorder_node", recorder_node),
            ("sim_robot_node", sim_robot_node),
            *(("eval_manager_node", manager) for manager in eval_managers),
        )
    ]

    configure = EmitEvent(
        event=ChangeState(
            lifecycle_node_matcher=matches_action(policy_node),
            transition_id=Transition.TRANSITION_CONFIGURE,
        )
    )
    activate_when_inactive = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=policy_node,
            start_state="configuring",
            goal_state="inactive",
            entities=[
                EmitEvent(
                    event=ChangeState(
                        lifecycle_node_matcher=matches_action(policy_node),
                        transition_id=Transition.TRANSITION_ACTIVATE,
                    )
                )
            ],
        )
    )

    return LaunchDescription(
        [
            *arguments,
            # one id for this graph's nodes: their status and events carry it (docs/NODES.md)
            SetEnvironmentVariable(GRAPH_ID_ENV, uuid.uuid4().hex[:8]),
            activate_when_inactive,
            *exit_handlers,
            policy_node,
            recorder_node,
            sim_robot_node,
            *eval_managers,
            configure,
        ]
    )
