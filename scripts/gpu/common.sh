# Sourced by the scripts in scripts/gpu/ that run on the GPU machine (no network there).
# install_carried_wheels CARRY PYTHON: installs CARRY/wheels/*.whl, if any, into
#   $TMPDIR/<name of CARRY>_site and puts it first on PYTHONPATH; returns 1 if pip failed.
# show_gpu: one line per GPU (name, driver, memory) where nvidia-smi exists.

install_carried_wheels() {
  local carry=$1 python=$2
  local site=${TMPDIR:-/tmp}/$(basename "$carry")_site
  local wheels=("$carry"/wheels/*.whl)
  [ -e "${wheels[0]}" ] || return 0
  echo "installing ${#wheels[@]} carried wheel(s) into $site"
  "$python" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target "$site" "${wheels[@]}" || return 1
  export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
}

show_gpu() {
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  fi
}
