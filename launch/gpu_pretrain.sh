#!/usr/bin/env bash
# Issue 16's GPU acceptance in one command: configs/pretrain.py:gpu10 (the paper model, bf16,
# batch 64) trained for a wall-time budget on the limb CTs that travel, scored on the held-out
# CT ibsi_sts_STS_049 (ankle/hindfoot, never trained on: it is data.test_path) at every saved
# checkpoint, which gives the held-out AP and a PNG of held-out AP against samples seen; and the
# Table 1 order at this budget (no attention vs the standard transformer, trained concurrently).
#
#   launch/gpu_pretrain.sh prepare          # once, here: copies the CTs into workdir_gpu/cts/
#                                           # (ignored); the wheels come from
#                                           # `launch/gpu_benchmarks.sh prepare` (.whl/)
#   launch/gpu_pretrain.sh run [SECONDS]    # on the GPU host: gpu10 for SECONDS (default 420)
#                                           # of training budget, then evaluate checkpoint=all
#   launch/gpu_pretrain.sh table1 [SECONDS] # on the GPU host: the transformer and
#                                           # model.attention=none side by side for SECONDS
#                                           # (default 360), then evaluate checkpoint=best
#
# With this workplace's device tool: run(command="bash launch/gpu_pretrain.sh run",
# carry=[".whl", "workdir_gpu"], timeout_s=600), and likewise "... table1" (one mode per call:
# a session's 15 device minutes hold one, with the machine's start). Either should take ~9.5
# minutes on one H200 at its default SECONDS (not yet measured: ~15 s of wheels and imports,
# SECONDS + ~40 s of training, the bank and compilation inside the budget, ~1-1.5 min of
# evaluation); every stage is stopped by LIMIT=590 s after the start so that the files under
# $OUT (default workdir_gpu/out_pretrain) come back: the log, results.md/json,
# ap_vs_samples.png (run), metrics.jsonl, config.json, overlay pictures (8 files at most). Delete
# workdir_gpu/runs and $OUT here before a call (they would travel). The tables and the PNG go to
# docs/benchmarks.md: held-out AP of gpu10 on STS_049 with its positives %, AP vs samples seen,
# and the Table 1 order (no attention vs transformer) at this budget.
#
# SMOKE=1 runs the same stages and paths on a CPU in ~1 minute each (after `prepare`): the tiny
# preset at 64^3 / 64^2, 6 steps of batch 2, 2 training CTs, the evaluate job's tiny preset,
# no wheel install (they are cp312).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: launch/gpu_pretrain.sh prepare | run [SECONDS] | table1 [SECONDS]}
SHARED=${SHARED:-../shared/data}
CTS=workdir_gpu/cts
HELD_NAME=ibsi_sts_STS_049_ct.nii.gz
HELD=$CTS/held/$HELD_NAME
TRAIN=$CTS/train
RUNS=workdir_gpu/runs
SMOKE=${SMOKE:-0}

if [[ $mode == prepare ]]; then
  set -e
  # Training CTs, copied as they are, in this order: the 4 ibsi_sts CTs of ct/ other than the
  # held-out one (name order), then ct_limbs/ smallest first (more patients per MB); a file
  # over MAX_MB is skipped, and one that would take the total over CAP_MB too (what travels is
  # capped at 64 MiB: these + .whl 7.5 MB + tracked files 2.8 MB + workdir_gpu/ct 3.5 MB).
  cap=$(( ${CAP_MB:-40} * 1000000 )) max=$(( ${MAX_MB:-10} * 1000000 ))
  rm -rf "$CTS"
  mkdir -p "$TRAIN" "$(dirname "$HELD")"
  cp "$SHARED/ct/$HELD_NAME" "$HELD"
  chmod u+w "$HELD"
  candidates=$(ls "$SHARED"/ct/ibsi_sts_*.nii.gz | grep -v "/$HELD_NAME\$"
               ls -S -r "$SHARED"/ct_limbs/*.nii.gz)
  total=0 count=0
  {
    echo "# CTs copied by launch/gpu_pretrain.sh prepare: bytes, file, source"
    printf '%10d  %s  %s\n' "$(stat -c %s "$HELD")" "held/$HELD_NAME" "$SHARED/ct/$HELD_NAME"
  } >"$CTS/manifest.txt"
  for f in $candidates; do
    size=$(stat -c %s "$f")
    (( size <= max && total + size <= cap )) || { echo "skip $f ($size bytes)"; continue; }
    cp "$f" "$TRAIN/"
    chmod u+w "$TRAIN/$(basename "$f")"
    total=$(( total + size )) count=$(( count + 1 ))
    printf '%10d  %s  %s\n' "$size" "train/$(basename "$f")" "$f" >>"$CTS/manifest.txt"
  done
  echo "# training: $count CTs, $total bytes" >>"$CTS/manifest.txt"
  cat "$CTS/manifest.txt"
  echo "took $count training CTs, $(awk "BEGIN {printf \"%.1f\", $total / 1e6}") MB (cap" \
       "$(( cap / 1000000 )) MB), and the held-out $HELD_NAME"
  if compgen -G ".whl/*.whl" >/dev/null; then
    ls -la .whl
  else
    echo "no wheels in .whl/: run 'bash launch/gpu_benchmarks.sh prepare' for them"
  fi
  du -sh workdir_gpu .whl
  exit 0
fi

[[ $mode == run || $mode == table1 ]] || {
  echo "unknown mode $mode (prepare | run | table1)"; exit 2; }
[[ -f $HELD && -d $TRAIN ]] || {
  echo "no CTs in $CTS: run launch/gpu_pretrain.sh prepare"; exit 2; }
if [[ $mode == run ]]; then budget=${2:-420}; else budget=${2:-360}; fi
OUT=${OUT:-workdir_gpu/out_pretrain}
mkdir -p "$OUT"
LOG=$OUT/gpu_pretrain.log
: >"$LOG"
# (no wheels with SMOKE=1: they are cp312, and a CPU checkout's venv has these packages)
NO_WHEELS=$SMOKE source launch/gpu_env.sh

# Every stage ends by LIMIT seconds after the start (the device tool's command limit is 600 s;
# what is under $OUT comes back only if the script gets to copy it).
if [[ $SMOKE == 1 ]]; then LIMIT=${LIMIT:-3600}; else LIMIT=${LIMIT:-590}; fi
left() {  # left WANTED RESERVE: WANTED seconds, or fewer so that RESERVE seconds stay
  local t=$(( LIMIT - SECONDS - $2 ))
  (( t < $1 )) || t=$1
  (( t > 10 )) || t=10
  echo "$t"
}

stage() {  # stage NAME SECONDS COMMAND...: one timed stage, its output appended to the log
  # (each line prefixed with $TAG, for stages that run side by side)
  local name=$1 limit=$2 rc
  shift 2
  echo "${TAG:-}=== $name ($(date -u +%FT%TZ), ${SECONDS}s in, limit ${limit}s): $*" \
    | tee -a "$LOG"
  # SIGTERM at the limit (training saves a checkpoint and stops), SIGKILL 20 s later; XLA's
  # C++ INFO/WARNING lines are left out.
  timeout -k 20 "$limit" "$@" 2>&1 \
    | grep --line-buffered -v -E '^[IW][0-9]{4} .*\.(cc|h):[0-9]+\]' \
    | sed -u "s/^/${TAG:-}/" | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  echo "${TAG:-}=== $name exit $rc (${SECONDS}s in)" | tee -a "$LOG"
  return "$rc"
}

# What differs between the GPU measurement and the CPU smoke test: the presets and sizes.
HELD_FLAG=--config.data.test_path=$HELD
CKPT_FLAGS=(--config.ckpt.every_seconds=60 --config.ckpt.keep=12)
if [[ $SMOKE == 1 ]]; then
  read -r -a two < <(ls -S -r "$TRAIN"/*.nii.gz | head -2 | tr '\n' ' ')
  PRETRAIN=(--config=configs/pretrain.py:tiny "--config.ct.path=('${two[0]}','${two[1]}')"
            --config.ct.size=64 "--config.views.detector_size=(64,64)" --config.steps=6
            --config.eval_every=3 --config.ckpt.every=3 --config.eval.batches=1
            --config.batch_size=2 --config.eval.batch_size=2)
  EVALUATE=(--config=configs/evaluate.py:tiny)
else
  PRETRAIN=(--config=configs/pretrain.py:gpu10 --config.ct.path="$TRAIN")
  EVALUATE=(--config=configs/evaluate.py)
fi
PRETRAIN+=("$HELD_FLAG" --config.stop_after_seconds="$budget")

{
  echo "mode $mode, SECONDS $budget, SMOKE $SMOKE, LIMIT $LIMIT, $(date -u +%FT%TZ)"
  git log --oneline -1 2>/dev/null
  if command -v nvidia-smi >/dev/null; then nvidia-smi -L; fi
  nproc
  cat "$CTS/manifest.txt"
} 2>&1 | tee -a "$LOG"
stage imports 90 python3 -c "import grain, ml_collections, nibabel, jax
import jaxcorr.jobs.pretrain, jaxcorr.jobs.evaluate
print(jax.__version__, jax.devices())" || exit 1

smi_pid=
if command -v nvidia-smi >/dev/null; then   # GPU load and memory every 30 s, into the log
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 30 \
    >>"$LOG" 2>&1 &
  smi_pid=$!
fi

copy() {  # copy SRC DEST: into $OUT, when SRC exists
  if [[ -f $1 ]]; then cp "$1" "$OUT/$2"; else echo "missing: $1" | tee -a "$LOG"; fi
}

if [[ $mode == run ]]; then
  run=$RUNS/gpu10
  eval_dir=$RUNS/eval_gpu10
  rm -rf "$run" "$eval_dir"
  stage pretrain_gpu10 "$(left $(( budget + 150 )) 75)" python3 -m jaxcorr.main \
    "${PRETRAIN[@]}" --workdir="$run" "${CKPT_FLAGS[@]}"
  copy "$run/metrics.jsonl" metrics.jsonl
  copy "$run/config.json" config.json
  echo "=== checkpoints: $(ls "$run"/checkpoints 2>/dev/null | tr '\n' ' ')" | tee -a "$LOG"
  stage evaluate_all "$(left 120 5)" python3 -m jaxcorr.main "${EVALUATE[@]}" \
    --workdir="$eval_dir" "--config.runs=('$run',)" --config.checkpoint=all "$HELD_FLAG"
  eval_rc=$?
  copy "$eval_dir/ap_vs_samples.png" ap_vs_samples.png
else
  eval_dir=$RUNS/eval_table1
  rm -rf "$RUNS/transformer" "$RUNS/none" "$eval_dir"
  # Both rows at once on the one GPU, each with 45% of its memory, for the same budget.
  export XLA_PYTHON_CLIENT_MEM_FRACTION=0.45
  limit=$(left $(( budget + 150 )) 75)
  TAG="[transformer] " stage pretrain_transformer "$limit" python3 -m jaxcorr.main \
    "${PRETRAIN[@]}" --workdir="$RUNS/transformer" &
  pid_t=$!
  sleep 5
  TAG="[none] " stage pretrain_none "$limit" python3 -m jaxcorr.main "${PRETRAIN[@]}" \
    --workdir="$RUNS/none" --config.model.attention=none &
  pid_n=$!
  wait "$pid_t" "$pid_n"
  unset XLA_PYTHON_CLIENT_MEM_FRACTION
  copy "$RUNS/transformer/metrics.jsonl" metrics_transformer.jsonl
  copy "$RUNS/none/metrics.jsonl" metrics_none.jsonl
  copy "$RUNS/transformer/config.json" config.json
  stage evaluate_best "$(left 120 5)" python3 -m jaxcorr.main "${EVALUATE[@]}" \
    --workdir="$eval_dir" "--config.runs=('$RUNS/transformer','$RUNS/none')" \
    --config.checkpoint=best --config.untrained=True "$HELD_FLAG"
  eval_rc=$?
fi
[[ -n $smi_pid ]] && kill "$smi_pid" 2>/dev/null
copy "$eval_dir/results.md" results.md
copy "$eval_dir/results.json" results.json
# Overlays of the last checkpoint scored (run), or of each trained row (table1): the row index
# is the file name's first number; row 0 is the untrained model.
python3 - "$eval_dir" "$OUT" "$mode" <<'EOF' 2>&1 | tee -a "$LOG"
import json, os, shutil, sys
eval_dir, out, mode = sys.argv[1:]
try:
  rows = json.load(open(os.path.join(eval_dir, "results.json")))
except OSError as e:
  sys.exit(f"no overlays: {e}")
trained = [i for i, r in enumerate(rows) if r["checkpoint"] != "untrained"]
picks = [(trained[-1], "overlay.png")] if mode == "run" and trained else [
    (i, f"overlay_{rows[i]['run']}.png") for i in trained]
for i, name in picks:
  src = os.path.join(eval_dir, f"overlay_{i}_0.png")
  if os.path.exists(src):
    shutil.copy(src, os.path.join(out, name))
    print("overlay", src, "->", name)
EOF
echo "files in $OUT: $(ls "$OUT" | wc -l) (the device tool brings back 8 at most)" | tee -a "$LOG"
ls -la "$OUT" | tee -a "$LOG"
echo "done $(date -u +%FT%TZ), ${SECONDS}s" | tee -a "$LOG"
exit "$eval_rc"
