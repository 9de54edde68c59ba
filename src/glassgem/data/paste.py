"""Real glass pasted small into real photos: scenes in which glass is a small part of the view.

Most glass a robot or a street camera sees covers a few percent of the frame (a shop window down the
street, a car's windows, a door at the end of a corridor), and labelled real scenes with such glass are
few. `paste_glass` (`glassgem data paste`) makes more of them from the labelled photos there are: each
output takes one photo of the `onto` set (any labelled photo, with or without glass) and one piece of
glass from the `glass` set, a connected glass region of a labelled photo cut out with its bounding box
grown by `margin` on every side, so that the frame, wall or car body around the pane comes along. The
piece is scaled so that its glass covers a share of the output drawn from `share`, flipped left-right
at random, and laid at a random place; its border fades into the photo over `feather` of its shorter
side so that no hard seam marks where it is. The mask is the piece's where the piece shows through by
half or more, the photo's elsewhere.

Photos larger than `max_side` are scaled down first (training scales them further anyway). Output k
depends only on `seed` and k, so a set is reproducible and a longer set begins with the shorter one.
Outputs go to OUT/images/paste_<k>.jpg with masks in OUT/masks/, and OUT/paste.json records the
settings and, for every output, both sources, the piece's box, scale, flip and place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError
from ..io import atomic_write_text, load_mask, save_image, save_mask
from .crops import check_range
from .layouts import Pair
from .negatives import load_labelled_pair, refuse_filled_output
from .transforms import resize_image

MANIFEST = "paste.json"


@dataclass(frozen=True)
class Piece:
    """A glass region of a labelled photo: the photo, its box (top, left, h, w) and the glass pixels in it."""

    pair: Pair
    box: tuple[int, int, int, int]
    glass: int


def glass_pieces(mask: np.ndarray, margin: float, min_share: float) -> list[tuple[tuple[int, int, int, int], int]]:
    """(box, glass pixels in it) of every connected glass region of a {0,1} mask covering at least
    `min_share` of it, the region's bounding box grown by `margin` x its height/width on each side
    (clipped to the mask)."""
    from scipy import ndimage

    m = np.asarray(mask) > 0
    H, W = m.shape
    labels, _ = ndimage.label(m)
    pieces = []
    for index, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        rows, cols = found
        if int((labels[found] == index).sum()) < min_share * H * W:
            continue
        h, w = rows.stop - rows.start, cols.stop - cols.start
        top, left = max(0, rows.start - round(margin * h)), max(0, cols.start - round(margin * w))
        bottom, right = min(H, rows.stop + round(margin * h)), min(W, cols.stop + round(margin * w))
        box = (top, left, bottom - top, right - left)
        pieces.append((box, int(m[top:bottom, left:right].sum())))
    return pieces


def _fit(image: np.ndarray, mask: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """The photo and mask scaled down so that the longer side is at most `max_side`."""
    H, W = mask.shape
    f = max_side / max(H, W)
    if f >= 1:
        return image, mask
    hw = (max(1, round(H * f)), max(1, round(W * f)))
    return resize_image(image, hw), _resize_mask(mask, hw)


def _resize_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """A {0,1} mask resized to (h, w) by area-weighted interpolation, then cut at one half (not
    transforms.resize_mask's nearest neighbour, which drops thin panes when shrinking)."""
    grey = Image.fromarray((np.asarray(mask) > 0).astype(np.float32))
    return (np.asarray(grey.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)) >= 0.5).astype(np.uint8)


def fade(h: int, w: int, width: int) -> np.ndarray:
    """[h, w] weights rising from the border to 1 over `width` pixels (all 1 when width is 0)."""
    if width <= 0:
        return np.ones((h, w), np.float32)
    ys = np.minimum(np.arange(h), np.arange(h)[::-1])
    xs = np.minimum(np.arange(w), np.arange(w)[::-1])
    edge = np.minimum(ys[:, None], xs[None, :]).astype(np.float32)
    return np.clip((edge + 0.5) / width, 0.0, 1.0)


def paste_one(
    photo: np.ndarray,
    photo_mask: np.ndarray,
    piece: np.ndarray,
    piece_mask: np.ndarray,
    at: tuple[int, int],
    feather: float,
) -> tuple[np.ndarray, np.ndarray]:
    """`piece` (RGB, already scaled) laid on `photo` with its top-left corner at `at`, faded in over
    `feather` of its shorter side; the mask is the piece's where its weight is >= 1/2."""
    top, left = at
    h, w = piece_mask.shape
    alpha = fade(h, w, round(feather * min(h, w)))
    out, out_mask = photo.copy(), photo_mask.copy()
    region = out[top : top + h, left : left + w].astype(np.float32)
    blended = alpha[..., None] * piece.astype(np.float32) + (1 - alpha[..., None]) * region
    out[top : top + h, left : left + w] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    shows = alpha >= 0.5
    out_mask[top : top + h, left : left + w] = np.where(shows, piece_mask, out_mask[top : top + h, left : left + w])
    return out, out_mask


def paste_glass(
    glass: Sequence[Pair],
    onto: Sequence[Pair],
    out_dir: str | os.PathLike,
    n: int,
    share: tuple[float, float] = (0.01, 0.10),
    margin: float = 0.25,
    feather: float = 0.08,
    min_share: float = 0.003,
    max_side: int = 1024,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Write `n` outputs (module docstring); returns the record written to OUT/paste.json."""
    from tqdm.auto import tqdm

    check_range("--share", *share, 0.0005, 0.5)
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    if not (0 <= margin <= 2 and 0 <= feather <= 0.5 and 0 <= min_share < 1 and max_side >= 64):
        raise ConfigError(
            "--margin must be in 0-2, --feather in 0-0.5, --min-share in 0-1 and --max-side >= 64, got "
            f"{margin:g}, {feather:g}, {min_share:g}, {max_side}"
        )
    if not onto:
        raise DataError("no photos to paste onto")
    for pair in [*glass, *onto]:
        pair.labelled_mask()  # DataError naming an image without a mask, before anything is written
    out = refuse_filled_output(out_dir)
    pieces = [
        Piece(pair, box, count)
        for pair in tqdm(glass, desc="finding glass", unit="img", disable=not progress)
        for box, count in glass_pieces(load_mask(pair.labelled_mask()), margin, min_share)
    ]
    if not pieces:
        raise DataError(f"no glass region of {min_share:g} of a photo or more in {len(glass)} labelled photos")
    written: list[dict] = []
    for k in tqdm(range(n), desc="pasting", unit="img", disable=not progress):
        rng = np.random.default_rng([seed, k])
        piece = pieces[int(rng.integers(len(pieces)))]
        target = onto[int(rng.integers(len(onto)))]
        wanted, flip = float(rng.uniform(*share)), bool(rng.integers(2))
        photo, photo_mask = _fit(*load_labelled_pair(target), max_side)
        H, W = photo_mask.shape
        top, left, h, w = piece.box
        # Scaled so that its glass covers `wanted` of the output, and at most 0.9 of either side.
        scale = min(float(np.sqrt(wanted * H * W / piece.glass)), 0.9 * H / h, 0.9 * W / w)
        ph, pw = max(1, round(h * scale)), max(1, round(w * scale))
        image, mask = load_labelled_pair(piece.pair)
        cut_arr = resize_image(image[top : top + h, left : left + w], (ph, pw))
        cut_mask = _resize_mask(mask[top : top + h, left : left + w], (ph, pw))
        if flip:
            cut_arr, cut_mask = cut_arr[:, ::-1], cut_mask[:, ::-1]
        at = (int(rng.integers(0, H - ph + 1)), int(rng.integers(0, W - pw + 1)))
        result, result_mask = paste_one(photo, photo_mask, cut_arr, cut_mask, at, feather)
        name = f"paste_{k:05d}"
        save_image(out / "images" / f"{name}.jpg", result, quality=92)
        save_mask(out / "masks" / f"{name}.png", result_mask)
        written.append(
            {
                "name": name,
                "onto": str(target.image_path),
                "glass_from": str(piece.pair.image_path),
                "box": list(piece.box),
                "scale": round(scale, 4),
                "flip": flip,
                "at": list(at),
                "size": [ph, pw],
                "pasted_share": round(float(cut_mask.sum()) / (H * W), 4),
                "glass": round(float(result_mask.mean()), 4),
            }
        )
    record = {
        "share": list(share),
        "margin": margin,
        "feather": feather,
        "min_share": min_share,
        "max_side": max_side,
        "seed": seed,
        "pieces": len(pieces),
        "outputs": written,
    }
    atomic_write_text(out / MANIFEST, json.dumps(record, indent=1) + "\n")
    return record
