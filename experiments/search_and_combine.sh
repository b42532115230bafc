#!/usr/bin/env bash
# Usage: experiments/search_and_combine.sh PRESET [TRIALS]
# The paper's search (METHODS.md 1.6) on its four pairs, then the combination (1.8).
set -euo pipefail
if [ "$#" -lt 1 ]; then
  echo "usage: $0 PRESET [TRIALS]" >&2
  exit 2
fi
preset=$1
trials=${2:-50}
out="runs/search-${preset}"
ledgers=()
for pair in sst2:mrpc mrpc:sst2 qqp:mrpc mrpc:qqp; do
  wd="$out/${pair/:/-}"
  lrdist-jax search --preset "$preset" --pair "$pair" --trials "$trials" --search-seed 999 \
    --workdir "$wd"
  ledgers+=("$wd/trials.jsonl")
done
lrdist-jax combine --out "$out/combined.json" "${ledgers[@]}"
