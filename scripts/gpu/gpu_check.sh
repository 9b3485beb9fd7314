#!/usr/bin/env bash
# The GPU check on a machine with an NVIDIA GPU and no network (docs/EXPORT.md, "GPU check"):
# installs the wheels carried in gpu_carry/wheels, if any, into /tmp; runs bench/gpu_check.py run
# on the carried packages; leaves gpu_check.json and gpu_check.log in $OUT (else bench/results).
# Exit 1 if a stage failed; a backend that is not installed is skipped. Options: --help.
# Environment: PYTHON (default python3), CARRY (default gpu_carry), OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-python3}
carry=${CARRY:-gpu_carry}
out=${OUT:-bench/results}
mkdir -p "$out"
source scripts/gpu/common.sh
if ! install_carried_wheels "$carry" "$python"; then
  echo "warning: the carried wheels did not install; the check goes on without them" >&2
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
show_gpu
"$python" bench/gpu_check.py run --carry "$carry" --out "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
exit "${PIPESTATUS[0]}"
