#!/usr/bin/env bash
# Draws docs/images/real_scenes_dev.jpg: the real-scene dev photos that contain glass and whose licence
# allows showing them (sources jetson, adelai, moge, lotus: MIT-style, CC0-1.0, MIT, Apache-2.0 as the
# manifest records), truth (green) beside the default model's prediction (red).
#   bash docs/make_real_scene_sheet.sh [FROM]     FROM: as `glassgem data real-scenes --from` (default https://github.com)
set -euo pipefail
cd "$(dirname "$0")/.."
GG=${GLASSGEM:-.venv/bin/glassgem}
PY=${PYTHON:-.venv/bin/python}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$GG" data real-scenes --from "${1:-https://github.com}" --out "$TMP/rs" --split dev
mkdir -p "$TMP/show/images" "$TMP/show/masks"
"$PY" - "$TMP" <<'PY'
import shutil, sys
from pathlib import Path
import numpy as np
from glassgem.io import load_mask
tmp = Path(sys.argv[1])
for mask in sorted((tmp / "rs/dev/masks").glob("*.png")):
    if mask.stem.split("__")[0] in {"jetson", "adelai", "moge", "lotus"} and load_mask(mask).any():
        image = next((tmp / "rs/dev/images").glob(f"{mask.stem}.*"))
        shutil.copy(image, tmp / "show/images" / image.name)
        shutil.copy(mask, tmp / "show/masks" / mask.name)
PY
"$GG" predict "$TMP/show/images" --out "$TMP/pred"
"$PY" - "$TMP" docs/images/real_scenes_dev.jpg <<'PY'
import sys
from pathlib import Path
from glassgem.demo import truth_against_prediction
from glassgem.evaluation.mask_eval import pair_files
tmp = Path(sys.argv[1])
pairs, _ = pair_files(tmp / "pred", tmp / "show/masks")
print(truth_against_prediction(pairs, tmp / "show/images", Path(sys.argv[2]), cols=6, cell=(112, 150), quality=75))
PY
