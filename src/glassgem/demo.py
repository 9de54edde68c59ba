"""Interim `glassgem demo`: the evaluation job end to end on a small built-in example.

No trained model ships yet, so the demo scores EXAMPLE predictions (degraded copies of the ground
truth, made here) against procedural scenes drawn in memory, through the same code path as
`glassgem evaluate-masks`. A later version replaces the example predictions with a model's output.
Nothing here reads a dataset: the scenes are generated from a fixed seed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from .io import save_image, save_mask
from .metrics import evaluate_pairs, format_table, pair_files, write_json

W, H = 320, 240
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)

# Glass panes per scene. A window is a grid of panes split by mullions; the last two scenes have no glass
# and only glass, so the table shows the edge-case counters at work.
SCENES: dict[str, list[Box]] = {
    "window_grid": [(40 + 62 * c, 30 + 72 * r, 96 + 62 * c, 96 + 72 * r) for r in range(2) for c in range(4)],
    "glass_door": [(120, 40, 200, 232)],
    "office_partition": [(10, 60, 150, 200), (160, 60, 300, 200)],
    "shopfront": [(20, 50, 180, 180), (220, 40, 290, 236)],
    "empty_room": [],
    "close_up_pane": [(0, 0, W, H)],
}


def _background(rng: np.random.Generator) -> np.ndarray:
    """A wall above a floor, a few pieces of furniture and sensor noise. (H, W, 3) float32 0..255."""
    wall, floor = rng.uniform(120, 230, 3), rng.uniform(50, 140, 3)
    t = np.linspace(0.0, 1.0, H, dtype=np.float32)[:, None, None]
    img = np.where(t < 0.7, wall * (1.1 - 0.3 * t), floor * (0.8 + 0.3 * t)) * np.ones((1, W, 1), np.float32)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, W - 40)), int(rng.integers(H // 3, H - 30))
        img[y0:y0 + int(rng.integers(20, 80)), x0:x0 + int(rng.integers(20, 90))] = rng.uniform(20, 220, 3)
    return img + rng.normal(0, 3, img.shape).astype(np.float32)


def _draw_glass(img: np.ndarray, mask: np.ndarray, box: Box) -> None:
    """A pane: a dark frame around a slightly blue, reflective area (only the area is glass)."""
    x0, y0, x1, y1 = box
    frame = 4 if (x1 - x0) < W else 0  # the close-up pane fills the view: no frame visible
    ys, xs = slice(y0 + frame, y1 - frame), slice(x0 + frame, x1 - frame)
    inside = img[ys, xs].copy()
    img[y0:y1, x0:x1] = 55.0
    yy, xx = np.mgrid[ys, xs]
    streak = (((xx + yy) % 90) < 14).astype(np.float32)[..., None]  # diagonal reflection highlights
    tint = np.array([200.0, 225.0, 235.0], np.float32)
    img[ys, xs] = 0.7 * inside + 0.3 * tint + 35.0 * streak  # the scene behind stays visible
    mask[ys, xs] = 1


def make_scene(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (image uint8 (H, W, 3), glass mask uint8 (H, W) in {0, 1})."""
    rng = np.random.default_rng(seed)
    img = _background(rng)
    mask = np.zeros((H, W), np.uint8)
    for box in SCENES[name]:
        _draw_glass(img, mask, box)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), mask


def example_prediction(mask: np.ndarray, seed: int) -> np.ndarray:
    """A plausible imperfect soft map (uint8 0..255) made from the ground truth, NOT a model output:
    shifted a few pixels, one corner missed, one false-positive blob, edges blurred."""
    rng = np.random.default_rng(seed)
    pred = np.roll(mask, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(0, 1)).astype(np.float32)
    if mask.any():
        ys, xs = np.nonzero(mask)
        cy, cx = int(rng.choice(ys)), int(rng.choice(xs))
        pred[cy:cy + 30, cx:cx + 40] = 0.0  # a missed corner of some pane
        yy, xx = np.mgrid[0:H, 0:W]
        by, bx = int(rng.integers(20, H - 20)), int(rng.integers(20, W - 20))
        pred[((yy - by) / 18.0) ** 2 + ((xx - bx) / 28.0) ** 2 < 1] = 0.8  # a confident false positive
    soft = Image.fromarray(np.clip(pred * 255 + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(soft.filter(ImageFilter.GaussianBlur(2)))


def run_demo(out_dir: str | Path) -> int:
    out = Path(out_dir)
    print("glassgem demo: no trained model is bundled yet, so this scores EXAMPLE predictions (degraded "
          "copies of the ground truth), not model outputs, on procedural scenes.")
    for i, name in enumerate(SCENES):
        img, mask = make_scene(name, seed=i)
        save_image(out / "images" / f"{name}.png", img)
        save_mask(out / "masks" / f"{name}.png", mask)
        save_image(out / "predictions" / f"{name}.png", example_prediction(mask, seed=100 + i))
    print(f"wrote {len(SCENES)} scenes to {out}/images, their masks to {out}/masks and the example "
          f"predictions to {out}/predictions")
    print(f"scoring them as `glassgem evaluate-masks --pred {out}/predictions --gt {out}/masks` does:")
    pairs, _ = pair_files(out / "predictions", out / "masks")
    results = evaluate_pairs(pairs, progress=True)
    print(format_table(results))
    write_json(out / "metrics.json", results)
    print(f"metrics: {out / 'metrics.json'}")
    return 0
