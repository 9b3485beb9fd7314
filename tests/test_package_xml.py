"""package.xml declares what the ROS 2 side imports, and only tests that exist (rosdep and
colcon read it: an undeclared package is missing on a robot installed from it)."""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROS_SIDE = (
    REPO / "launch" / "bringup.launch.py",
    REPO / "vla_rft_nodes" / "host" / "rclpy_host.py",
)
NOT_ROS_PACKAGES = {"vla_rft", "vla_rft_nodes", "numpy", "os", "__future__"}
"""Top-level imports of those files that are not ROS 2 packages (Python's own or ours)."""
LINTERS = {"ament_copyright", "ament_flake8", "ament_pep257", "ament_lint_auto"}


def _depends(kind: str) -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    return {e.text.strip() for e in root.iter(kind)}


def _ros_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names - NOT_ROS_PACKAGES - set(sys.stdlib_module_names)


def test_every_ros_package_the_launch_file_and_the_rclpy_host_import_is_an_exec_depend():
    imported = set().union(*(_ros_imports(p) for p in ROS_SIDE))
    assert {"rclpy", "launch_ros", "lifecycle_msgs", "ament_index_python"} <= imported
    assert imported - _depends("exec_depend") == set()


def test_no_linter_is_declared_without_a_test_that_runs_it():
    declared = _depends("test_depend") & LINTERS
    tests = "\n".join(p.read_text() for p in (REPO / "tests").glob("test_*.py"))
    assert {linter for linter in declared if f"import {linter}" not in tests} == set()
