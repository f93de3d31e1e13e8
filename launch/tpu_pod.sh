#!/usr/bin/env bash
# Create a Cloud TPU VM (or pod slice), install jaxcorr on every worker, run one command on all
# workers with a shared workdir (a gs:// bucket), then delete the TPU.
#   TPU=jaxcorr-v4 ZONE=us-central2-b TYPE=v4-32 VERSION=tpu-ubuntu2204-base \
#     launch/tpu_pod.sh configs/pretrain.py gs://bucket/pretrain [--config.a.b=value ...]
# Set KEEP=1 to keep the TPU afterwards. Each worker runs the same `python -m jaxcorr.main`
# with --distributed: jax.distributed.initialize() finds the other hosts,
# each host reads its own slice of the data and the mesh spans every chip.
set -euo pipefail
: "${TPU:?set TPU (name)}" "${ZONE:?set ZONE}" "${TYPE:?set TYPE, e.g. v4-8 or v4-32}"
VERSION=${VERSION:-tpu-ubuntu2204-base}
REPO=${REPO:-$(git -C "$(dirname "$0")/.." remote get-url origin 2>/dev/null || echo "")}
config=${1:?usage: launch/tpu_pod.sh CONFIG WORKDIR [overrides...]}
workdir=${2:?usage: launch/tpu_pod.sh CONFIG WORKDIR [overrides...]}
shift 2
overrides=$(printf ' %q' "$@")
: "${REPO:?set REPO to a git URL the workers can clone}"
ssh_all() { gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command "$1"; }
cleanup() { [ "${KEEP:-0}" = 1 ] || gcloud compute tpus tpu-vm delete "$TPU" --zone "$ZONE" --quiet; }
gcloud compute tpus tpu-vm create "$TPU" --zone "$ZONE" --accelerator-type "$TYPE" --version "$VERSION"
trap cleanup EXIT
ssh_all "git clone -q $REPO ~/jaxcorr || git -C ~/jaxcorr pull -q; cd ~/jaxcorr && pip install -q -e '.[tpu,dicom]'"
ssh_all "cd ~/jaxcorr && python -m jaxcorr.main --config=$config --workdir=$workdir --distributed$overrides"
