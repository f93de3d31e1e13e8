#!/usr/bin/env bash
# Run the same jaxcorr command on every worker of a Cloud TPU VM slice.
#   TPU=my-tpu ZONE=us-central2-b launch/tpu_vm.sh configs/render.py gs://bucket/workdir [overrides...]
# Each worker needs this repository at ~/jaxcorr (e.g. git clone on all workers first) and
# `pip install -e ".[tpu,dicom]"`, which this script runs. On a multi-host slice JAX discovers
# the other hosts itself (jax.distributed.initialize() with no arguments on TPU).
set -euo pipefail
: "${TPU:?set TPU to the TPU VM name}" "${ZONE:?set ZONE to its zone}"
config=${1:?usage: launch/tpu_vm.sh CONFIG WORKDIR [overrides...]}
workdir=${2:?usage: launch/tpu_vm.sh CONFIG WORKDIR [overrides...]}
shift 2
overrides=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command \
  "cd ~/jaxcorr && pip install -q -e '.[tpu,dicom]' && python -m jaxcorr.main --config=$config --workdir=$workdir$overrides"
