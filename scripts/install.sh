#!/usr/bin/env bash
# Set up vla_rft on a fresh machine: rendering libraries (Debian, when root), a virtual
# environment in .venv, torch 2.13.0 (CPU wheel from local disk) and the pinned dependencies.
# Safe to run again: every step skips what is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

# MuJoCo renders offscreen through EGL (or OSMesa as a fallback) on a machine with no screen.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  if ! dpkg -s libegl1 libegl-mesa0 libosmesa6 >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq libegl1 libegl-mesa0 libosmesa6 >/dev/null
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# Pinned first: a bare `torch` requirement would pull a multi-GB CUDA build.
"${pip[@]}" torch==2.13.0
"${pip[@]}" -c requirements/constraints.txt -e ".[sim,training,dds,import,dev,ros2]"
echo "vla_rft installed in .venv ($(.venv/bin/python -c 'import vla_rft; print(vla_rft.__version__)'))"
