"""Where discerning query selection looks (the paper's Figure 6) and how the decoder's boxes move.

`query_figure` squashes a photo to the network size, as the test protocol does, predicts its glass
mask and draws, on the photo at its own size: the mask in red (semi-transparent) and, as yellow dots,
the centres of the stride-16 cells whose features DQS picked as the decoder's initial queries, mapped
back from the squashed input to the photo. With `all_layers` it also draws the decoder's reference
boxes (sigmoid cxcywh, normalised to the image), one small panel per decoder layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..errors import ConfigError
from ..inference.protocol import ImageLike, as_rgb_array, check_size, glass_mask, squash, unsquash
from ..model.gem import GEM
from ..model.postprocess import semantic_map, smooth_scores
from ..overlay import GLASS_RED, overlay_mask

YELLOW = (255, 255, 0)
DOT_EDGE = (40, 40, 40)


def cell_centres(indices: np.ndarray, grid: tuple[int, int], image_hw: tuple[int, int]) -> np.ndarray:
    """Flat stride-16 cell indices (y·gw + x) -> [K, 2] (x, y) centres in the photo's pixel coordinates.

    Continuous coordinates: pixel (row i, column j) covers [j, j+1) x [i, i+1). A cell's centre in the
    squashed input, (x + 0.5)·16, scales by W / (16·gw) back to the photo: (x + 0.5)·W / gw.
    """
    gh, gw = grid
    h, w = image_hw
    idx = np.asarray(indices, dtype=np.int64)
    return np.stack([(idx % gw + 0.5) * w / gw, (idx // gw + 0.5) * h / gh], axis=1)


def dot_radius(grid: tuple[int, int], image_hw: tuple[int, int]) -> float:
    """About a fifth of a cell, so neighbouring dots never touch."""
    cell = min(image_hw[0] / grid[0], image_hw[1] / grid[1])
    return max(1.5, 0.2 * cell)


def draw_dots(picture: np.ndarray, points: np.ndarray, radius: float, color=YELLOW) -> np.ndarray:
    """Filled dots (dark rim when there is room for one) centred on continuous (x, y) points."""
    img = Image.fromarray(picture)
    draw = ImageDraw.Draw(img)
    rim = 1 if radius >= 3 else 0
    for x, y in points:
        cx, cy = x - 0.5, y - 0.5  # PIL puts integer coordinates on pixel centres
        draw.ellipse(
            (cx - radius, cy - radius, cx + radius, cy + radius),
            fill=color,
            outline=DOT_EDGE if rim else None,
            width=rim,
        )
        if rim:  # the rim is drawn inside the box: keep the centre pixel's colour exact
            draw.point((int(x), int(y)), fill=color)
    return np.asarray(img)


@torch.no_grad()
def run_queries(model: GEM, image: np.ndarray, size: int | None = None) -> dict[str, Any]:
    """Model pass on one photo -> {"mask" uint8 [H,W] {0,1}, "indices" [K] by descending DQS score,
    "grid" (gh, gw), "references" [L+1, K, 4] sigmoid cxcywh, "input_size" (s, s)}."""
    if getattr(model, "query_selection", None) is None:
        raise ConfigError("this model has no discerning query selection (use_dqs is off): no query positions to show")
    size = check_size(size or model.cfg.image_size)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        x = squash(image, size)[None].to(device)
        out = model(x, internals=True)
        sem = semantic_map(out["pred_logits"], out["pred_masks"], (size, size))
        sem = smooth_scores(sem, getattr(model.cfg, "score_smoothing", 0.0))  # the mask predict gives
    finally:
        model.train(was_training)
    return {
        "mask": glass_mask(unsquash(sem.float().cpu(), image.shape[:2])[0]).numpy(),
        "indices": out["query_indices"][0].cpu().numpy(),
        "grid": tuple(int(v) for v in out["proposal_cls_logits"].shape[-2:]),
        "references": out["references"][0].float().cpu().numpy(),
        "input_size": (size, size),
    }


def query_figure(
    model: GEM,
    image: ImageLike,
    size: int | None = None,
    all_layers: bool = False,
    max_boxes: int | None = None,
    alpha: float = 0.45,
) -> tuple[np.ndarray, dict[str, Any]]:
    """-> (figure uint8 RGB, info).

    Without `all_layers` the figure is the photo at its own size with the glass mask in red and the
    selected positions as yellow dots. With `all_layers` it is a grid of panels (matplotlib): that
    picture, then the reference boxes of every query (of the `max_boxes` best-ranked ones) before the
    first decoder layer and after each.
    info: "points" [K, 2] float (x, y) dot centres by descending DQS score, "pixels" [K, 2] int (x, y)
    pixels they fall in, "indices" [K] flat cell indices, "grid" (gh, gw), "image_size" (H, W),
    "input_size", "dot_radius", "glass_fraction", "references" [L+1, K, 4] (normalised cxcywh).
    """
    img = as_rgb_array(image)
    res = run_queries(model, img, size)
    hw = img.shape[:2]
    points = cell_centres(res["indices"], res["grid"], hw)
    radius = dot_radius(res["grid"], hw)
    tinted = overlay_mask(img, res["mask"], GLASS_RED, alpha)
    picture = draw_dots(tinted, points, radius)
    info = {
        "points": points,
        "pixels": np.floor(points).astype(np.int64),
        "indices": res["indices"],
        "grid": res["grid"],
        "image_size": hw,
        "input_size": res["input_size"],
        "dot_radius": radius,
        "glass_fraction": float(res["mask"].mean()),
        "references": res["references"],
    }
    if all_layers:
        return layer_panels(picture, res["references"], tinted, max_boxes=max_boxes), info
    return picture, info


def layer_panels(
    picture: np.ndarray,
    references: np.ndarray,
    background: np.ndarray | None = None,
    max_boxes: int | None = None,
    cols: int = 4,
    panel_inches: float = 2.5,
) -> np.ndarray:
    """Grid of panels: `picture`, then one per entry of `references` [L+1, K, 4] with the boxes of the
    queries (the first `max_boxes`, i.e. the best-ranked, if given) drawn on a faded copy of `background`
    (default `picture`), coloured by query rank. -> uint8 RGB."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    h, w = picture.shape[:2]
    n = 1 + len(references)
    cols = min(cols, n)
    rows = -(-n // cols)
    aspect = h / w
    fig = Figure(figsize=(cols * panel_inches, rows * (panel_inches * aspect + 0.35) + 0.4), dpi=100)
    canvas = FigureCanvasAgg(fig)  # also fig.canvas
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    base = (picture if background is None else background).astype(np.float32)
    # a pale grey copy: the coloured boxes stand out, and the figure stays small as a JPEG
    luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    faded = np.repeat((base @ luma * 0.3 + 178.5)[..., None], 3, axis=2).astype(np.uint8)
    k = references.shape[1]
    shown = k if max_boxes is None else max(0, min(int(max_boxes), k))
    colors = colormaps["plasma"](np.linspace(0.0, 0.85, max(shown, 1)))
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        if i == 0:
            ax.imshow(picture)
            ax.set_title(f"DQS positions (top {k})", fontsize=9)
            continue
        ax.imshow(faded)
        boxes = references[i - 1]
        for q in range(shown - 1, -1, -1):  # best-ranked queries drawn last, on top
            cx, cy, bw, bh = boxes[q]
            ax.add_patch(
                Rectangle(
                    ((cx - bw / 2) * w, (cy - bh / 2) * h),
                    bw * w,
                    bh * h,
                    fill=False,
                    linewidth=0.6,
                    edgecolor=colors[q],
                )
            )
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title("initial anchors" if i == 1 else f"after decoder layer {i - 1}", fontsize=9)
    fig.suptitle("Reference boxes per decoder layer (colour: query rank, dark = best DQS score)", fontsize=10)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


__all__ = ["YELLOW", "cell_centres", "draw_dots", "dot_radius", "layer_panels", "query_figure", "run_queries"]
