#!/usr/bin/env bash
# Train a ShiftAddNAS supernet with the original recipe:
#   bash examples/train_supernet.sh examples/wmt14_en_de/supernet.args DATA_BIN SAVE_DIR [extra fairseq flags]
# DATA_BIN: fairseq binary data with a joined dictionary. The paper's batch (4096 tokens x 16 x 8 GPUs)
# is kept on any number of GPUs by --update-freq 128 / NGPU. Re-running resumes from SAVE_DIR.
set -euo pipefail
ARGS_FILE="$1"; DATA="$2"; SAVE_DIR="$3"; shift 3
NGPU="$(python -c 'import torch; print(max(torch.cuda.device_count(), 1))')"
mapfile -t FLAGS < <(grep -v '^\s*#' "$ARGS_FILE" | grep -v '^\s*$' | xargs -n1)
exec fairseq-train "$DATA" "${FLAGS[@]}" --update-freq $((128 / NGPU)) --save-dir "$SAVE_DIR" "$@"
