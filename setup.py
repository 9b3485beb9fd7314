"""ament_python entry point: colcon builds the package `vla_rft` from this file.

pip reads the rest of the metadata (dependencies, extras) from pyproject.toml; the console
scripts and the ROS 2 data files are declared here, once, for both.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "vla_rft"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["vla_rft", "vla_rft.*", "vla_rft_nodes", "vla_rft_nodes.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    python_requires=">=3.10",
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "vla-rft = vla_rft.cli:main",
            "policy_node = vla_rft_nodes.policy_node:main",
            "recorder_node = vla_rft_nodes.recorder_node:main",
            "sim_robot_node = vla_rft_nodes.sim_robot_node:main",
            "eval_manager_node = vla_rft_nodes.eval_manager_node:main",
        ],
    },
)
