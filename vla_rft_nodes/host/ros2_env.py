"""Finding a ROS 2 installation and the environment its setup.bash makes, for tools that start
ROS 2 processes from an unsourced Python (the tests, the benchmarks).

ROS 2 is looked for at $VLA_RFT_ROS2_PREFIX, /opt/ros/jazzy, /opt/ros/humble
(`scripts/install_ros2.sh` builds Jazzy into /opt/ros/jazzy).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

ROS2_PREFIXES = ("/opt/ros/jazzy", "/opt/ros/humble")


def ros2_prefix() -> Path | None:
    """Where ROS 2 is installed, or None."""
    for candidate in filter(None, (os.environ.get("VLA_RFT_ROS2_PREFIX", ""), *ROS2_PREFIXES)):
        if (Path(candidate) / "setup.bash").is_file():
            return Path(candidate)
    return None


@functools.cache
def _sourced(scripts: tuple[str, ...]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AMENT_", "COLCON_"))}
    command = " && ".join(f"source {s}" for s in scripts) + " && env -0"
    out = subprocess.run(["bash", "-c", command], env=base, check=True, capture_output=True)
    return dict(line.split("=", 1) for line in out.stdout.decode().split("\0") if "=" in line)


def sourced_env(*overlays: Path) -> dict[str, str]:
    """This environment after sourcing ROS 2's setup.bash and each overlay's, with this Python's
    bin directory first on PATH (the ROS 2 scripts and the node scripts run `python3` from PATH)
    and rmw_cyclonedds_cpp. RuntimeError when no ROS 2 is installed."""
    prefix = ros2_prefix()
    if prefix is None:
        raise RuntimeError("no ROS 2 found (scripts/install_ros2.sh builds Jazzy)")
    env = dict(_sourced(tuple(str(p) for p in (prefix / "setup.bash", *overlays))))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["RMW_IMPLEMENTATION"] = "rmw_cyclonedds_cpp"
    return env
