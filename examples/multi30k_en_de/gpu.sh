#!/usr/bin/env bash
# GPU recipe on Multi30k En-De, one GPU, about 15 minutes: supernet (iwslt14_de_en space) -> search under an energy
# constraint -> retrain the winner from scratch -> decode test2016 (beam 5) -> score and cost.
# Target (issue #5): >= 33 sacreBLEU on test2016 for the retrained hybrid subnet.
# UNTESTED: written without access to a GPU; the budgets below are estimates (a plain transformer_iwslt_de_en ran
# about 12 updates/s on an H200), not measurements.
#   bash examples/multi30k_en_de/gpu.sh [WORK]
# Re-running resumes like scripts/demo.sh (finished stages skipped, training continues within its budget).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RECIPE="$ROOT/examples/multi30k_en_de"
source "$ROOT/examples/args.sh"
WORK="${1:-$ROOT/work/multi30k_gpu}"
MULTI30K_DIR="${MULTI30K_DIR:-$ROOT/../shared/data/multi30k}"
SUPERNET_MINUTES="${SUPERNET_MINUTES:-4}"
TRAIN_MINUTES="${TRAIN_MINUTES:-7}"
cd "$ROOT"
mkdir -p "$WORK"

flags() { args_flags "$RECIPE/$1"; }  # the flags of one of the recipe's .args files

train() {  # train NAME MINUTES ARGS_FILE [extra flags]: fairseq-train in WORK/NAME within a wall-clock budget
  local name="$1" minutes="$2" args="$3"
  shift 3
  [ -f "$WORK/$name/done" ] && return
  mkdir -p "$WORK/$name"
  mapfile -t FLAGS < <(flags "$args")
  fairseq-train "$DATA" "${FLAGS[@]}" "$@" --stop-time-hours "$(awk -v m="$minutes" 'BEGIN { print m / 60 }')" \
    --save-dir "$WORK/$name" --log-format simple --log-interval 100 --num-workers 2 --seed 1 \
    2>&1 | tee -a "$WORK/$name/train.log" | grep -E --line-buffered "valid on|done training"
  touch "$WORK/$name/done"
}

echo "== prepare"
DATA="$(fairseq-shiftadd-prepare-multi30k --src-dir "$MULTI30K_DIR" --out "$WORK/data" --pair en-de \
  --vocab-size 8000 2>/dev/null | tail -n 1)"
echo "== supernet ($SUPERNET_MINUTES min)"
train supernet "$SUPERNET_MINUTES" gpu_supernet.args
echo "== search"
if [ ! -f "$WORK/search/best.yaml" ]; then
  mapfile -t FLAGS < <(flags gpu_search.args)
  fairseq-shiftadd-search "$DATA" "${FLAGS[@]}" --path "$WORK/supernet/checkpoint_best.pt" --save-dir "$WORK/search"
fi
echo "== retrain the winner ($TRAIN_MINUTES min)"
train hybrid "$TRAIN_MINUTES" gpu_subnet.args --subnet "$WORK/search/best.yaml"
echo "== decode test2016 and report"
if [ ! -f "$WORK/hybrid/test.gen" ]; then
  mapfile -t FLAGS < <(flags generate.args)
  fairseq-generate "$DATA" "${FLAGS[@]}" --path "$WORK/hybrid/checkpoint_best.pt" > "$WORK/hybrid/test.gen.partial"
  mv "$WORK/hybrid/test.gen.partial" "$WORK/hybrid/test.gen"
fi
python -m fairseq_shiftadd.reports.demo --space iwslt14_de_en --data "$DATA" --reference "$WORK/data/raw/test.de" \
  --target-lang de --model hybrid "$WORK/search/best.yaml" "$WORK/hybrid" "$WORK/hybrid/test.gen" \
  --candidates "$WORK/search/candidates.csv" --out "$WORK/report"
