"""Running things under a real ROS 2: the sourced environment, the colcon-built package, `ros2`
commands. The test process itself stays unsourced (its nodes use the Cyclone DDS host); what
needs ROS 2 runs in a child process with `ros2_env()` (vla_rft_nodes/host/ros2_env.py finds it).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vla_rft_nodes.domain import LOOPBACK_CYCLONEDDS
from vla_rft_nodes.host.ros2_env import ros2_prefix, sourced_env

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FILES = (
    "setup.py", "setup.cfg", "pyproject.toml", "package.xml", "README.md",
    "resource", "launch", "config", "vla_rft", "vla_rft_nodes",
)  # fmt: skip
"""What colcon needs of the repository to build the package (no data, runs or models)."""


requires_ros2 = pytest.mark.skipif(
    ros2_prefix() is None,
    reason="ROS 2 is not installed (scripts/install_ros2.sh builds it into /opt/ros/jazzy)",
)


def ros2_env(*overlays: Path) -> dict[str, str]:
    """A child's environment: ROS 2 (and each overlay's setup.bash) sourced, this project's
    Python first on PATH, rmw_cyclonedds_cpp on loopback. The DDS domain and CYCLONEDDS_URI are
    this process's when set (the `dds` fixture's, so that its Cyclone DDS host and the ROS 2
    processes meet), else a random domain on loopback."""
    env = sourced_env(*overlays)
    env.update(
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        CYCLONEDDS_URI=os.environ.get("CYCLONEDDS_URI", LOOPBACK_CYCLONEDDS),
        ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID", str(random.randint(100, 230))),
        PYTHONUNBUFFERED="1",
        MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"),
    )
    env.pop("VLA_RFT_HOST", None)
    return env


def copy_package(dest: Path) -> Path:
    """The package's files (PACKAGE_FILES) copied to dest/src/vla_rft; returns the workspace."""
    src = dest / "src" / "vla_rft"
    src.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in PACKAGE_FILES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    return dest


def tool_venv(name: str, requirements: tuple[str, ...]) -> Path:
    """The python of a venv with `requirements` (e.g. colcon with another setuptools), made
    once under ~/.cache/vla_rft/ and reused."""
    venv = Path.home() / ".cache" / "vla_rft" / name
    python = venv / "bin" / "python"
    stamp = venv / "requirements.txt"
    if not python.exists() or stamp.read_text() != "\n".join(requirements):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             *requirements], check=True,
        )  # fmt: skip
        stamp.write_text("\n".join(requirements))
    return python


def colcon_build(workspace: Path, env: dict[str, str], python: Path | None = None, *args: str):
    """`colcon build` in `workspace` with the colcon beside `python` (default: this
    environment's); returns the CompletedProcess (stdout and stderr together)."""
    colcon = (python or Path(sys.executable)).parent / "colcon"
    return subprocess.run(
        [str(colcon), "build", "--packages-select", "vla_rft", *args],
        cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=600,
    )  # fmt: skip
