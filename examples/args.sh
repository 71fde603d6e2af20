# The one parser of the recipes' .args files, sourced by examples/pipeline.sh, scripts/demo.sh and
# examples/multi30k_en_de/gpu.sh; the tests call it too (tests/recipe_args.py).
# An .args file holds the flags of one stage: one or more per line, '#' comment lines and blank lines
# skipped, words split as the shell splits them (a quoted '(0.9, 0.98)' stays one word).
args_flags() {  # args_flags FILE: one flag or value per line
  [ -f "$1" ] || { echo "args_flags: no such file: $1" >&2; return 2; }
  grep -v '^\s*#' "$1" | grep -v '^\s*$' | xargs -n1
}
