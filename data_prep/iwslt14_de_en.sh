#!/usr/bin/env bash
# IWSLT14 De-En (fairseq's prepare-iwslt14.sh splits, lowercased) -> sentencepiece -> fairseq data-bin.
#   bash data_prep/iwslt14_de_en.sh OUT_DIR [VOCAB_SIZE=10000] [WORKERS=4]
# Downloads de-en.tgz into OUT_DIR/downloads (or $DOWNLOAD_DIR; place it there by hand without internet
# access); finished steps are skipped on re-runs. Prints the data-bin path.
set -euo pipefail
if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  sed -n '2,/^set /{/^set /d;s/^# \{0,3\}//;p}' "${BASH_SOURCE[0]}" | sed '2s/^/usage: /' >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$1"; VOCAB="${2:-10000}"; WORKERS="${3:-4}"
command -v fairseq-shiftadd-prepare-iwslt14 >/dev/null || PATH="$ROOT/.venv/bin:$PATH"  # installed by scripts/install.sh
exec fairseq-shiftadd-prepare-iwslt14 --out "$OUT" --download-dir "${DOWNLOAD_DIR:-$OUT/downloads}" \
  --vocab-size "$VOCAB" --workers "$WORKERS" --threads "$WORKERS"
