#!/usr/bin/env bash
# The main job, on real data and a CPU: install, prepare Multi30k En-De, train the tiny hybrid
# supernet (one sampled subnet per update), then translate test2016 with its largest and smallest
# subnets and score them with sacreBLEU.
#   bash scripts/demo.sh                     # defaults below
#   MAX_UPDATE=300 bash scripts/demo.sh      # a shorter run
# Re-running resumes: prepared data is kept and training continues from its last checkpoint.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/install.sh"
cd "$ROOT"
export PATH="$VENV/bin:$PATH"
WORK="${WORK:-$ROOT/work/demo}"
MAX_UPDATE="${MAX_UPDATE:-600}"
MULTI30K_DIR="${MULTI30K_DIR:-$ROOT/../shared/data/multi30k}"

echo "== 1/3 prepare Multi30k En-De (sentencepiece 8k, fairseq binary) in $WORK/data"
DATA="$(fairseq-shiftadd-prepare-multi30k --src-dir "$MULTI30K_DIR" --out "$WORK/data" --pair en-de \
  --vocab-size 8000 2>/dev/null | tail -n 1)"

echo "== 2/3 train the tiny hybrid supernet for $MAX_UPDATE updates ($WORK/supernet)"
fairseq-train "$DATA" --user-dir fairseq_shiftadd \
  --task shiftadd_translation --arch shiftadd_supernet_tiny --sharing heterogeneous \
  --criterion shiftadd_label_smoothed_cross_entropy --label-smoothing 0.1 \
  --optimizer adam --adam-betas '(0.9, 0.98)' --lr 2e-3 --lr-scheduler inverse_sqrt --warmup-updates 200 \
  --dropout 0.1 --max-tokens 4096 --max-update "$MAX_UPDATE" \
  --validate-interval-updates 200 --save-interval-updates 200 --keep-interval-updates 1 --no-epoch-checkpoints \
  --save-dir "$WORK/supernet" --log-format simple --log-interval 100 --num-workers 0 --seed 1 \
  2>&1 | grep -E "valid on|num. shared model params|done training" || true

echo "== 3/3 translate test2016 (beam 5) and score with sacreBLEU"
for SUBNET in largest smallest; do
  printf '%-9s ' "$SUBNET"
  fairseq-generate "$DATA" --user-dir fairseq_shiftadd --task shiftadd_translation --subnet "$SUBNET" \
    --path "$WORK/supernet/checkpoint_best.pt" --gen-subset test --beam 5 --batch-size 128 --max-len-a 1.2 --max-len-b 10 \
    --remove-bpe sentencepiece --scoring sacrebleu 2>/dev/null | tail -n 1
done
