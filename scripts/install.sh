#!/usr/bin/env bash
# Create or update the virtual environment .venv (or $VENV) with everything the project needs.
# Sourced by scripts/test.sh and scripts/demo.sh; safe to re-run. The pip steps run again only when
# setup.py or this script changed since the last successful install (a stamp in the environment), and one at a
# time (a lock in the environment: two scripts started together would otherwise run pip over each other).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
mkdir -p "$VENV"
exec {INSTALL_LOCK}>"$VENV/.install.lock"
if command -v flock > /dev/null; then
  flock "$INSTALL_LOCK"
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.fairseq-shiftadd-installed"
WANTED="$(cat "$ROOT/setup.py" "$ROOT/scripts/install.sh" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANTED" ] || \
   ! "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ('fairseq', 'fairseq_shiftadd'))))"; then
  PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
  "${PIP[@]}" --upgrade "pip>=24"
  # torch first and pinned: its CPU build lies on this machine's disk; a GPU machine keeps its own torch.
  if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    "${PIP[@]}" "torch==${TORCH_VERSION:-2.13.0}"
  fi
  # fairseq: the community rebuild of fairseq main, without its torchaudio requirement.
  "${PIP[@]}" --no-deps "ve-fairseq==0.12.3"
  # the plugin, editable, with fairseq's real needs and the test tools.
  "${PIP[@]}" -e "$ROOT[test]"
  echo "$WANTED" > "$STAMP"
fi
exec {INSTALL_LOCK}>&-
