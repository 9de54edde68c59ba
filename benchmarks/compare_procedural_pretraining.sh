#!/usr/bin/env bash
# Procedural pretraining vs real data only, at the same step budget (a script, not a test):
#   125 GEM-Lite steps on 2,000 procedural scenes, then 125 steps on gdd-dev/train, scored on gdd-dev/val;
#   compare with the step-250 row of a gdd-only run's val.csv (same preset: batch 8, constant lr 2e-4 for
#   the first 250 steps), e.g. `glassgem train --preset gem-lite --data gdd-dev --val gdd-dev --out runs/gdd`.
#   GDD=path/to/gdd-dev RUNS=runs/procpre bash benchmarks/compare_procedural_pretraining.sh
set -euo pipefail
cd "$(dirname "$0")/.."
GG=.venv/bin/glassgem
D=${RUNS:-runs/procpre}
GDD=${GDD:-gdd-dev}
[ -f $D/procedural-2k/manifest.jsonl ] && [ $(wc -l < $D/procedural-2k/manifest.jsonl) -ge 2000 ] || \
  $GG synth procedural --out $D/procedural-2k --n 2000 --workers 2 --seed 0
$GG train --preset gem-lite --data $D/procedural-2k --out $D/pre --resume --set max_iter=125 "lr_steps=[1000000]" checkpoint_period=25
$GG train --preset gem-lite --data $GDD --val $GDD --out $D/ft \
  --init-from $D/pre/final --resume --set max_iter=125 "lr_steps=[1000000]" checkpoint_period=25 eval_period=125
$GG evaluate --weights $D/ft/final --data $GDD --data-split val --json $D/ft_final_val.json
echo DONE
