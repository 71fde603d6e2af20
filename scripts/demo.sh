#!/usr/bin/env bash
# The CPU demo (one command, a fresh 2-core machine, about 20 minutes): the whole ShiftAddNAS pipeline on
# Multi30k En-De.
#   1. install, prepare Multi30k (sentencepiece 8k, fairseq binary)
#   2. train the hybrid supernet of the `demo` space (2 threads)
#   3. evolutionary search under an energy constraint (45 nm profile, original accounting), fitness = inherited
#      validation loss (2 ranks), restricted to attention blocks with mult FFNs (HAT's space); then the same search
#      over the whole space, its generation 0 opened by that winner (--initial-subnet)
#   4. retrain both winners from scratch || train a plain Transformer baseline: same recipe, same wall-clock budget,
#      one thread each, three side by side
#   5. decode test2016 (beam 5) || and report: sacreBLEU, tokenized BLEU, energy under both accountings, measured
#      latency, parameters, mult/add/shift counts (WORK/report/results.md) and the search front with the three
#      models (WORK/report/front.png)
# Budgets and flags: examples/multi30k_en_de/ (demo.env: minutes per stage; *.args: the flags of each stage).
#   bash scripts/demo.sh
#   SUPERNET_MINUTES=1 TRAIN_MINUTES=2 SEARCH_FLAGS="--generations 1 --max-valid-sentences 100" \
#     WORK=/tmp/demo-smoke bash scripts/demo.sh                                      # a quick smoke run
# SUPERNET_RECIPE (demo.env; names: examples/multi30k_en_de/supernet_recipes.sh) picks the supernet's recipe.
# Extra flags per stage: SUPERNET_FLAGS, SEARCH_FLAGS (both searches), TRAIN_FLAGS (the three trainings); SEED seeds
# every stage. E.g. budgets in updates, which do not depend on the machine's speed or load: TRAIN_MINUTES=600 TRAIN_FLAGS="--max-update 450" bash scripts/demo.sh
# TRAIN_SEED (default SEED) seeds the three trainings of stage 4 only: the same winners trained again with another
# seed, in a WORK that holds a finished run's stages 1-3b (benchmarks/demo_seeds.sh, RETRAIN_OFFSETS). The reranked
# winners then train from scratch: their rerank trainings, which stage 4 otherwise continues, used SEED.
# Re-running resumes: finished stages are skipped; an interrupted training continues from its last checkpoint
# within what is left of its budget; the search continues from its state.json.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/install.sh"
cd "$ROOT"
export PATH="$VENV/bin:$PATH"
RECIPE="$ROOT/examples/multi30k_en_de"
# shellcheck source=/dev/null
source "$RECIPE/demo.env"
source "$ROOT/examples/args.sh"
source "$RECIPE/supernet_recipes.sh"
WORK="${WORK:-$ROOT/work/demo}"
MULTI30K_DIR="${MULTI30K_DIR:-$ROOT/../shared/data/multi30k}"
supernet_recipe_extra "$SUPERNET_RECIPE" > /dev/null
TRAINED_RECIPE="$(cat "$WORK/supernet/recipe" 2>/dev/null || true)"
if [ -n "$TRAINED_RECIPE" ] && [ "$TRAINED_RECIPE" != "$SUPERNET_RECIPE" ]; then
  echo "$WORK/supernet was trained with SUPERNET_RECIPE=$TRAINED_RECIPE, not $SUPERNET_RECIPE: use another WORK" >&2
  exit 2
fi
mkdir -p "$WORK/supernet"
echo "$SUPERNET_RECIPE" > "$WORK/supernet/recipe"

flags() { args_flags "$RECIPE/$1"; }  # the flags of one of the recipe's .args files

stage() {
  printf '== [%02d:%02d] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"
}

progress() {  # fairseq-train log on stdin -> one short line per logged update, validation and the end
  local name="$1" line
  while IFS= read -r line; do  # (not awk: mawk reads a pipe in blocks, which would hold the lines back)
    if [[ $line == *train_inner* && $line =~ \ loss=([0-9.]+).*num_updates=([0-9]+).*\ wall=([0-9]+) ]]; then
      printf '  [%s] update %s  train loss %s  %d:%02d\n' "$name" "${BASH_REMATCH[2]}" "${BASH_REMATCH[1]}" \
        $((BASH_REMATCH[3] / 60)) $((BASH_REMATCH[3] % 60))
    elif [[ $line == *"valid on"* && $line =~ \|\ loss\ ([0-9.]+) ]]; then
      printf '  [%s] validation loss %s\n' "$name" "${BASH_REMATCH[1]}"
    elif [[ $line == *"done training"* || $line == *Traceback* || $line == *Error* ]]; then
      printf '  [%s] %s\n' "$name" "${line##*| }"
    fi
  done
}

train() {  # train NAME THREADS MINUTES FLAG...: fairseq-train in WORK/NAME within a wall-clock budget
  local name="$1" threads="$2" minutes="$3"
  shift 3
  local dir="$WORK/$name"
  if [ -f "$dir/done" ]; then
    echo "  [$name] trained earlier: skipped"
    return
  fi
  mkdir -p "$dir"
  OMP_NUM_THREADS="$threads" fairseq-train "$DATA" "$@" \
    --stop-time-hours "$(awk -v m="$minutes" 'BEGIN { print m / 60 }')" --save-dir "$dir" \
    --log-format simple --log-interval 25 --num-workers 0 --seed "$SEED" 2>&1 | tee -a "$dir/train.log" | progress "$name"
  touch "$dir/done"
}

decode() {  # decode NAME: test2016 with WORK/NAME/checkpoint_best.pt into WORK/NAME/test.gen
  local name="$1" out="$WORK/$1/test.gen"
  if [ -f "$out" ]; then
    echo "  [$name] decoded earlier: skipped"
    return
  fi
  mapfile -t FLAGS < <(flags generate.args)
  OMP_NUM_THREADS=1 fairseq-generate "$DATA" "${FLAGS[@]}" --path "$WORK/$name/checkpoint_best.pt" \
    > "$out.partial" 2> "$WORK/$name/generate.log"
  mv "$out.partial" "$out"
  echo "  [$name] $(tail -n 1 "$out")"
}

stage "1/5 prepare Multi30k En-De (sentencepiece 8k) in $WORK/data"
PREPARED="$WORK/data"
DATA="$(fairseq-shiftadd-prepare-multi30k --src-dir "$MULTI30K_DIR" --out "$PREPARED" --pair en-de \
  --vocab-size 8000 2>/dev/null | tail -n 1)"

stage "2/5 train the demo supernet ($SUPERNET_RECIPE) for $SUPERNET_MINUTES min (threads: $SUPERNET_THREADS)"
mapfile -t SUPERNET < <(supernet_recipe_flags "$SUPERNET_RECIPE")
# shellcheck disable=SC2086
train supernet "$SUPERNET_THREADS" "$SUPERNET_MINUTES" "${SUPERNET[@]}" ${SUPERNET_FLAGS:-}

search() {  # search NAME [FLAG...]: search.args (+ the flags) on the supernet into WORK/NAME
  local name="$1" dir="$WORK/$1"
  shift
  if [ -f "$dir/best.yaml" ]; then
    echo "  [$name] searched earlier: skipped"
  else
    mapfile -t FLAGS < <(flags search.args)
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 fairseq-shiftadd-search "$DATA" "${FLAGS[@]}" "$@" --path "$WORK/supernet/checkpoint_best.pt" \
      --save-dir "$dir" --cpu --distributed-world-size "$SEARCH_RANKS" --seed "$SEED" ${SEARCH_FLAGS:-} \
      2> >(tee -a "$WORK/$name.log" >&2) | tee -a "$WORK/$name.log"
  fi
  sed -n '/^#/p' "$dir/best.yaml"
}

stage "3/5 search the attention-only sub-space, then the whole space from its winner (energy bound, $SEARCH_RANKS ranks)"
mapfile -t ATTENTION_ONLY < <(flags attention_only.args)
search search_attention "${ATTENTION_ONLY[@]}"
# The hybrid search starts from the attention-only winner (a warm start: its generation 0 holds it), so its winner
# is at least as fit, by the search's fitness, as the subnet it is compared with.
search search --initial-subnet "$WORK/search_attention/best.yaml"
WINNER_HYBRID="$WORK/search/best.yaml" WINNER_ATTENTION="$WORK/search_attention/best.yaml"

rerank() {  # rerank NAME SEARCH [FLAG...]: the top RERANK_TOP candidates of WORK/SEARCH, RERANK_UPDATES each, into WORK/NAME
  # (always run: the tool skips trained candidates, and continues them when RERANK_UPDATES was raised)
  local name="$1" search="$2"
  shift 2
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 fairseq-shiftadd-rerank "$DATA" --search-dir "$WORK/$search" --top "$RERANK_TOP" --jobs 2 \
    --updates "$RERANK_UPDATES" --recipe "$RECIPE/subnet.args" --seed "$SEED" --save-dir "$WORK/$name" "$@" \
    --train-flags "${TRAIN_FLAGS:-}" | sed -u "s/^/  [$name] /"
}

start_from() {  # start_from NAME RERANK_DIR: WORK/NAME continues the reranked winner's short training
  local from
  from="$(sed -n 's/^# rerank_dir: //p' "$WORK/$2/best.yaml")"
  if [ ! -f "$WORK/$1/checkpoint_last.pt" ]; then
    mkdir -p "$WORK/$1"
    cp "$from/checkpoint_last.pt" "$WORK/$1/checkpoint_last.pt"
  fi
}

if [ "$RERANK_TOP" -gt 0 ]; then
  stage "3b/5 rerank each search's top $RERANK_TOP by $RERANK_UPDATES updates of training from scratch (2 at a time)"
  rerank rerank_attention search_attention
  rerank rerank search --include "$WORK/rerank_attention/best.yaml"
  WINNER_HYBRID="$WORK/rerank/best.yaml" WINNER_ATTENTION="$WORK/rerank_attention/best.yaml"
  if [ "$TRAIN_SEED" = "$SEED" ]; then
    start_from hybrid rerank
    start_from attention_only rerank_attention
  fi
fi

stage "4/5 retrain both searched subnets || train the Transformer baseline, $TRAIN_MINUTES min each (1 thread each, seed $TRAIN_SEED)"
mapfile -t SUBNET < <(flags subnet.args)
mapfile -t BASELINE < <(flags baseline.args)
# shellcheck disable=SC2086
SEED="$TRAIN_SEED" train hybrid 1 "$TRAIN_MINUTES" "${SUBNET[@]}" --subnet "$WINNER_HYBRID" ${TRAIN_FLAGS:-} &
HYBRID=$!
# shellcheck disable=SC2086
SEED="$TRAIN_SEED" train attention_only 1 "$TRAIN_MINUTES" "${SUBNET[@]}" --subnet "$WINNER_ATTENTION" ${TRAIN_FLAGS:-} &
ATTENTION=$!
# shellcheck disable=SC2086
SEED="$TRAIN_SEED" train baseline 1 "$TRAIN_MINUTES" "${BASELINE[@]}" ${TRAIN_FLAGS:-} &
BASELINE=$!
wait "$HYBRID"
wait "$ATTENTION"
wait "$BASELINE"

stage "5/5 decode test2016 (beam 5) and report"
decode hybrid &
HYBRID=$!
decode attention_only &
ATTENTION=$!
decode baseline &
BASELINE=$!
wait "$HYBRID"
wait "$ATTENTION"
wait "$BASELINE"
OMP_NUM_THREADS=1 python -m fairseq_shiftadd.reports.demo --space demo --data "$DATA" \
  --reference "$PREPARED/raw/test.de" --target-lang de \
  --model hybrid "$WINNER_HYBRID" "$WORK/hybrid" "$WORK/hybrid/test.gen" \
  --model attention_only "$WINNER_ATTENTION" "$WORK/attention_only" "$WORK/attention_only/test.gen" \
  --model baseline largest "$WORK/baseline" "$WORK/baseline/test.gen" \
  --candidates "$WORK/search/candidates.csv" --supernet "$WORK/supernet/checkpoint_best.pt" \
  --max-valid-sentences "$(flags search.args | grep -A1 -x -- --max-valid-sentences | tail -n 1)" \
  --out "$WORK/report" 2> "$WORK/report.log"
stage "done: $WORK/report/results.md, $WORK/report/front.png"
