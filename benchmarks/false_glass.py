"""False glass on photos without glass. A script, not a test: it prints numbers.

    python benchmarks/false_glass.py [--weights DIR ...] [--size 384] [--sheet FILE.png]

The photos are the glass-free sample photos that ship inside installed packages (scikit-image,
scikit-learn, matplotlib), so nothing is downloaded. For each model it prints the fraction of every photo
predicted as glass (the paper's protocol: squash to --size, argmax of the semantic scores) and the mean.
Some scikit-image photos are also the backgrounds of glassgem's procedural scenes (synth/backgrounds.py):
a model trained on procedural scenes has seen them; the scikit-learn and matplotlib ones no glassgem
model has. With --sheet, writes the photos with their predicted glass (red) for the first model.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SKIMAGE = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "brick", "grass", "gravel",
           "immunohistochemistry", "moon", "hubble_deep_field")


def sample_photos() -> dict[str, np.ndarray]:
    """name -> uint8 RGB array of every glass-free sample photo this environment has."""
    import matplotlib
    import sklearn.datasets
    from skimage import data

    from glassgem.io import load_image

    photos = {}
    for name in SKIMAGE:
        img = getattr(data, name)()
        photos[f"skimage:{name}"] = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img[..., :3]
    for name in ("china.jpg", "flower.jpg"):
        photos[f"sklearn:{name}"] = load_image(Path(sklearn.datasets.__file__).parent / "images" / name)
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if hopper.is_file():
        photos["matplotlib:grace_hopper.jpg"] = load_image(hopper)
    return photos


def main() -> None:
    from glassgem import GEM
    from glassgem.io import save_image
    from glassgem.viz.overlay import grid, overlay_mask

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="*", default=[None], help="glassgem dirs (default: the shipped model)")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--sheet", default=None, help="also save the first model's masks on the photos here")
    args = ap.parse_args()
    photos = sample_photos()
    models = {str(w or "shipped"): GEM.from_pretrained(w).fuse_for_inference() for w in args.weights}
    masks = {name: {n: m.predict(p, size=args.size) for n, p in photos.items()} for name, m in models.items()}
    print(f"{'photo':32s} " + " ".join(f"{name[-24:]:>24s}" for name in models))
    for n in photos:
        print(f"{n:32s} " + " ".join(f"{masks[name][n].mean():24.3f}" for name in models))
    print(f"{'mean fraction predicted glass':32s} "
          + " ".join(f"{np.mean([v.mean() for v in masks[name].values()]):24.3f}" for name in models))
    if args.sheet:
        first = next(iter(models))
        cells = [overlay_mask(p, masks[first][n]) for n, p in photos.items()]
        save_image(args.sheet, grid(cells, cols=5, cell=(160, 200), labels=list(photos)))
        print(f"sheet: {args.sheet}")


if __name__ == "__main__":
    main()
