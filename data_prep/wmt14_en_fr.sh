#!/usr/bin/env bash
# WMT14 En-Fr (fairseq's corpora; valid newstest2013, test newstest2014) -> sentencepiece -> fairseq data-bin.
#   bash data_prep/wmt14_en_fr.sh OUT_DIR [VOCAB_SIZE=32000] [WORKERS=8]
# Downloads several GB (about 40M training pairs) into OUT_DIR/downloads (or $DOWNLOAD_DIR; place the
# archives there by hand without internet access); sentencepiece trains on a 2M-sentence sample.
# Finished steps are skipped on re-runs. Prints the data-bin path.
set -euo pipefail
if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  sed -n '2,/^set /{/^set /d;s/^# \{0,3\}//;p}' "${BASH_SOURCE[0]}" | sed '2s/^/usage: /' >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$1"; VOCAB="${2:-32000}"; WORKERS="${3:-8}"
command -v fairseq-shiftadd-prepare-wmt14 >/dev/null || PATH="$ROOT/.venv/bin:$PATH"  # installed by scripts/install.sh
exec fairseq-shiftadd-prepare-wmt14 --pair en-fr --out "$OUT" --download-dir "${DOWNLOAD_DIR:-$OUT/downloads}" \
  --vocab-size "$VOCAB" --workers "$WORKERS" --threads "$WORKERS" --input-sentence-size 2000000
