#!/usr/bin/env bash
# Regenerates the example figures of docs/deploy.md and docs/synthesis.md from the shipped GEM-Lite model. No dataset images are used:
# the inputs are procedural glass scenes (made here) and the sample photos that ship with scikit-image.
#   bash docs/make_figures.sh            (from the repository root, after `make demo` created .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
GG=${GLASSGEM:-.venv/bin/glassgem}
PY=${PYTHON:-.venv/bin/python}
OUT=docs/images
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

"$GG" synth procedural --out "$TMP/procedural" --n 60 --seed 11 --workers 2 --contact-sheet "$OUT/procedural_contact_sheet.jpg"
"$PY" - "$TMP/photos" <<'PY'
import sys
from pathlib import Path
from PIL import Image
from skimage import data
out = Path(sys.argv[1]); out.mkdir(parents=True)
names = ["astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right", "immunohistochemistry",
         "hubble_deep_field", "logo", "colorwheel", "retina", "cat", "page", "camera", "brick", "grass", "gravel"]
for n in names:
    try:
        img = getattr(data, n)()
    except Exception:  # some samples need pooch (network): skip them
        continue
    Image.fromarray(img).convert("RGB").save(out / f"{n}.jpg", quality=92)
PY
SCENE=proc_000014.jpg  # three windows with mullions: glass and wall both in view
"$GG" visualize queries "$TMP/procedural/images/$SCENE" --out "$OUT/queries_example.jpg"
"$GG" visualize queries "$TMP/procedural/images/$SCENE" --all-layers --boxes 10 --out "$OUT/queries_layers_example.jpg"
"$GG" analyze tsne --data photos="$TMP/photos" procedural="$TMP/procedural" --out "$OUT/tsne_example.png"
rm -f "$OUT/tsne_example.csv"  # the coordinates: not kept in the repository
echo "figures written to $OUT"
