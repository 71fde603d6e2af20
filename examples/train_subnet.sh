#!/usr/bin/env bash
# Retrain a searched subnet from scratch with the original recipe:
#   bash examples/train_subnet.sh examples/wmt14_en_de/subnet.args SUBNET.yaml DATA_BIN SAVE_DIR [extra flags]
set -euo pipefail
ARGS_FILE="$1"; SUBNET="$2"; DATA="$3"; SAVE_DIR="$4"; shift 4
NGPU="$(python -c 'import torch; print(max(torch.cuda.device_count(), 1))')"
mapfile -t FLAGS < <(grep -v '^\s*#' "$ARGS_FILE" | grep -v '^\s*$' | xargs -n1)
exec fairseq-train "$DATA" "${FLAGS[@]}" --subnet "$SUBNET" --update-freq $((128 / NGPU)) --save-dir "$SAVE_DIR" "$@"
