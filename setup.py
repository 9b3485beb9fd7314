"""ament_python entry point: colcon builds the package `vla_rft` from this file.

pip reads the rest of the metadata (dependencies, extras) from pyproject.toml; the console
scripts (the nodes' from vla_rft_nodes/node_table.py) and the ROS 2 data files are declared
here, once, for both.
"""

import runpy
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "vla_rft"
NODE_TABLE = runpy.run_path(str(Path(__file__).parent / "vla_rft_nodes" / "node_table.py"))

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["vla_rft", "vla_rft.*", "vla_rft_nodes", "vla_rft_nodes.*"]),
    package_data={"vla_rft.contract": ["embodiments/*.yaml"]},
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
            *NODE_TABLE["console_scripts"](),
        ],
    },
)
