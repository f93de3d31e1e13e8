#!/usr/bin/env bash
# Run a jaxcorr job on one GPU host (all its GPUs are visible to JAX).
#   launch/gpu_host.sh configs/render.py /path/workdir [--config.a.b=value ...]
# First time on the host: pip install -e ".[gpu,dicom]"
set -euo pipefail
config=${1:?usage: launch/gpu_host.sh CONFIG WORKDIR [overrides...]}
workdir=${2:?usage: launch/gpu_host.sh CONFIG WORKDIR [overrides...]}
shift 2
cd "$(dirname "$0")/.."
# Let XLA take GPU memory as it needs it rather than 75% up front (other processes may share).
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
exec python -m jaxcorr.main --config="$config" --workdir="$workdir" "$@"
