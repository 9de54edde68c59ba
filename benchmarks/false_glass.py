"""False glass on photos without glass. A script, not a test: it prints numbers.

    python benchmarks/false_glass.py [--weights DIR ...] [--size 384] [--sheet FILE.png]

The photos are the glass-free sample photos that ship inside installed packages (scikit-image,
scikit-learn, matplotlib: glassgem.data.samples), so nothing is downloaded. For each model it prints the
fraction of every photo predicted as glass (the paper's protocol: squash to --size, argmax of the
semantic scores) and the means over all photos and over the held-out ones (those no glassgem training
data uses). With --sheet, writes the photos with the first model's predicted glass (red).
"""
from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from glassgem import GEM
    from glassgem.data.samples import HELD_OUT, glass_free_photos
    from glassgem.io import save_image
    from glassgem.viz.overlay import grid, overlay_mask

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="*", default=[None], help="glassgem dirs (default: the shipped model)")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--sheet", default=None, help="also save the first model's masks on the photos here")
    args = ap.parse_args()
    photos = glass_free_photos()
    models = {str(w or "shipped"): GEM.from_pretrained(w).fuse_for_inference() for w in args.weights}
    masks = {name: {n: m.predict(p, size=args.size) for n, p in photos.items()} for name, m in models.items()}
    print(f"{'photo':32s} " + " ".join(f"{name[-24:]:>24s}" for name in models))
    for n in photos:
        print(f"{n:32s} " + " ".join(f"{masks[name][n].mean():24.3f}" for name in models))
    print(f"{'mean, all photos':32s} "
          + " ".join(f"{np.mean([v.mean() for v in masks[name].values()]):24.3f}" for name in models))
    print(f"{'mean, held out':32s} "
          + " ".join(f"{np.mean([masks[name][n].mean() for n in HELD_OUT]):24.3f}" for name in models))
    if args.sheet:
        first = next(iter(models))
        cells = [overlay_mask(p, masks[first][n]) for n, p in photos.items()]
        save_image(args.sheet, grid(cells, cols=5, cell=(160, 200), labels=list(photos)))
        print(f"sheet: {args.sheet}")


if __name__ == "__main__":
    main()
