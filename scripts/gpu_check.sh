#!/usr/bin/env bash
# The GPU checks, one prepared run on a CUDA machine with fairseq, Triton and this package importable:
#   tests   the Triton kernel tests on the GPU (tests/ops/test_kernels_triton.py; autotuned tiles, larger shapes) and
#           the models in float32 / bf16 / fp16 against float64 on the GPU (tests/models/test_precision.py)
#   adder   the adder's throughput against torch.cdist and a matmul (benchmarks/gpu_adder.py)
#   ops     the operator table on CUDA (benchmarks/ops.py --device cuda)
#   ops_large  the same at GPU-sized shapes (--large: the Triton window kernel of the add mixers and the depthwise
#           AddConv2d against fairseq's lightweight conv and torch's depthwise conv, launches amortised)
#   fp16    a short fp16 training of an add / shift-add hybrid (examples/multi30k_en_de/subnets/gpu_add_hybrid.yaml)
#           on Multi30k En-De, logging every 25 updates (fairseq's --bf16 means a TPU: bf16 is covered by the tests)
#   fp16_mult  the same for its multiplication-only counterpart (subnets/gpu_mult_baseline.yaml), for the update rate
#   recipe  (not in the default list) examples/multi30k_en_de/gpu.sh end to end at short budgets (SUPERNET_MINUTES=1,
#           TRAIN_MINUTES=2 unless set; raw Multi30k from MULTI30K_DIR; needs this package's console scripts on PATH,
#           e.g. `pip install --no-deps --no-build-isolation .`), its work in TMPDIR, its results table as
#           OUT/recipe_results.md
#   ranking (not in the default list) the demo supernet's ranking at GPU budgets: benchmarks/supernet_recipes.sh with
#           RANK_RECIPES (default "distill operators": the sandwich ran to 9000 subnet steps on the CPU, these two only
#           to 900-1200) for RANK_UPDATES subnet steps (default 6000) with a checkpoint every RANK_SAVE_EVERY (1500),
#           scored against the retrained panel of RANKING_DIRS (one or more
#           benchmarks/ranking.py runs: only their results.csv is read; DATA_BIN must be their data); needs the
#           environment that scripts/install.sh would make (VENV with its stamp); OUT/ranking_recipes.{md,csv}
# Each stage writes OUT/STAGE.log under its own time limit and prints its tail; the run goes on after a failure.
#   bash scripts/gpu_check.sh OUT DATA_BIN [STAGE ...]      (default: every stage but recipe, in the order above)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEFAULT_STAGES=(tests adder ops ops_large fp16 fp16_mult)
ALL_STAGES=("${DEFAULT_STAGES[@]}" recipe ranking)
if [ $# -lt 2 ]; then
  echo "usage: bash scripts/gpu_check.sh OUT DATA_BIN [STAGE ...] (stages: ${ALL_STAGES[*]})" >&2
  exit 2
fi
OUT="$1" DATA="$2"
shift 2
STAGES=("${@:-${DEFAULT_STAGES[@]}}")
for name in "${STAGES[@]}"; do
  if [[ " ${ALL_STAGES[*]} " != *" $name "* ]]; then
    echo "unknown stage '$name' (stages: ${ALL_STAGES[*]})" >&2
    exit 2
  fi
done
if [[ " ${STAGES[*]} " =~ " "(fp16|ranking) ]] && [ ! -f "$DATA/dict.en.txt" ]; then
  echo "no fairseq data-bin (dict.en.txt) at $DATA" >&2
  exit 2
fi
PYTHON="${PYTHON:-python3}"
UPDATES="${UPDATES:-150}"
SUBNETS=examples/multi30k_en_de/subnets
cd "$ROOT"
mkdir -p "$OUT"
source examples/args.sh
mapfile -t SUBNET_FLAGS < <(args_flags examples/multi30k_en_de/gpu_subnet.args)  # --fp16 among them

stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, log to OUT/NAME.log, print rc and the tail
  local name="$1" limit="$2"
  shift 2
  local start=$SECONDS
  timeout --kill-after=5 "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: rc=$? in $((SECONDS - start)) s"
  grep -v -E "FutureWarning|autocast" "$OUT/$name.log" | tail -n "${TAIL:-12}"
}

TRAIN=("$PYTHON" -m fairseq_cli.train "$DATA" "${SUBNET_FLAGS[@]}" --max-update "$UPDATES" --warmup-updates 50
  --save-dir "${TMPDIR:-/tmp}/gpu_check_checkpoints" --no-save --log-format simple --log-interval 25 --num-workers 2
  --seed 1)

nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.used --format=csv
for name in "${STAGES[@]}"; do
  case "$name" in
    tests) stage tests 120 "$PYTHON" -m pytest -q -p no:cacheprovider tests/ops/test_kernels_triton.py \
      tests/models/test_precision.py ;;
    adder) stage adder 90 "$PYTHON" benchmarks/gpu_adder.py ;;
    ops) stage ops 60 "$PYTHON" benchmarks/ops.py --device cuda --repeat 20 ;;
    ops_large) stage ops_large 120 "$PYTHON" benchmarks/ops.py --device cuda --repeat 20 --large ;;
    fp16) stage fp16 "${TRAIN_SECONDS:-150}" "${TRAIN[@]}" --subnet "$SUBNETS/gpu_add_hybrid.yaml" ;;
    fp16_mult) stage fp16_mult 90 "${TRAIN[@]}" --subnet "$SUBNETS/gpu_mult_baseline.yaml" ;;
    recipe)
      recipe_work="${TMPDIR:-/tmp}/gpu_recipe"
      SUPERNET_MINUTES="${SUPERNET_MINUTES:-1}" TRAIN_MINUTES="${TRAIN_MINUTES:-2}" \
        stage recipe "${RECIPE_SECONDS:-480}" bash examples/multi30k_en_de/gpu.sh "$recipe_work"
      cp "$recipe_work/report/results.md" "$OUT/recipe_results.md" 2>/dev/null ;;
    ranking)
      read -r -a panel <<< "${RANKING_DIRS:?the ranking stage needs RANKING_DIRS (benchmarks/ranking.py runs)}"
      rank_work="${TMPDIR:-/tmp}/gpu_ranking"
      MORE_SUBNETS="${panel[*]:1}" RECIPES="${RANK_RECIPES:-distill operators}" UPDATES="${RANK_UPDATES:-6000}" \
        SAVE_EVERY="${RANK_SAVE_EVERY:-1500}" THREADS="${RANK_THREADS:-8}" \
        stage ranking "${RANKING_SECONDS:-540}" bash benchmarks/supernet_recipes.sh "${panel[0]}" "$DATA" "$rank_work"
      for suffix in md csv; do cp "$rank_work/recipes.$suffix" "$OUT/ranking_recipes.$suffix" 2>/dev/null; done ;;
  esac
done
