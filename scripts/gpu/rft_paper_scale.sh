#!/usr/bin/env bash
# The paper-scale VLA-RFT run on a machine with an NVIDIA GPU, no MuJoCo and no network
# (docs/RFT.md, "The paper-scale run on a GPU"): installs the wheels carried in rft_carry/wheels
# (rosbags and its kin, to read the episodes) into /tmp, then bench/rft_paper_scale.py run:
# verifies the carried files' sha256, calibrates seconds per step, runs paper,
# corrections_bc_variant and corrections_bc_variant_control (16 x 16, 400 steps, capped to fit
# --budget-s 480) and leaves in OUT_DIR each run's checkpoint (OUT_DIR/<run>/),
# rft_paper_scale.json and rft_paper_scale.log. Exit 1 if a run failed, 2 for bad input.
# Usage: scripts/gpu/rft_paper_scale.sh OUT_DIR [run options, e.g. --device cpu --steps 2]
#        scripts/gpu/rft_paper_scale.sh --help
# Environment: PYTHON (default python3), CARRY (default rft_carry).
set -uo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-python3}
carry=${CARRY:-rft_carry}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
case "${1:-}" in
  -h | --help) exec "$python" bench/rft_paper_scale.py run --help ;;
  "" | -*) echo "usage: $0 OUT_DIR [run options] (--help for the options)" >&2; exit 2 ;;
esac
out=$1
shift
mkdir -p "$out"
source scripts/gpu/common.sh
if ! install_carried_wheels "$carry" "$python"; then
  echo "error: the carried wheels did not install (see pip's message above)" >&2
  exit 2
fi
show_gpu
"$python" bench/rft_paper_scale.py run --carry "$carry" --out "$out" "$@" 2>&1 |
  tee "$out/rft_paper_scale.log"
exit "${PIPESTATUS[0]}"
