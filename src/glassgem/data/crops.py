"""Low-glass crops of labelled photos: wide-scene conditions made from close-up data.

Photos of glass datasets are close-ups (on GDD, glass covers 58% of a photo on average), so a model can
score well on them while painting most of any scene that contains glass. A crop of such a photo in which
glass covers, say, 5-35% asks the question a wide scene asks. `share_crops` (`glassgem data crops`)
cuts, from every image/mask pair, up to `per_image` random crops whose side is a fraction of the photo's
side drawn from `size` (the same fraction for width and height, so the crop keeps the photo's aspect)
and whose glass share lies in `share`, trying `tries` random boxes per photo. The draw of each photo
depends only on `seed` and the photo's stem, so a set is reproducible and adding photos leaves the crops
of the others unchanged. Crops go to OUT/images/<stem>_c<k>.png with their masks in OUT/masks/, and
OUT/crops.json records the settings and every box.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError, DataError
from ..io import atomic_write_text, save_image, save_mask
from .layouts import Pair
from .negatives import load_labelled_pair, refuse_filled_output

MANIFEST = "crops.json"


def check_range(name: str, lo: float, hi: float, low: float, high: float) -> None:
    if not (low <= lo <= hi <= high):
        raise ConfigError(f"{name} must be LO,HI with {low:g} <= LO <= HI <= {high:g}, got {lo:g},{hi:g}")


def draw_boxes(
    mask: np.ndarray,
    rng: np.random.Generator,
    share: tuple[float, float],
    size: tuple[float, float],
    per_image: int,
    tries: int,
) -> list[tuple[int, int, int, int]]:
    """Up to `per_image` boxes (top, left, h, w) of a {0,1} mask [H, W] whose glass share is in `share`."""
    H, W = mask.shape
    integral = np.zeros((H + 1, W + 1), np.int64)  # glass pixels above-left of each corner
    integral[1:, 1:] = np.cumsum(np.cumsum(mask > 0, axis=0), axis=1)
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(tries):
        if len(boxes) >= per_image:
            break
        f = rng.uniform(*size)
        h, w = max(1, round(f * H)), max(1, round(f * W))
        top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        glass = integral[top + h, left + w] - integral[top, left + w] - integral[top + h, left] + integral[top, left]
        if share[0] <= glass / (h * w) <= share[1]:
            boxes.append((top, left, h, w))
    return boxes


def share_crops(
    pairs: Sequence[Pair],
    out_dir: str | os.PathLike,
    share: tuple[float, float] = (0.05, 0.35),
    size: tuple[float, float] = (0.35, 0.70),
    per_image: int = 2,
    tries: int = 200,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Write the crops (module docstring); returns the record written to OUT/crops.json."""
    from tqdm.auto import tqdm

    check_range("--share", *share, 0.0, 1.0)
    check_range("--size", *size, 0.01, 1.0)
    if per_image < 1 or tries < 1:
        raise ConfigError(f"--per-image and --tries must be >= 1, got {per_image}, {tries}")
    if not pairs:
        raise DataError("no image/mask pairs to crop")
    out = refuse_filled_output(out_dir)
    crops: list[dict] = []
    none: list[str] = []
    for pair in tqdm(pairs, desc="cropping", unit="img", disable=not progress):
        if pair.mask_path is None:
            raise DataError(f"{pair.image_path}: no mask, so the glass share of a crop is unknown")
        image, mask = load_labelled_pair(pair)
        rng = np.random.default_rng([seed, zlib.crc32(pair.stem.encode())])
        boxes = draw_boxes(mask, rng, share, size, per_image, tries)
        if not boxes:
            none.append(str(pair.image_path))
        for k, (top, left, h, w) in enumerate(boxes):
            name = f"{pair.stem}_c{k}"
            m = mask[top : top + h, left : left + w]
            save_image(out / "images" / f"{name}.png", image[top : top + h, left : left + w])
            save_mask(out / "masks" / f"{name}.png", m)
            crops.append(
                {
                    "name": name,
                    "source": str(pair.image_path),
                    "box": [top, left, h, w],
                    "glass": round(float((m > 0).mean()), 4),
                }
            )
    if not crops:
        raise DataError(
            f"no crop of {len(pairs)} photos has a glass share in {share[0]:g}-{share[1]:g}; widen --share or --size"
        )
    record = {
        "share": list(share),
        "size": list(size),
        "per_image": per_image,
        "tries": tries,
        "seed": seed,
        "crops": crops,
        "no_crop": none,
    }
    atomic_write_text(out / MANIFEST, json.dumps(record, indent=1) + "\n")
    return record
