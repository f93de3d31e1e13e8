#!/usr/bin/env bash
# Run one jaxcorr job as N processes on this machine, as it would run on N hosts: each process
# calls jax.distributed.initialize() with a coordinator on localhost, sees its own devices
# (CPU processes exchange collectives over gloo), reads its own slice of the data, and
# process 0 writes the workdir's logs, metrics and pictures. A rehearsal of a multi-host run
# (tests/multiprocess_*_test.py do the same), not a way to go faster on one machine.
#   launch/local_processes.sh 2 configs/pretrain.py:tiny /tmp/pretrain_2p [--config.a.b=value ...]
# Each process's log is WORKDIR.process<i>.log; the exit status is the first failure's.
set -euo pipefail
n=${1:?usage: launch/local_processes.sh N CONFIG WORKDIR [overrides...]}
config=${2:?usage: launch/local_processes.sh N CONFIG WORKDIR [overrides...]}
workdir=${3:?usage: launch/local_processes.sh N CONFIG WORKDIR [overrides...]}
shift 3
cd "$(dirname "$0")/.."
port=${PORT:-$(python -c "import socket; s = socket.socket(); s.bind(('localhost', 0)); print(s.getsockname()[1])")}
export JAX_COORDINATOR_ADDRESS=localhost:$port JAX_NUM_PROCESSES=$n
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
pids=()
for ((i = 0; i < n; i++)); do
  JAX_PROCESS_ID=$i python -m jaxcorr.main --config="$config" --workdir="$workdir" \
    --distributed "$@" > "$workdir.process$i.log" 2>&1 &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
status=0
for ((i = 0; i < n; i++)); do
  if ! wait "${pids[$i]}"; then
    [ $status -ne 0 ] || status=$?
    echo "process $i failed; see $workdir.process$i.log" >&2
    kill "${pids[@]}" 2>/dev/null || true   # the others would wait for it forever
  fi
done
exit $status
