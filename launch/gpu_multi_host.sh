#!/usr/bin/env bash
# Run one jaxcorr job over several GPU hosts with JAX's multi-host runtime.
#   COORDINATOR=host0:1234 NUM_PROCESSES=2 PROCESS_ID=0 \
#     launch/gpu_multi_host.sh configs/pretrain.py /shared/workdir [overrides...]
# Start it on every host with its own PROCESS_ID (0 .. NUM_PROCESSES-1); the workdir must be
# shared (NFS or a bucket). Under SLURM, jax.distributed.initialize() reads these itself and
# the three variables can be left unset.
set -euo pipefail
config=${1:?usage: launch/gpu_multi_host.sh CONFIG WORKDIR [overrides...]}
workdir=${2:?usage: launch/gpu_multi_host.sh CONFIG WORKDIR [overrides...]}
shift 2
cd "$(dirname "$0")/.."
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
if [ -n "${COORDINATOR:-}" ]; then
  export JAX_COORDINATOR_ADDRESS=$COORDINATOR
  export JAX_NUM_PROCESSES=${NUM_PROCESSES:?set NUM_PROCESSES}
  export JAX_PROCESS_ID=${PROCESS_ID:?set PROCESS_ID}
fi
exec python -m jaxcorr.main --config="$config" --workdir="$workdir" \
  --distributed "$@"
