#!/usr/bin/env bash
# Prepare rft_carry/ (git-ignored) here, for scripts/gpu/rft_paper_scale.sh on a GPU machine: the
# base policy and world model checkpoints, training-split start-state episodes, the wheels of
# --wheels DIR, manifest.json with each file's sha256. Fails if the folder and the repository
# exceed the 64 MiB the device tool carries (docs/RFT.md, "The paper-scale run on a GPU").
# Example: scripts/gpu/pack_rft.sh --policy runs/policy/cpu --world-model runs/world_model/cpu \
#            --data data/expert200 --wheels .whl --out rft_carry        Options: --help.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec "${PYTHON:-.venv/bin/python}" bench/rft_paper_scale.py pack "$@"
