#!/usr/bin/env bash
# Prepare gpu_carry/ (git-ignored) here, for scripts/gpu/gpu_check.sh on a GPU machine: the 64 and
# 224 px packages with their checkpoints, the wheels of --wheels DIR, manifest.json. Fails if the
# folder and the repository exceed the 64 MiB the device tool carries. Options: --help.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec "${PYTHON:-.venv/bin/python}" bench/gpu_check.py pack "$@"
