"""Glass-free crops of real photos: negatives to measure false glass with, or to train it away.

Every photo of GDD (and of GSD-S) contains glass, so a model trained and selected on them is never asked
what a photo *without* glass looks like, and a camera frame of a plain corridor is where a robot needs
that answer most. `glass_free_crops` cuts from each photo the largest rectangle its mask leaves free of
glass (`glassgem data negatives`) and writes it with an all-background mask, in the images/ + masks/
layout every glassgem command reads. `glassgem evaluate` on such a folder then reads as a false-glass
measure: MAE = the mean fraction of each crop predicted as glass, BER = 100 x that fraction (only the
background class is present), IoU = the fraction of crops with no glass predicted at all.

Finding the rectangle: the mask is cut into `cell` x `cell` pixel cells, a cell is free only if none of its
pixels is glass (conservative), and the largest free rectangle of cells is found row by row with the
largest-rectangle-in-a-histogram stack method (O(cells)). A rectangle longer than `max_aspect` times its
width (or the reverse) is trimmed around its centre, since the test protocol squashes every photo square.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..io import atomic_write_text, load_image, load_mask, save_image, save_mask
from .layouts import Pair

MANIFEST = "negatives.json"


def _largest_in_histogram(heights: np.ndarray) -> tuple[int, int, int]:
    """(area, left, width) of the largest rectangle under a histogram of bar heights."""
    best = (0, 0, 0)
    stack: list[int] = []  # indices of bars with increasing heights
    n = len(heights)
    for i in range(n + 1):
        h = int(heights[i]) if i < n else 0
        while stack and int(heights[stack[-1]]) >= h:
            top = int(heights[stack.pop()])
            left = stack[-1] + 1 if stack else 0
            area = top * (i - left)
            if area > best[0]:
                best = (area, left, i - left)
        stack.append(i)
    return best


def largest_free_rectangle(occupied: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) of the largest all-False rectangle of a bool grid, or None if none."""
    grid = np.asarray(occupied, dtype=bool)
    heights = np.zeros(grid.shape[1], np.int64)
    best, box = 0, None
    for r in range(grid.shape[0]):
        heights = np.where(grid[r], 0, heights + 1)  # free cells stacked up to this row
        area, left, width = _largest_in_histogram(heights)
        if area > best:
            height = area // width
            best, box = area, (r - height + 1, left, height, width)
    return box


def glass_free_box(mask: np.ndarray, cell: int = 8, max_aspect: float = 2.0) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) in pixels of the largest glass-free rectangle of a {0,1} mask [H, W],
    on a grid of `cell`-pixel cells, trimmed to an aspect ratio of at most `max_aspect`; None if no cell
    is free."""
    if cell < 1 or max_aspect < 1:
        raise ConfigError(f"cell must be >= 1 and max_aspect >= 1, got {cell}, {max_aspect}")
    m = np.asarray(mask) > 0
    H, W = m.shape
    gh, gw = -(-H // cell), -(-W // cell)
    padded = np.zeros((gh * cell, gw * cell), bool)
    padded[:H, :W] = m
    occupied = np.asarray(padded.reshape(gh, cell, gw, cell).any(axis=(1, 3)))
    # Cells past the photo's edge are padding (free); the box is clipped to the photo below.
    box = largest_free_rectangle(occupied)
    if box is None:
        return None
    top, left = box[0] * cell, box[1] * cell
    h, w = min(box[2] * cell, H - top), min(box[3] * cell, W - left)
    if h > max_aspect * w:
        top += (h - int(max_aspect * w)) // 2
        h = int(max_aspect * w)
    elif w > max_aspect * h:
        left += (w - int(max_aspect * h)) // 2
        w = int(max_aspect * h)
    return top, left, h, w


def refuse_filled_output(out_dir: str | os.PathLike) -> Path:
    """The output folder of a crop writer, refused (DataError) when its images/ or masks/ already hold files:
    crops of an earlier run with other settings would mix in silently."""
    out = Path(out_dir)
    for sub in ("images", "masks"):
        if (out / sub).is_dir() and any((out / sub).iterdir()):
            raise DataError(f"{out / sub}: already holds files; give an empty or new --out folder")
    return out


def load_labelled_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """(image, {0,1} mask) of a pair that must have a mask of the image's size (DataError naming both)."""
    mask = load_mask(pair.labelled_mask())
    image = load_image(pair.image_path)
    if image.shape[:2] != mask.shape:
        raise DataError(
            f"size mismatch: image {pair.image_path} is {image.shape[1]}x{image.shape[0]} "
            f"(WxH) but mask {pair.mask_path} is {mask.shape[1]}x{mask.shape[0]}"
        )
    return image, mask


@dataclass
class NegativesSummary:
    written: list[dict] = field(default_factory=list)  # {"name", "source", "box": [top, left, h, w]}
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image, why)
    eligible: int = 0  # photos with a large enough glass-free rectangle (more than written when sampling)

    def line(self) -> str:
        s = f"{len(self.written)} glass-free crops written"
        if self.eligible > len(self.written):
            s += f" (a sample of the {self.eligible} eligible)"
        if self.skipped:
            n = len(self.skipped)
            s += f", {n} photo{'s' if n != 1 else ''} skipped (no glass-free rectangle large enough)"
        return s


def glass_free_crops(
    pairs: Sequence[Pair],
    out_dir: str | os.PathLike,
    min_side: int = 128,
    cell: int = 8,
    max_aspect: float = 2.0,
    sample: int | None = None,
    seed: int = 0,
    prefix: str = "",
    progress: bool = True,
) -> NegativesSummary:
    """Write the largest glass-free rectangle of each pair's photo to out/images/<prefix><stem>.png with
    an all-zero mask out/masks/<prefix><stem>.png, skipping photos whose rectangle has a side under
    `min_side` pixels; out/negatives.json records each crop's source and box.

    `sample`: write only this many of the eligible crops, chosen (in pair order) by
    `np.random.default_rng(seed).choice(n_eligible, sample, replace=False)`, e.g. to mix a set share of
    negatives into a training set; `prefix` keeps their names apart from the photos they came from."""
    from tqdm.auto import tqdm

    if min_side < 1:
        raise ConfigError(f"min_side must be >= 1, got {min_side}")
    if sample is not None and sample < 1:
        raise ConfigError(f"sample must be >= 1, got {sample}")
    if not pairs:
        raise DataError("no image/mask pairs to crop")
    out = refuse_filled_output(out_dir)
    summary = NegativesSummary()
    eligible: list[tuple[Pair, tuple[int, int, int, int]]] = []
    for pair in tqdm(pairs, desc="finding glass-free rectangles", unit="img", disable=not progress):
        if pair.mask_path is None:
            raise DataError(f"{pair.image_path}: no mask, so its glass-free part is unknown")
        _, mask = load_labelled_pair(pair)  # the photo read now, so a bad one fails before anything is written
        box = glass_free_box(mask, cell=cell, max_aspect=max_aspect)
        if box is None or min(box[2], box[3]) < min_side:
            size = "none" if box is None else f"{box[3]}x{box[2]}"
            summary.skipped.append((str(pair.image_path), f"largest glass-free rectangle {size}"))
        else:
            eligible.append((pair, box))
    if not eligible:
        raise DataError(
            f"no photo has a glass-free rectangle of at least {min_side}x{min_side} pixels "
            f"({len(pairs)} photos; lower --min-side)"
        )
    summary.eligible = len(eligible)
    if sample is not None and sample < len(eligible):
        keep = sorted(np.random.default_rng(seed).choice(len(eligible), sample, replace=False).tolist())
        eligible = [eligible[i] for i in keep]
    for pair, (top, left, h, w) in tqdm(eligible, desc="writing crops", unit="img", disable=not progress):
        image = load_image(pair.image_path)
        name = f"{prefix}{pair.stem}"
        save_image(out / "images" / f"{name}.png", image[top : top + h, left : left + w])
        save_mask(out / "masks" / f"{name}.png", np.zeros((h, w), np.uint8))
        summary.written.append({"name": name, "source": str(pair.image_path), "box": [top, left, h, w]})
    record = {
        "min_side": min_side,
        "cell": cell,
        "max_aspect": max_aspect,
        "sample": sample,
        "seed": seed,
        "crops": summary.written,
        "skipped": [{"image": i, "why": w} for i, w in summary.skipped],
    }
    atomic_write_text(out / MANIFEST, json.dumps(record, indent=1) + "\n")
    return summary
