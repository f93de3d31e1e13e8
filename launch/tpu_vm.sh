#!/usr/bin/env bash
# Run the same jaxcorr command on every worker of a Cloud TPU VM slice.
#   TPU=my-tpu ZONE=us-central2-b launch/tpu_vm.sh configs/pretrain.py gs://bucket/workdir [overrides...]
# Each worker needs this repository at ~/jaxcorr (e.g. git clone on all workers first) and
# `pip install -e ".[tpu,dicom]"`, which this script runs. Every worker runs the same command with
# --distributed: jax.distributed.initialize() with no arguments finds the other
# hosts of the slice itself (on a single-host VM it finds one process). The workdir must be one
# every worker reaches: a gs:// bucket (jaxcorr writes it through etils.epath and orbax).
set -euo pipefail
: "${TPU:?set TPU to the TPU VM name}" "${ZONE:?set ZONE to its zone}"
config=${1:?usage: launch/tpu_vm.sh CONFIG WORKDIR [overrides...]}
workdir=${2:?usage: launch/tpu_vm.sh CONFIG WORKDIR [overrides...]}
shift 2
overrides=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command \
  "cd ~/jaxcorr && pip install -q -e '.[tpu,dicom]' && python -m jaxcorr.main --config=$config --workdir=$workdir --distributed$overrides"
