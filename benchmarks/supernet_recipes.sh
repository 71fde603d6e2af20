#!/usr/bin/env bash
# Which supernet recipe ranks subnets? Trains the demo supernet with each recipe below on the data of a finished
# benchmarks/ranking.py run for UPDATES subnet steps, with a checkpoint every SAVE_EVERY (equal compute: a sandwich
# recipe trains 3 subnets per update, so it runs a third of the updates), then scores every
# checkpoint against that run's retrained subnets (benchmarks/supernet_recipes.py: Kendall tau per recipe and
# budget, recipes.md / recipes.csv / recipes.png in OUT). Each training resumes from its last checkpoint; finished
# ones are skipped. RECIPES: names of examples/multi30k_en_de/supernet_recipes.sh (their one owner), default
# "single nosharing sandwich distill".
#   bash benchmarks/supernet_recipes.sh RANKING_DIR DATA_BIN OUT
#   RECIPES="single nosharing" UPDATES=2000 SAVE_EVERY=250 THREADS=1 SEED=1 bash benchmarks/supernet_recipes.sh ...
#   MORE_SUBNETS="RANKING_DIR2 ..." adds further ranking runs' subnets to the panel (--more-subnets).
# fairseq-train picks the GPU where there is one (the README's 20-subnet tables were trained on the CPU).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/install.sh"
source "$ROOT/examples/args.sh"
source "$ROOT/examples/multi30k_en_de/supernet_recipes.sh"
cd "$ROOT"
[ $# -eq 3 ] || { echo "usage: bash benchmarks/supernet_recipes.sh RANKING_DIR DATA_BIN OUT" >&2; exit 2; }
RANKING_DIR="$1" DATA="$2" OUT="$3"
RECIPES="${RECIPES:-single nosharing sandwich distill}" UPDATES="${UPDATES:-2000}" SAVE_EVERY="${SAVE_EVERY:-250}"
THREADS="${THREADS:-1}" SEED="${SEED:-1}"
for name in $RECIPES; do  # every name checked before anything trains
  supernet_recipe_extra "$name" > /dev/null
done
[ -f "$RANKING_DIR/results.csv" ] || { echo "$RANKING_DIR: no results.csv (run benchmarks/ranking.py first)" >&2; exit 2; }

SCORED=()
for name in $RECIPES; do
  per="$(supernet_recipe_subnets_per_update "$name")"
  dir="$OUT/$name"
  mkdir -p "$dir"
  if [ -f "$dir/done" ]; then
    echo "== $name: trained earlier"
  else
    echo "== $name: $((UPDATES / per)) updates, a checkpoint every $((SAVE_EVERY / per)) ($dir/train.log)"
    mapfile -t FLAGS < <(supernet_recipe_flags "$name")
    OMP_NUM_THREADS="$THREADS" "$VENV/bin/fairseq-train" "$DATA" "${FLAGS[@]}" --max-update $((UPDATES / per)) \
      --save-interval-updates $((SAVE_EVERY / per)) --keep-interval-updates -1 --save-dir "$dir" --seed "$SEED" \
      --log-format simple --log-interval 50 --num-workers 0 --no-progress-bar >> "$dir/train.log" 2>&1
    touch "$dir/done"
  fi
  SCORED+=("$name=$dir")
done
MORE=()
for dir in ${MORE_SUBNETS:-}; do
  MORE+=(--more-subnets "$dir")
done
OMP_NUM_THREADS="$THREADS" "$VENV/bin/python" benchmarks/supernet_recipes.py "$RANKING_DIR" "${MORE[@]}" "${SCORED[@]}" \
  --data "$DATA" --out "$OUT"
