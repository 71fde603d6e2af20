#!/usr/bin/env bash
# Multi30k En-De or En-Fr -> sentencepiece -> fairseq binary data (prints the data-bin path).
#   bash data_prep/multi30k.sh OUT_DIR [en-de|en-fr] [VOCAB_SIZE]
# Reads ../shared/data/multi30k (or $MULTI30K_DIR); finished steps are skipped on re-runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$1"; PAIR="${2:-en-de}"; VOCAB="${3:-8000}"
exec fairseq-shiftadd-prepare-multi30k --src-dir "${MULTI30K_DIR:-$ROOT/../shared/data/multi30k}" \
  --out "$OUT" --pair "$PAIR" --vocab-size "$VOCAB"
