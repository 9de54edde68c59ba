"""Glass masks drawn on photos, and contact sheets of several pictures.

Every function takes and returns uint8 numpy arrays (RGB H x W x 3; masks H x W, any non-zero = glass),
so the results go straight to glassgem.io.save_image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

Color = tuple[int, int, int]
GLASS_RED: Color = (255, 40, 40)
GLASS_CYAN: Color = (0, 220, 255)


def _binary(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., :3].max(axis=2)
    if m.shape != hw:
        raise ValueError(f"mask shape {m.shape} does not match the image's {hw}")
    return m > 0


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """Binary erosion by a 3x3 square, `steps` times; outside the image counts as glass, so a mask
    that touches the border gets no outline along the border."""
    m = mask
    for _ in range(steps):
        p = np.pad(m, 1, mode="edge")
        m = m & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        m &= p[:-2, :-2] & p[:-2, 2:] & p[2:, :-2] & p[2:, 2:]
    return m


def mask_outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """bool [H,W]: the mask pixels within `width` pixels of its edge (always inside the mask)."""
    m = np.asarray(mask) > 0
    return m & ~_erode(m, max(1, int(width)))


def _tint(picture: np.ndarray, region: np.ndarray, color: Color, alpha: float) -> None:
    """Blend `color` at opacity `alpha` into the `region` (bool [H,W]) of a uint8 [H,W,3] picture, in place."""
    # Each channel's result depends only on its input value: a 256-entry table per channel, looked up
    # where `region` is set (6x faster than blending the gathered pixels; the same numbers).
    tint = np.asarray(color, dtype=np.float32)
    values = np.arange(256, dtype=np.uint8)[:, None]
    table = np.clip(values * (1.0 - alpha) + tint * alpha + 0.5, 0, 255).astype(np.uint8)  # [256, 3]
    for c in range(3):
        channel = picture[..., c]
        np.copyto(channel, np.take(table[:, c], channel), where=region)


def overlay_mask(
    image: np.ndarray,
    mask: np.ndarray,
    color: Color = GLASS_RED,
    alpha: float = 0.45,
    outline: bool = True,
    outline_width: int | None = None,
) -> np.ndarray:
    """Tint the glass of `image` (uint8 [H,W,3]) with `color` at opacity `alpha`, plus an opaque
    outline along the mask's edge. Pixels outside the mask are returned unchanged. -> uint8 [H,W,3]."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be uint8 H x W x 3, got {img.dtype} {img.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    glass = _binary(mask, img.shape[:2])
    out = img.copy()
    _tint(out, glass, color, alpha)
    if outline:
        width = outline_width or max(1, round(min(img.shape[:2]) / 250))  # ~2 px on a 500 px photo
        out[mask_outline(glass, width)] = np.asarray(color, dtype=np.uint8)
    return out


def mask_to_rgb(mask: np.ndarray) -> np.ndarray:
    """{0,1} / 0..255 mask [H,W] -> uint8 [H,W,3] white glass on black, for sheets."""
    m = np.asarray(mask)
    m = np.where(m > 0, 255, 0).astype(np.uint8) if m.max(initial=0) <= 1 else m.astype(np.uint8)
    return np.repeat(m[:, :, None], 3, axis=2)


def _as_rgb(picture: np.ndarray) -> np.ndarray:
    p = np.asarray(picture)
    if p.ndim == 2:
        return mask_to_rgb(p) if p.max(initial=0) <= 1 else np.repeat(p.astype(np.uint8)[:, :, None], 3, axis=2)
    if p.ndim == 3 and p.shape[2] in (3, 4) and p.dtype == np.uint8:
        return p[..., :3]
    raise ValueError(f"expected uint8 H x W x 3 or a H x W mask, got {p.dtype} {p.shape}")


def _fit(picture: np.ndarray, height: int | None = None, box: tuple[int, int] | None = None) -> np.ndarray:
    """Resize to a given height, or to fit inside box (h, w) keeping the aspect ratio."""
    h, w = picture.shape[:2]
    if height:
        scale = height / h
    elif box is not None:
        scale = min(box[0] / h, box[1] / w)
    else:
        raise ValueError("give a height or a box to fit into")
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return picture
    return np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BILINEAR))


def _label(cell: Image.Image, text: str) -> None:
    draw = ImageDraw.Draw(cell)
    x0, y0, x1, y1 = draw.textbbox((4, 2), text)
    draw.rectangle((x0 - 3, y0 - 2, x1 + 3, y1 + 2), fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255))


def side_by_side(
    pictures: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    height: int | None = None,
    gap: int = 4,
    background: Color = (255, 255, 255),
) -> np.ndarray:
    """Pictures (RGB or masks) in one row, each scaled to a common height (default: the tallest),
    `gap` pixels apart, optionally labelled in their top-left corner. -> uint8 [height, W, 3]."""
    if not pictures:
        raise ValueError("side_by_side needs at least one picture")
    rgb = [_as_rgb(p) for p in pictures]
    height = height or max(p.shape[0] for p in rgb)
    cells = [_fit(p, height=height) for p in rgb]
    width = sum(c.shape[1] for c in cells) + gap * (len(cells) - 1)
    sheet = Image.new("RGB", (width, height), background)
    x = 0
    for i, cell in enumerate(cells):
        tile = Image.fromarray(np.ascontiguousarray(cell))
        if labels is not None and i < len(labels) and labels[i]:
            _label(tile, labels[i])
        sheet.paste(tile, (x, 0))
        x += cell.shape[1] + gap
    return np.asarray(sheet)


def grid(
    pictures: Sequence[np.ndarray],
    cols: int = 4,
    cell: tuple[int, int] = (192, 256),
    labels: Sequence[str] | None = None,
    gap: int = 4,
    background: Color = (255, 255, 255),
) -> np.ndarray:
    """A contact sheet: pictures row by row, `cols` per row, each fitted (aspect kept) and centred in a
    cell of (h, w) pixels. -> uint8 [rows*h + gaps, cols*w + gaps, 3]."""
    if not pictures:
        raise ValueError("grid needs at least one picture")
    cols = max(1, min(int(cols), len(pictures)))
    rows = -(-len(pictures) // cols)
    ch, cw = cell
    sheet = Image.new("RGB", (cols * cw + gap * (cols - 1), rows * ch + gap * (rows - 1)), background)
    for i, picture in enumerate(pictures):
        fitted = _fit(_as_rgb(picture), box=cell)
        tile = Image.fromarray(np.ascontiguousarray(fitted))
        if labels is not None and i < len(labels) and labels[i]:
            _label(tile, labels[i])
        r, c = divmod(i, cols)
        x = c * (cw + gap) + (cw - fitted.shape[1]) // 2
        y = r * (ch + gap) + (ch - fitted.shape[0]) // 2
        sheet.paste(tile, (x, y))
    return np.asarray(sheet)


# Error colours of `error_overlay`: found glass, false glass, missed glass.
HIT_GREEN: Color = (40, 200, 60)
FALSE_RED: Color = (255, 40, 40)
MISS_BLUE: Color = (30, 120, 255)


def error_overlay(image: np.ndarray | None, pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """A prediction's errors against the ground truth: glass found (pred and GT) tinted green, false glass
    (pred only) red, missed glass (GT only) blue; the rest of the photo unchanged. pred and gt: [H,W] masks
    (non-zero = glass) of one size; image: uint8 [H,W,3] of that size, or None for a mid-grey canvas.
    -> uint8 [H,W,3]."""
    p = np.asarray(pred) > 0
    g = _binary(gt, p.shape)
    if image is None:
        out = np.full(p.shape + (3,), 128, np.uint8)
    else:
        out = _as_rgb(image).copy()
        if out.shape[:2] != p.shape:
            raise ValueError(f"image shape {out.shape[:2]} does not match the masks' {p.shape}")
    for region, color in ((p & g, HIT_GREEN), (p & ~g, FALSE_RED), (~p & g, MISS_BLUE)):
        _tint(out, region, color, alpha)
    return out


def titled(picture: np.ndarray, title: str, background: Color = (255, 255, 255)) -> np.ndarray:
    """`picture` with a line of black text on a strip above it. -> uint8 [H + strip, W, 3]."""
    pic = _as_rgb(picture)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    x0, y0, x1, y1 = probe.textbbox((0, 0), title)
    strip = int(y1 - y0) + 8  # PIL types the box as floats; the default font measures in whole pixels
    canvas = Image.new("RGB", (max(pic.shape[1], x1 - x0 + 8), pic.shape[0] + strip), background)
    ImageDraw.Draw(canvas).text((4, 4 - y0), title, fill=(0, 0, 0))
    canvas.paste(Image.fromarray(np.ascontiguousarray(pic)), (0, strip))
    return np.asarray(canvas)
