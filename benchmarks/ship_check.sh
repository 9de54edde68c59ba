#!/usr/bin/env bash
# Every measurement the GEM-Lite model card reports, for one candidate weights folder, before it replaces
# the shipped model (a script that prints numbers, not a test; ~5 min on the 2-core development CPU).
#
#   GDD=path/to/gdd-dev bash benchmarks/ship_check.sh CANDIDATE [REFERENCE] [--out DIR]
#
# CANDIDATE, REFERENCE: glassgem dirs (REFERENCE default: the shipped model). Writes to DIR (default
# ship_check/<candidate name>): val.json + report/ (gdd-dev/val, the protocol), tta.json, size320/448/512.json,
# train.json (gdd-dev/train: how much it overfits), crops.json + crops_report/ (false glass on the
# glass-free crops of gdd-dev/val: their MAE), samples.txt (false glass on the sample photos of installed
# packages, candidate beside reference) and compare_val.txt / compare_crops.txt (paired bootstrap,
# candidate vs reference). The reference's reports are cached in DIR/reference/.
set -euo pipefail
cd "$(dirname "$0")/.."
GG=${GLASSGEM:-.venv/bin/glassgem}
PY=${PYTHON:-.venv/bin/python}
GDD=${GDD:?set GDD to the gdd-dev folder (train/ and val/ with images/ and masks/)}
CAND=${1:?usage: GDD=... bash benchmarks/ship_check.sh CANDIDATE [REFERENCE] [--out DIR]}
shift
REF=src/glassgem/weights/gem-lite
if [ $# -gt 0 ] && [ "$1" != "--out" ]; then REF=$1; shift; fi
OUT=ship_check/$(basename "$CAND")
if [ $# -gt 0 ]; then
  [ "$1" = "--out" ] && [ $# -eq 2 ] || { echo "usage: ... CANDIDATE [REFERENCE] [--out DIR]" >&2; exit 2; }
  OUT=$2
fi
for w in "$CAND" "$REF"; do
  [ -f "$w/config.json" ] && [ -f "$w/model.safetensors" ] ||
    { echo "$w: not a glassgem dir (config.json + model.safetensors)" >&2; exit 2; }
done
mkdir -p "$OUT/reference"
LOG=$OUT/log.txt
: > "$LOG"
run() {  # what... : a glassgem command, its output in log.txt (shown if it fails)
  "$GG" "$@" >> "$LOG" 2>&1 || { echo "failed: glassgem $*" >&2; tail -20 "$LOG" >&2; exit 1; }
}
ev() {  # name weights extra-args... : evaluate, keep the JSON
  local name=$1 w=$2; shift 2
  run evaluate --weights "$w" --json "$OUT/$name.json" "$@"
}
CROPS=$OUT/val-crops
[ -d "$CROPS/images" ] || run data negatives "$GDD" --split val --out "$CROPS"
ev val "$CAND" --data "$GDD" --data-split val --report "$OUT/report" --worst 12
ev crops "$CAND" --data "$CROPS" --report "$OUT/crops_report" --worst 0
[ -f "$OUT/reference/val.json" ] ||
  ev reference/val "$REF" --data "$GDD" --data-split val --report "$OUT/reference/report" --worst 0
[ -f "$OUT/reference/crops.json" ] ||
  ev reference/crops "$REF" --data "$CROPS" --report "$OUT/reference/crops_report" --worst 0
ev tta "$CAND" --data "$GDD" --data-split val --tta
for s in 320 448 512; do ev size$s "$CAND" --data "$GDD" --data-split val --size $s; done
ev train "$CAND" --data "$GDD" --data-split train
"$GG" compare "$OUT/reference/report" "$OUT/report" > "$OUT/compare_val.txt"
"$GG" compare "$OUT/reference/crops_report" "$OUT/crops_report" > "$OUT/compare_crops.txt"
"$PY" benchmarks/false_glass.py --weights "$CAND" "$REF" > "$OUT/samples.txt" 2>> "$LOG" ||
  { echo "failed: benchmarks/false_glass.py" >&2; tail -20 "$LOG" >&2; exit 1; }
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def row(label, f):
    r = json.loads(f.read_text())
    return f"{label:28s} {r['iou']:.4f}  {r['fbeta']:.4f}  {r['mae']:.4f}  {r['ber']:6.2f}"
print(f"{'':28s} IoU     F-beta  MAE     BER")
for label, name in [("reference, val", "reference/val"), ("candidate, val", "val"),
                    ("candidate, val --tta", "tta"), ("candidate, val 320", "size320"),
                    ("candidate, val 448", "size448"), ("candidate, val 512", "size512"),
                    ("candidate, train", "train")]:
    print(row(label, out / f"{name}.json"))
for label, name in [("reference", "reference/crops"), ("candidate", "crops")]:
    r = json.loads((out / f"{name}.json").read_text())  # on all-background crops: MAE = false glass,
    print(f"false glass, val crops, {label}: {r['mae']:.4f} "  # IoU := 1 exactly where none is predicted
          f"({r['n_iou_empty']} of {r['n_images']} clean)")
PY
grep -E "^(IoU|F-beta|MAE|BER)" "$OUT/compare_val.txt" | sed 's/^/val, candidate - reference: /'
grep -E "^(IoU|MAE)" "$OUT/compare_crops.txt" | sed 's/^/crops, candidate - reference: /'
grep -E "^mean" "$OUT/samples.txt" | sed 's/^/sample photos (candidate, reference): /'
echo "written to $OUT"
