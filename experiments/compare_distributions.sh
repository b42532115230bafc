#!/usr/bin/env bash
# Usage: experiments/compare_distributions.sh PRESET TASK1:TASK2 SEED [SEED...]
# Trains every named distribution on one pair for each seed, then prints a summary.
set -euo pipefail
if [ "$#" -lt 3 ]; then
  echo "usage: $0 PRESET TASK1:TASK2 SEED [SEED...]" >&2
  exit 2
fi
preset=$1
pair=$2
shift 2
out="runs/compare-${preset}-${pair/:/-}"
for seed in "$@"; do
  for dist in flat llrd paper-combined paper-rounded; do
    lrdist-jax train --preset "$preset" --pair "$pair" --distribution "$dist" --seed "$seed" \
      --workdir "$out/$dist/seed$seed"
  done
done
python "$(dirname "$0")/summarize.py" "$out"/*/seed*
