#!/usr/bin/env bash
# Multi30k En-De or En-Fr -> sentencepiece -> fairseq binary data (prints the data-bin path).
#   bash data_prep/multi30k.sh OUT_DIR [en-de|en-fr] [VOCAB_SIZE=8000]
# Reads ../shared/data/multi30k (or $MULTI30K_DIR); finished steps are skipped on re-runs.
set -euo pipefail
if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  sed -n '2,/^set /{/^set /d;s/^# \{0,3\}//;p}' "${BASH_SOURCE[0]}" | sed '2s/^/usage: /' >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$1"; PAIR="${2:-en-de}"; VOCAB="${3:-8000}"
command -v fairseq-shiftadd-prepare-multi30k >/dev/null || PATH="$ROOT/.venv/bin:$PATH"  # installed by scripts/install.sh
exec fairseq-shiftadd-prepare-multi30k --src-dir "${MULTI30K_DIR:-$ROOT/../shared/data/multi30k}" \
  --out "$OUT" --pair "$PAIR" --vocab-size "$VOCAB"
