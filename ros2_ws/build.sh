#!/usr/bin/env bash
# Build vla_rft as a ROS 2 package with colcon (needs a sourced ROS 2 Humble or Jazzy).
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${ROS_DISTRO:-}" ]; then
  echo "source your ROS 2 setup first, e.g. source /opt/ros/humble/setup.bash" >&2
  exit 1
fi
rosdep install --from-paths src --ignore-src -y || echo "rosdep failed; install the dependencies in package.xml by hand"
colcon build --symlink-install --packages-select vla_rft "$@"
echo "now: source $(pwd)/install/setup.bash"
