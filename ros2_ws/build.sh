#!/usr/bin/env bash
# Build vla_rft as a ROS 2 package with colcon (needs a sourced ROS 2 Humble or Jazzy).
#   source /opt/ros/jazzy/setup.bash && ros2_ws/build.sh [colcon build options]
# colcon is the one on PATH (apt's python3-colcon-common-extensions), else this project's
# (.venv, installed by scripts/install.sh). rosdep, when there, installs package.xml's deps.
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${ROS_DISTRO:-}" ]; then
  echo "source your ROS 2 setup first, e.g. source /opt/ros/jazzy/setup.bash" >&2
  exit 1
fi
colcon=colcon
command -v colcon >/dev/null || colcon=../.venv/bin/colcon
if command -v rosdep >/dev/null; then
  rosdep install --from-paths src --ignore-src -y || echo "rosdep failed; install package.xml's dependencies by hand"
fi
"$colcon" build --symlink-install --packages-select vla_rft "$@"
echo "now: source $(pwd)/install/setup.bash"
