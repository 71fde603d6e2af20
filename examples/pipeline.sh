#!/usr/bin/env bash
# The ShiftAddNAS pipeline for one dataset: supernet -> search -> retrain the winner -> evaluate.
#
#   bash examples/pipeline.sh DATASET PREPARED WORK [STAGE ...]
#
# DATASET   a folder of examples/ (wmt14_en_de, wmt14_en_fr, iwslt14_de_en): its *.args files hold the flags
#           of each stage, recipe.env the target language and the accumulated batch.
# PREPARED  the output folder of the dataset's data_prep/ script (data-bin/ and raw/ inside).
# WORK      where checkpoints, the search and the translations go.
# STAGE     any of: supernet search subnet evaluate (default: all four, in order).
#
# Every stage resumes: fairseq-train continues from WORK/<stage>/checkpoint_last.pt, the search from
# WORK/search/state.json; a finished evaluation is recomputed (it is cheap next to training).
# Extra flags per stage (e.g. a smaller scale) come from SUPERNET_FLAGS, SEARCH_FLAGS, SUBNET_FLAGS and
# GENERATE_FLAGS. recipe.env sets TOTAL_UPDATE_FREQ (--update-freq = TOTAL_UPDATE_FREQ / GPUs, which keeps the
# paper's 4096 tokens x 16 x 8 GPUs per update on any number of GPUs) and AVERAGE_LAST; the environment
# overrides both.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: bash examples/pipeline.sh DATASET PREPARED WORK [supernet] [search] [subnet] [evaluate]" >&2
  exit 2
fi
EXAMPLES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v fairseq-train >/dev/null || PATH="$EXAMPLES/../.venv/bin:$PATH"  # installed by scripts/install.sh
DATASET="$1"; PREPARED="$2"; WORK="$3"; shift 3
STAGES=("${@:-supernet search subnet evaluate}")
RECIPE="$EXAMPLES/$DATASET"
[ -f "$RECIPE/recipe.env" ] || { echo "unknown dataset '$DATASET': no $RECIPE/recipe.env" >&2; exit 2; }
[ -d "$PREPARED/data-bin" ] || { echo "no $PREPARED/data-bin: run the dataset's data_prep/ script first" >&2; exit 2; }
# shellcheck source=/dev/null
source "$RECIPE/recipe.env"
source "$EXAMPLES/args.sh"
DATA="$PREPARED/data-bin"
NGPU="$(python -c 'import torch; print(max(torch.cuda.device_count(), 1))')"
UPDATE_FREQ=$(( TOTAL_UPDATE_FREQ > NGPU ? TOTAL_UPDATE_FREQ / NGPU : 1 ))

flags() { args_flags "$RECIPE/$1"; }  # the flags of one of the recipe's .args files

supernet() {
  mapfile -t FLAGS < <(flags supernet.args)
  # shellcheck disable=SC2086
  fairseq-train "$DATA" "${FLAGS[@]}" --update-freq "$UPDATE_FREQ" --save-dir "$WORK/supernet" ${SUPERNET_FLAGS:-}
}

search() {
  mapfile -t FLAGS < <(flags search.args)
  # shellcheck disable=SC2086
  fairseq-shiftadd-search "$DATA" "${FLAGS[@]}" --path "$WORK/supernet/checkpoint_best.pt" \
    --save-dir "$WORK/search" ${SEARCH_FLAGS:-}
}

subnet() {
  mapfile -t FLAGS < <(flags subnet.args)
  # shellcheck disable=SC2086
  fairseq-train "$DATA" "${FLAGS[@]}" --subnet "$WORK/search/best.yaml" --update-freq "$UPDATE_FREQ" \
    --save-dir "$WORK/subnet" ${SUBNET_FLAGS:-}
}

evaluate() {
  # Model selection uses the validation set only: checkpoint_best.pt (best validation loss), or the average of
  # the last AVERAGE_LAST epoch checkpoints (recipe.env), which looks at no data at all.
  local checkpoint="$WORK/subnet/checkpoint_best.pt"
  if [ "${AVERAGE_LAST:-0}" -gt 0 ]; then
    checkpoint="$WORK/subnet/checkpoint_avg_last${AVERAGE_LAST}.pt"
    fairseq-shiftadd-average-checkpoints --inputs "$WORK/subnet" --num-epoch-checkpoints "$AVERAGE_LAST" \
      --output "$checkpoint"
  fi
  mapfile -t FLAGS < <(flags generate.args)
  # shellcheck disable=SC2086
  fairseq-generate "$DATA" "${FLAGS[@]}" --path "$checkpoint" --gen-subset test ${GENERATE_FLAGS:-} \
    > "$WORK/generate-test.txt"
  fairseq-shiftadd-score --generate-output "$WORK/generate-test.txt" --reference "$PREPARED/raw/test.$TARGET_LANG" \
    --target-lang "$TARGET_LANG" | tee "$WORK/bleu-test.txt"
}

mkdir -p "$WORK"
for STAGE in ${STAGES[*]}; do
  case "$STAGE" in
    supernet|search|subnet|evaluate) echo "== $DATASET: $STAGE"; "$STAGE" ;;
    *) echo "unknown stage '$STAGE' (supernet, search, subnet, evaluate)" >&2; exit 2 ;;
  esac
done
