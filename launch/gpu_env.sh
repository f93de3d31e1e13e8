# Sourced by the launch/gpu_*.sh scripts on the GPU host (from the repository root, with LOG
# set): unbuffered output, one XLA compilation cache shared by their stages, and the wheels of
# .whl/ (what the host lacks, see ../shared/GPU.md) installed to /tmp/site ahead of the
# checkout on PYTHONPATH. NO_WHEELS=1 skips the wheels (a CPU checkout's venv has them; the
# wheels are cp312).
export PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jaxcorr_xla_cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.5
if compgen -G ".whl/*.whl" >/dev/null && [[ ${NO_WHEELS:-0} != 1 ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl 2>&1 | tee -a "$LOG"
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
