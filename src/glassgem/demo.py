"""`glassgem demo` (what `make demo` runs): the shipped model end to end on real scenes and built-in ones.

First the job itself: the dev split of the hand-labelled real-scene set (`glassgem data real-scenes`:
rooms, offices, streets, vehicles, of sources no shipped model was trained on). glassgem ships the
labels, not the photos, so the demo rebuilds the split from the photos' public repositories
(`--scenes-from`, default https://github.com) into `--real-scenes`, once; offline, it says how and goes
on. It predicts every photo with overlays, prints the metric table with the predicted/true glass area
per glass-share bin, and draws a sheet of truth against prediction.

Then built-in example scenes.

No dataset image ships with glassgem, so the examples are procedural glass scenes (glassgem's own
synthesiser compositing panes, doors and windows onto scikit-image's permissively licensed sample
photos), with exact ground-truth masks. The demo goes through the same code as the commands a user runs:
`glassgem predict` (masks, overlays) and `glassgem evaluate-masks` (the GSD-S metric table), and adds a
contact sheet: photo | ground truth | prediction for every scene.

Then the other half of the job: photos *without* glass. The demo scores every installed photo of the
held-out sources of `glassgem data photos` (photos no shipped model was trained on: scikit-learn's and
matplotlib's samples, plus MATE's, UKUI's and sway's desktop backgrounds where those Debian packages are
installed), all of them, and prints the fraction of each predicted as glass, the mean, and how many
stay under 1%, with a contact sheet of the masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .data.photos import DEBIAN_PACKAGES, corpus_name, heldout_photos, scale_down
from .evaluation.mask_eval import evaluate_pairs, pair_files
from .evaluation.metrics import format_table, write_json
from .evaluation.report import false_glass_summary
from .inference.files import collect_inputs
from .inference.predict import predict_files
from .inference.scorers import build_scorer
from .io import load_image, load_mask, save_image, save_mask
from .overlay import grid, overlay_mask
from .synth.procedural.backgrounds import default_backgrounds
from .synth.procedural.render import generate_scene

N_SCENES = 8
SCENE_SEED = 2024
SCENE_SIZE = (512, 384)  # W, H


def make_scenes(out: Path, n: int = N_SCENES) -> list[str]:
    """Write `n` procedural scenes to out/images and their masks to out/masks; return their names."""
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
    cells, labels = [], []
    for name in names:
        image = load_image(out / "images" / f"{name}.jpg")
        cells += [
            image,
            overlay_mask(image, load_mask(out / "masks" / f"{name}.png"), color=(40, 200, 60)),
            overlay_mask(image, load_mask(out / "predictions" / f"{name}.png")),
        ]
        labels += [name, "ground truth", "glassgem"]
    return save_image(out / "contact_sheet.jpg", grid(cells, cols=3, cell=(192, 256), labels=labels), quality=90)


def truth_against_prediction(
    pairs: Sequence[tuple[Path, Path]], images: Path, sheet: Path, cols: int, cell: tuple[int, int], quality: int = 85
) -> Path:
    """A sheet of (prediction file, truth file) pairs, each photo (found in `images` by the truth's stem)
    twice: truth tinted green, prediction red, each labelled with its glass share."""
    cells, labels = [], []
    for pred, gt in pairs:
        image = load_image(next(images.glob(f"{gt.stem}.*")))
        truth, mask = load_mask(gt), load_mask(pred)
        cells += [overlay_mask(image, truth, color=(40, 200, 60)), overlay_mask(image, mask)]
        labels += [f"{gt.stem.split('__')[-1][:24]} truth {truth.mean():.0%}", f"predicted {mask.mean():.0%}"]
    return save_image(sheet, grid(cells, cols=cols, cell=cell, labels=labels), quality=quality)


def real_scenes(out: Path, scenes: Path, origin: str, scorer, progress: bool = True) -> int:
    """Predict the real-scene dev split (rebuilt from `origin` into `scenes` if missing) into
    out/predictions; print the metrics with the per-bin table; a truth-against-prediction sheet."""
    from .data.real_scenes import rebuild
    from .errors import GlassgemError

    dev = scenes / "dev"
    if not (dev / "images").is_dir():
        print(f"glassgem demo: fetching the real-scene dev photos from {origin} into {scenes} (once) ...")
        try:
            rebuild(origin, scenes, ("dev",), progress=progress)
        except GlassgemError as e:
            print(
                f"  could not fetch them ({e}); skipping the real scenes. Offline, rebuild them from local "
                f"clones: glassgem data real-scenes --from DIR --out {scenes} --split dev"
            )
            return 0
    print(
        f"glassgem demo: {len(list((dev / 'images').iterdir()))} real scenes of sources no shipped model was "
        f"trained on, hand-labelled ({dev})"
    )
    summary = predict_files(
        collect_inputs([str(dev / "images")]), out / "predictions", scorer, overlay=True, progress=progress
    )
    print(summary.line())
    if summary.failed:
        return 1
    pairs, _ = pair_files(out / "predictions", dev / "masks")
    results = evaluate_pairs(pairs, progress=False)
    print(format_table(results))
    write_json(out / "metrics.json", results)
    sheet = truth_against_prediction(pairs, dev / "images", out / "contact_sheet.jpg", cols=4, cell=(150, 200))
    print(f"overlays: {out}/predictions/*_overlay.jpg; truth (green) against prediction (red): {sheet}\n")
    return 0


def run_demo(
    out_dir: str | Path,
    weights: str | None = None,
    progress: bool = True,
    also: Sequence[str] = (),
    scenes: str | Path | None = None,
    scenes_from: str = "https://github.com",
) -> int:
    """The real scenes (when `scenes` is given), the built-in scenes and the glass-free photos with
    `weights` (default: the shipped default); then the glass-free photos again with each model in `also`
    (e.g. the fast gem-lite), for comparison."""
    out = Path(out_dir)
    scorer = build_scorer(weights)  # the shipped default unless weights are given
    extra = [(name, build_scorer(name)) for name in also]  # fail on a bad name before any work
    if scenes is not None and real_scenes(out / "real_scenes", Path(scenes), scenes_from, scorer, progress):
        return 1
    names = make_scenes(out)
    print(
        f"glassgem demo: {len(names)} built-in example scenes (procedural glass on scikit-image photos) "
        f"in {out}/images, exact masks in {out}/masks"
    )
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
    pictures = glass_free_photos(out / "glass_free")
    images = out / "glass_free" / "images"
    rc = glass_free(out / "glass_free", images, pictures, scorer, progress)
    for name, other in extra:
        if rc:
            break
        print(f"\nthe same photos with `--weights {name}`:")
        rc = glass_free(out / f"glass_free_{Path(name).name}", images, pictures, other, progress)
    return rc


def glass_free_photos(out: Path) -> dict[str, np.ndarray]:
    """Every installed held-out glass-free photo (no picking), scaled to 640 px and written to out/images."""
    kept, missing = heldout_photos()
    print(
        f"\nglassgem demo: {len(kept)} glass-free photos of sources no shipped model was trained on "
        f"({', '.join(sorted({p.source for p, _ in kept}))}), in {out}/images"
    )
    if missing:
        print(f"  (more with: apt-get install {' '.join(m for m in missing if m in DEBIAN_PACKAGES)})")
    pictures = {corpus_name(photo): scale_down(image, 640) for photo, image in kept}
    for name, picture in pictures.items():
        save_image(out / "images" / f"{name}.png", picture)
    return pictures


def glass_free(out: Path, images: Path, pictures: dict[str, np.ndarray], scorer, progress: bool = True) -> int:
    """Predict the glass-free photos (written to `images`) into out/predictions; print the false glass of
    each and its mean; a contact sheet."""
    summary = predict_files(collect_inputs([str(images)]), out / "predictions", scorer, progress=progress)
    if summary.failed:
        return 1
    cells, labels, fractions = [], [], []
    for name, picture in pictures.items():
        mask = load_mask(out / "predictions" / f"{name}.png")
        fractions.append(float(mask.mean()))
        print(f"  {name:60s} {100 * fractions[-1]:6.1f}% predicted glass")
        cells.append(overlay_mask(picture, mask))  # the PNG just written holds these same pixels
        labels.append(f"{100 * fractions[-1]:.1f}% {name.split('__')[-1]}"[:34])
    fg = false_glass_summary(fractions)
    print(
        f"false glass: mean {fg['false_glass']:.3f} of the pixels; {fg['clean']} of {fg['n']} photos "
        "under 1% (glass marked in red on the sheet)"
    )
    sheet = save_image(out / "contact_sheet.jpg", grid(cells, cols=6, cell=(160, 213), labels=labels), quality=88)
    print(f"contact sheet: {sheet}")
    return 0
