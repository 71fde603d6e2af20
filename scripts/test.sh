#!/usr/bin/env bash
# The test command: install everything into .venv, then run the test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m slow` for the slow end-to-end tests; `-n 0` runs the
# tests in one process instead of one pytest-xdist worker per core). At most 4 workers: each prepares the data, trains
# the session supernet and holds its own torch and fairseq.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/install.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest -n auto --maxprocesses 4 --dist worksteal "$@"
