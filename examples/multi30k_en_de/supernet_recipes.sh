# The demo space's supernet recipes: the one owner of their names and flags, sourced (after examples/args.sh) by
# scripts/demo.sh (SUPERNET_RECIPE), benchmarks/demo_seeds.sh and benchmarks/supernet_recipes.sh (RECIPES).
# Each recipe is this folder's supernet.args without its --sandwich, plus:
#   single      nothing: heterogeneous sharing, one sampled subnet per update
#   nosharing   --sharing none: every operator its own weights, one sampled subnet per update (the recipe that ranks
#               subnets at Kendall tau >= 0.6 from 1,750 updates on: README, "No weight sharing, trained longer")
#   sandwich    --sandwich: the largest, the smallest and a sampled subnet per update (supernet.args as it is: the demo's)
#   distill     --sandwich --distill-weight 1: the same, each distilled from the largest (in-place distillation)
#   operators   --sandwich --sandwich-operators: the sandwich plus the largest net with random operators (4 per update)
SUPERNET_RECIPES="single nosharing sandwich distill operators"

supernet_recipe_extra() {  # supernet_recipe_extra NAME: the flags the recipe adds, on one line
  case "$1" in
    single) ;;
    nosharing) echo "--sharing none" ;;
    sandwich) echo "--sandwich" ;;
    distill) echo "--sandwich --distill-weight 1" ;;
    operators) echo "--sandwich --sandwich-operators" ;;
    *) echo "unknown supernet recipe '$1' (one of: $SUPERNET_RECIPES)" >&2; return 2 ;;
  esac
}

supernet_recipe_flags() {  # supernet_recipe_flags NAME: the recipe's fairseq-train flags, one per line
  local extra
  extra="$(supernet_recipe_extra "$1")" || return 2
  args_flags "$(dirname "${BASH_SOURCE[0]}")/supernet.args" | grep -vx -- --sandwich
  # shellcheck disable=SC2086
  [ -z "$extra" ] || printf '%s\n' $extra
}

supernet_recipe_subnets_per_update() {  # supernet_recipe_subnets_per_update NAME: subnets trained per update
  supernet_recipe_extra "$1" > /dev/null || return 2
  case "$1" in sandwich | distill) echo 3 ;; operators) echo 4 ;; *) echo 1 ;; esac
}
