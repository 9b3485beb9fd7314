"""The node table: every node of the graph, once, in start order.

setup.py's console scripts and `vla-rft bringup`'s processes are made from it;
tests/test_nodes_launch.py checks the launch file, config/bringup.yaml and
`configs.NODE_CONFIGS` against it. Standard library only: setup.py reads this file on its own.
"""

POLICY_NODE = "policy_node"
"""The policy node's name: other nodes and `vla-rft op` find its status by it."""

NODES = {
    "sim_robot_node": "vla_rft_nodes.sim_robot_node",
    "recorder_node": "vla_rft_nodes.recorder_node",
    POLICY_NODE: "vla_rft_nodes.policy_node",
    "eval_manager_node": "vla_rft_nodes.eval_manager_node",
}
"""Node name (= executable name) -> the module whose `main()` runs it."""


def console_scripts() -> list[str]:
    """setup.py's `console_scripts` entries of the nodes."""
    return [f"{name} = {module}:main" for name, module in NODES.items()]
