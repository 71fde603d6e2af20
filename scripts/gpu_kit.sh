#!/usr/bin/env bash
# The kit that scripts/gpu_check.sh needs on the workplace's GPU machine (Python 3.12 with torch and Triton, no
# network), built here in .gpu/ (git-ignored; give it to the device tool's `carry`):
#   .gpu/whl/       cp312 wheels of fairseq (ve-fairseq 0.12.3) and of the needs that machine's image lacks
#   .gpu/data-bin/  the demo's Multi30k En-De binaries (sentencepiece 8k), from MULTI30K_DIR
# then prints the command to run there. Downloads from PyPI; installs this repository's .venv first if needed.
#   bash scripts/gpu_kit.sh            (MULTI30K_DIR: default ../shared/data/multi30k beside the repository)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MULTI30K_DIR="${MULTI30K_DIR:-$ROOT/../shared/data/multi30k}"
KIT="$ROOT/.gpu"
# the image has torch, Triton, numpy, regex, sacrebleu, sentencepiece; fairseq 0.12's other needs are these, at the
# versions scripts/install.sh gets here: compiled ones as cp312 wheels, pure-Python ones as wheels built here
COMPILED=(ve-fairseq==0.12.3 bitarray==3.12.3)
PURE=(hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3)  # antlr4 4.9.3 ships as a source archive
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
  manylinux1_x86_64)

if [ ! -d "$MULTI30K_DIR" ]; then
  echo "no Multi30k at $MULTI30K_DIR (set MULTI30K_DIR)" >&2
  exit 2
fi
source "$ROOT/scripts/install.sh"
mkdir -p "$KIT/whl"
"$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]/#/--platform=}" -d "$KIT/whl" "${COMPILED[@]}"
"$VENV/bin/python" -m pip wheel -q --no-deps -w "$KIT/whl" "${PURE[@]}"
if [ ! -f "$KIT/data-bin/dict.en.txt" ]; then
  prepared="$(mktemp -d)"
  trap 'rm -rf "$prepared"' EXIT
  data="$("$VENV/bin/fairseq-shiftadd-prepare-multi30k" --src-dir "$MULTI30K_DIR" --out "$prepared" --pair en-de \
    --vocab-size 8000 2>/dev/null | tail -n 1)"
  rm -rf "$KIT/data-bin"
  cp -r "$data" "$KIT/data-bin"
fi
echo "kit: $(du -sh "$KIT" | cut -f1) in $KIT; on the GPU machine (carry .gpu), from the repository root:"
echo "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl" \
  "&& PYTHONPATH=/tmp/site:\$PWD PYTHONUNBUFFERED=1 bash scripts/gpu_check.sh \$OUT .gpu/data-bin [STAGE ...]"
