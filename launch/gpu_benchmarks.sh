#!/usr/bin/env bash
# Issue 15's GPU measurements in one command: the DRR kernels (clipped, dense, the fused Pallas
# kernel) and the input pipeline against the train step (batch 16 fp32, batch 64 bf16).
#
#   launch/gpu_benchmarks.sh prepare   # once, on a machine with network and ../shared/data:
#                                      # wheels the GPU host lacks -> .whl/, the pelvis CT
#                                      # resampled to 256^3 -> workdir_gpu/ct/ (both ignored)
#   launch/gpu_benchmarks.sh run       # on the GPU host, from the repository root; writes the
#                                      # log and one table per stage to $OUT (default
#                                      # workdir_gpu/out)
#
# With this workplace's device tool: run(command="bash launch/gpu_benchmarks.sh run",
# carry=[".whl", "workdir_gpu"], timeout_s=600). Every stage runs under its own timeout and
# appends to one log, so a failing stage does not cost the others; the stages add up to
# < 10 minutes on one H200 (see ../shared/GPU.md). The tables go to docs/benchmarks.md.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: launch/gpu_benchmarks.sh prepare|run}
CT=workdir_gpu/ct/pelvis_256.nii.gz

if [[ $mode == prepare ]]; then
  set -e
  # The packages ../shared/GPU.md lists as missing there, pinned to this venv's versions.
  pins=$(python3 -m pip list --format=freeze 2>/dev/null |
         grep -i -E '^(grain|array.record|ml.collections|nibabel|portpicker)==' | tr '\n' ' ')
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d .whl $pins
  mkdir -p "$(dirname "$CT")"
  python3 - "$CT" <<'EOF'
import sys
import nibabel as nib
import numpy as np
from jaxcorr.ct import io, preprocess
vol = io.load_ct("../shared/data/ct/visible_human_male_pelvis_hands.nii.gz")
cube = preprocess.to_cube(vol.replace(data=io.clean_hu(vol.data)), size=256)
# LPS voxel grid -> NIfTI's RAS affine (x and y flip sign).
affine = np.diag([-cube.spacing[0], -cube.spacing[1], cube.spacing[2], 1.0])
affine[:3, 3] = cube.origin * np.array([-1.0, -1.0, 1.0])
nib.save(nib.Nifti1Image(np.round(cube.data).astype(np.int16), affine), sys.argv[1])
back = io.load_ct(sys.argv[1])
assert back.data.shape == (256,) * 3 and np.allclose(back.origin, cube.origin, atol=1e-3)
assert np.abs(back.data - cube.data).max() <= 0.5, "the written CT differs from the cube"
print("wrote", sys.argv[1])
EOF
  ls -la .whl "$CT"
  exit 0
fi

[[ $mode == run ]] || { echo "unknown mode $mode (prepare | run)"; exit 2; }
OUT=${OUT:-workdir_gpu/out}
mkdir -p "$OUT"
LOG=$OUT/gpu_benchmarks.log
# Stages share compiled programs (the bone-sigmoid DRR run reuses the attenuation run's).
source launch/gpu_env.sh

stage() {  # stage NAME SECONDS COMMAND...: one timed stage; output to the log and NAME.md
  local name=$1 limit=$2 rc
  shift 2
  echo "=== $name ($(date -u +%FT%TZ), limit ${limit}s): $*" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | grep --line-buffered -v -E '^[IW][0-9]{4} ' | tee -a "$LOG" \
    | tee "$OUT/$name.md"
  rc=${PIPESTATUS[0]}
  echo "=== $name exit $rc" | tee -a "$LOG"
  return "$rc"
}

{ nvidia-smi -L; git log --oneline -1 2>/dev/null; } 2>&1 | tee -a "$LOG"
stage imports 60 python3 -c "import grain, ml_collections, nibabel, jax, jaxcorr.benchmarks.drr
print(jax.__version__, jax.devices())" || exit 1
stage drr_attenuation 150 python3 -m jaxcorr.benchmarks.drr --ct="$CT" --views=2,32,128 \
  --repeats=5 --rtk=false --fused_blocks=64,256
stage input_pipeline 250 python3 -m jaxcorr.benchmarks.input_pipeline --preset=default \
  --volumes=2 --batches=5 --settings=16:float32,64:bfloat16 --drr_methods=auto,fused
stage drr_bone_sigmoid 80 python3 -m jaxcorr.benchmarks.drr --ct="$CT" --views=2,32 \
  --repeats=5 --rtk=false --intensity=bone_sigmoid
# The fused kernel's equality and gradient tests, compiled by Triton this time.
stage pallas_tests 40 python3 -m pytest -q -n 0 -p no:cacheprovider tests/pallas_drr_test.py
echo "done $(date -u +%FT%TZ)" | tee -a "$LOG"
