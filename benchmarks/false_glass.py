"""False glass on photos without glass. A script, not a test: it prints numbers.

    python benchmarks/false_glass.py [--weights DIR ...] [--size 384] [--sheet FILE.png]

The photos are the glass-free sample photos that ship inside installed packages (scikit-image,
scikit-learn, matplotlib: glassgem.data.samples), so nothing is downloaded. For each model it prints the
fraction of every photo predicted as glass (the paper's protocol: squash to --size, argmax of the
semantic scores) with, in brackets, the photo's mean glass probability, and the means over all photos and
over the held-out ones (those no glassgem training data uses). The probability tells a confident mistake
(p near 1) from an undecided model (p near 0.5), where the argmax fraction flips between nearly equal
weights. With --sheet, writes the photos with the first model's predicted glass (red).
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from glassgem import GEM
    from glassgem.data.samples import HELD_OUT, glass_free_photos
    from glassgem.io import save_image
    from glassgem.overlay import grid, overlay_mask

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="*", default=[None], help="glassgem dirs (default: the shipped model)")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--sheet", default=None, help="also save the first model's masks on the photos here")
    args = ap.parse_args()
    photos = glass_free_photos()
    models = {str(w or "shipped"): GEM.from_pretrained(w).fuse_for_inference() for w in args.weights}
    masks, probs = {}, {}
    for name, m in models.items():  # one forward pass a photo: the scores are >= 0, so glass wins iff p > 0.5
        prob = {n: m.predict(p, size=args.size, return_prob=True) for n, p in photos.items()}
        masks[name] = {n: (v > 0.5).astype(np.uint8) for n, v in prob.items()}
        probs[name] = {n: float(v.mean()) for n, v in prob.items()}

    def row(names):  # per model: mean glass fraction (mean glass probability) over the photos `names`
        return " ".join(
            f"{np.mean([masks[k][n].mean() for n in names]):17.3f} (p {np.mean([probs[k][n] for n in names]):.2f})"
            for k in models
        )

    print(f"{'photo':32s} " + " ".join(f"{name[-24:]:>24s}" for name in models))
    for n in photos:
        print(f"{n:32s} " + row([n]))
    print(f"{'mean, all photos':32s} " + row(list(photos)))
    print(f"{'mean, held out':32s} " + row(list(HELD_OUT)))
    if args.sheet:
        first = next(iter(models))
        cells = [overlay_mask(p, masks[first][n]) for n, p in photos.items()]
        save_image(args.sheet, grid(cells, cols=5, cell=(160, 200), labels=list(photos)))
        print(f"sheet: {args.sheet}")


if __name__ == "__main__":
    main()
