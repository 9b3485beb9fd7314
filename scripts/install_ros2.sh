#!/usr/bin/env bash
# Install the minimal ROS 2 Jazzy the ROS 2 tests and `ros2 launch vla_rft ...` run against.
#
#   scripts/install_ros2.sh            # builds into /opt/ros/jazzy unless a ROS 2 is already there
#
# A no-op when ROS 2 is already installed: $VLA_RFT_ROS2_PREFIX/setup.bash, or
# /opt/ros/jazzy or /opt/ros/humble (an apt-installed ROS 2 counts; so does a build from this
# script). Otherwise it builds ROS 2 from the offline sources in ../shared/ros2 (or
# $VLA_RFT_ROS2_SOURCES): `build.sh` needs only Debian and PyPI, takes about 8 minutes on 2 cores
# (core, cpp and bag phases) and is itself idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX="${VLA_RFT_ROS2_PREFIX:-/opt/ros/jazzy}"
SOURCES="${VLA_RFT_ROS2_SOURCES:-}"
if [ -z "$SOURCES" ]; then
  for candidate in ../shared/ros2 /work/shared/ros2; do
    if [ -x "$candidate/build.sh" ]; then SOURCES="$candidate"; break; fi
  done
fi

for candidate in "$PREFIX" /opt/ros/jazzy /opt/ros/humble; do
  [ -f "$candidate/setup.bash" ] || continue
  # one that build.sh made is handed back to it, which checks that its inputs have not changed
  if [ -f "$candidate/.ros2_build_stamp" ] && [ -n "$SOURCES" ] && [ "$candidate" = "$PREFIX" ]; then break; fi
  echo "install_ros2: ROS 2 found at $candidate; nothing to do"
  exit 0
done

if [ -z "$SOURCES" ]; then
  echo "install_ros2: no ROS 2 at $PREFIX and no sources to build it (../shared/ros2 or \$VLA_RFT_ROS2_SOURCES)" >&2
  exit 1
fi
ROS2_PYTHON="${ROS2_PYTHON:-python3}" nice -n 10 "$SOURCES/build.sh" "$PREFIX"
