"""`glassgem demo` (what `make demo` runs): the shipped model end to end on built-in example scenes.

No dataset image ships with glassgem, so the examples are procedural glass scenes (glassgem's own
synthesiser compositing panes, doors and windows onto scikit-image's permissively licensed sample
photos), with exact ground-truth masks. The demo goes through the same code as the commands a user runs:
`glassgem predict` (masks, overlays) and `glassgem evaluate-masks` (the GSD-S metric table), and adds a
contact sheet: photo | ground truth | prediction for every scene.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .io import save_image, save_mask

N_SCENES = 8
SCENE_SEED = 2024
SCENE_SIZE = (512, 384)  # W, H


def make_scenes(out: Path, n: int = N_SCENES) -> list[str]:
    """Write `n` procedural scenes to out/images and their masks to out/masks; return their names."""
    from .synth.backgrounds import default_backgrounds
    from .synth.procedural import generate_scene

    backgrounds = default_backgrounds()
    names = []
    for i in range(n):
        image, mask, _ = generate_scene(np.random.default_rng([SCENE_SEED, i]), backgrounds, SCENE_SIZE)
        name = f"scene_{i:02d}"
        save_image(out / "images" / f"{name}.jpg", image, quality=92)
        save_mask(out / "masks" / f"{name}.png", mask)
        names.append(name)
    return names


def contact_sheet(out: Path, names: list[str]) -> Path:
    from .io import load_image, load_mask
    from .viz.overlay import grid, overlay_mask

    cells, labels = [], []
    for name in names:
        image = load_image(out / "images" / f"{name}.jpg")
        cells += [image, overlay_mask(image, load_mask(out / "masks" / f"{name}.png"), color=(40, 200, 60)),
                  overlay_mask(image, load_mask(out / "predictions" / f"{name}.png"))]
        labels += [name, "ground truth", "glassgem"]
    return save_image(out / "contact_sheet.jpg", grid(cells, cols=3, cell=(192, 256), labels=labels), quality=90)


def run_demo(out_dir: str | Path, weights: Optional[str] = None, progress: bool = True) -> int:
    from .mask_eval import evaluate_pairs, pair_files
    from .metrics import format_table, write_json
    from .predict import build_scorer, collect_inputs, predict_files

    out = Path(out_dir)
    scorer = build_scorer(weights)  # the shipped GEM-Lite unless weights are given
    names = make_scenes(out)
    print(f"glassgem demo: {len(names)} built-in example scenes (procedural glass on scikit-image photos) "
          f"in {out}/images, exact masks in {out}/masks")
    photos = collect_inputs([str(out / "images")])
    summary = predict_files(photos, out / "predictions", scorer, overlay=True, progress=progress)
    print(summary.line())
    if summary.failed:
        return 1
    print(f"scoring them as `glassgem evaluate-masks --pred {out}/predictions --gt {out}/masks` does:")
    pairs, _ = pair_files(out / "predictions", out / "masks")
    results = evaluate_pairs(pairs, progress=False)
    print(format_table(results))
    write_json(out / "metrics.json", results)
    sheet = contact_sheet(out, names)
    print(f"overlays: {out}/predictions/*_overlay.jpg; contact sheet: {sheet}; metrics: {out / 'metrics.json'}")
    return 0
