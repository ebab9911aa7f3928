#!/usr/bin/env bash
# Chapter 11's GPU measurements, in one run on one card (the figures in benchmarks/).
#
#   OUT=folder bash tools/gpu_bench.sh            # on a CUDA machine: the full set (~5-7 min)
#   OUT=folder bash tools/gpu_bench.sh cpu-smoke  # the same steps at a tiny size on a CPU (a check)
#   GEN_CMD='python3 -m gpt2scratch bench generate --device cuda ...' also runs that command.
#
# It installs nothing: it needs python3 with torch and transformers (PYTHON= picks another).
# Most important first, so that a run cut short still leaves the first files:
#   1. bench train:     ours vs HF GPT2LMHeadModel, eager and compiled, 124M, B=16, T=1024, bf16
#   2. GEN_CMD, if set (issue 10's generation benchmark)
#   3. bench fastpath:  the whole fast path at B=64 with dropout 0 (how GPT-2-size models pre-train today)
#   4. bench fastpath:  the ladder of section 11.3 at B=16 (each part of the fast path added in turn)
#   5. bench fastpath:  the last three rungs at B=64
set -u -o pipefail
MODE=${1:-cuda}
OUT=${OUT:?set OUT to the folder for the JSON files and the log}
PY=${PYTHON:-python3}
export OUT
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
LOG="$OUT/gpu_bench.log"
case "$MODE" in
  cuda) DEV=cuda; SIZE=(); B16=16; B64=64
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" ;;
  cpu-smoke) DEV=cpu; SIZE=(--preset tiny --context-length 64 --steps 2 --warmup 1); B16=4; B64=8 ;;
  *) echo "usage: OUT=folder bash tools/gpu_bench.sh [cuda|cpu-smoke]" >&2; exit 2 ;;
esac
status=0
step() {  # step NAME COMMAND...: run it, log it, remember a failure, go on
  local name=$1; shift
  echo "== $name ($(date -u +%H:%M:%S)): $*" | tee -a "$LOG"
  local t0=$SECONDS
  "$@" 2>&1 | tee -a "$LOG" || { status=1; echo "!! $name failed" | tee -a "$LOG"; }
  echo "== $name took $((SECONDS - t0)) s" | tee -a "$LOG"
}
B="$PY -m gpt2scratch bench"
step train $B train --device $DEV ${SIZE[@]+"${SIZE[@]}"} --batch-size $B16 --compile --pad-vocab \
  --json "$OUT/train_$DEV.json"
if [ -n "${GEN_CMD:-}" ]; then  # issue 10's generation benchmark: short, so it goes second
  step generate bash -c "$GEN_CMD"
fi
step fast-b$B64-dropout0 $B fastpath --device $DEV ${SIZE[@]+"${SIZE[@]}"} --batch-size $B64 --rungs 5:6 \
  --dropout 0 --json "$OUT/fastpath_${DEV}_b${B64}_dropout0.json"
step ladder-b$B16 $B fastpath --device $DEV ${SIZE[@]+"${SIZE[@]}"} --batch-size $B16 \
  --json "$OUT/fastpath_${DEV}_b$B16.json"
step ladder-b$B64 $B fastpath --device $DEV ${SIZE[@]+"${SIZE[@]}"} --batch-size $B64 --rungs 3:6 \
  --json "$OUT/fastpath_${DEV}_b$B64.json"
echo "== done, status $status; files in $OUT:" | tee -a "$LOG"
ls "$OUT" | tee -a "$LOG"
exit $status
