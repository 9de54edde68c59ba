"""Geometry of procedural glass: planes seen in perspective, window/door layouts, exact rasterisation.

Coordinates: x to the right, y down, in pixels, with pixel (row r, col c) centred at (x=c, y=r) — the
convention of skimage.draw — so a mask is exactly "which pixel centres lie inside which polygon".
Everything a window is made of (frame bars, mullions, panes, handles) is first laid out as rectangles in
the window's own (u, v) ∈ [0, 1]² plane and then mapped to the image by one homography, so the pieces
tile the window with no gaps and stay consistent under perspective.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Rect = tuple[float, float, float, float]  # (u0, v0, u1, v1) in a plane's own coordinates


# ------------------------------------------------------------------------------------ homographies
def fit_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 H with dst ~ H @ src for four point pairs (4, 2) -> (4, 2) (direct linear transform)."""
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for k, ((x, y), (X, Y)) in enumerate(zip(src, dst)):
        a[2 * k] = [x, y, 1, 0, 0, 0, -X * x, -X * y]
        a[2 * k + 1] = [0, 0, 0, x, y, 1, -Y * x, -Y * y]
        b[2 * k], b[2 * k + 1] = X, Y
    h = np.linalg.solve(a, b)
    return np.append(h, 1.0).reshape(3, 3)


def apply_homography(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(N, 2) points -> (N, 2) points through H (projective division included)."""
    p = np.c_[pts, np.ones(len(pts))] @ h.T
    return p[:, :2] / p[:, 2:3]


def rect_to_quad(h: np.ndarray, rect: Rect) -> np.ndarray:
    """A (u0, v0, u1, v1) rectangle of the plane -> its (4, 2) image corners, clockwise from top-left."""
    u0, v0, u1, v1 = rect
    return apply_homography(h, np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], dtype=float))


def sub_homography(h: np.ndarray, rect: Rect) -> np.ndarray:
    """H' mapping the unit square onto `rect` of the plane of H (so sub-planes nest)."""
    u0, v0, u1, v1 = rect
    s = np.array([[u1 - u0, 0, u0], [0, v1 - v0, v0], [0, 0, 1]], dtype=float)
    return h @ s


def perspective_plane(rng: np.random.Generator, box: tuple[float, float, float, float], strength: float) -> np.ndarray:
    """Homography from the unit square to a quad filling roughly `box` = (x0, y0, x1, y1).

    Mimics a level camera looking at a wall at an angle: vertical edges stay nearly vertical, the far
    side is shorter and the horizontals converge (strength 0 = a frontal, axis-aligned rectangle).
    """
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    shrink = strength * rng.uniform(0.15, 0.45)  # how much shorter the far vertical edge is
    horizon = rng.uniform(-0.3, 1.3)  # where the horizontals converge, as a fraction of the height
    far_right = rng.random() < 0.5
    near = [[x0, y0], [x0, y1]]
    far_top = y0 + (horizon * h) * shrink
    far_bot = y1 - ((1 - horizon) * h) * shrink
    tilt = strength * rng.uniform(-0.03, 0.03) * w  # a touch of camera roll
    far = [[x1 + tilt, far_top], [x1 - tilt, far_bot]]
    if far_right:
        quad = np.array([near[0], far[0], far[1], near[1]])
    else:  # mirror the construction so the near side is on the right
        quad = np.array([[x0 - tilt, far_top], [x1, y0], [x1, y1], [x0 + tilt, far_bot]])
    unit = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    return fit_homography(unit, quad)


# ---------------------------------------------------------------------------------- rasterisation
def polygon_bbox(poly: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Integer (r0, r1, c0, c1) of the pixel centres that can lie inside `poly`, clipped; None if none."""
    h, w = shape
    c0 = max(int(np.ceil(poly[:, 0].min())), 0)
    c1 = min(int(np.floor(poly[:, 0].max())) + 1, w)
    r0 = max(int(np.ceil(poly[:, 1].min())), 0)
    r1 = min(int(np.floor(poly[:, 1].max())) + 1, h)
    if r0 >= r1 or c0 >= c1:
        return None
    return r0, r1, c0, c1


def rasterize_polygon(poly: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W): pixel centres inside the (possibly non-convex) polygon, even-odd rule.

    One vectorised pass per edge over the polygon's bounding box: for each row the edge crossing x is
    computed once and compared with every column.
    """
    out = np.zeros(shape, dtype=bool)
    box = polygon_bbox(poly, shape)
    if box is None:
        return out
    r0, r1, c0, c1 = box
    ys = np.arange(r0, r1, dtype=float)[:, None]
    xs = np.arange(c0, c1, dtype=float)[None, :]
    inside = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    for (xa, ya), (xb, yb) in zip(poly, np.roll(poly, -1, axis=0)):
        if ya == yb:
            continue  # a horizontal edge is never crossed by a horizontal ray
        crosses = (ya > ys) != (yb > ys)  # (rows, 1)
        x_at = xa + (ys - ya) * (xb - xa) / (yb - ya)
        inside ^= crosses & (xs < x_at)
    out[r0:r1, c0:c1] = inside
    return out


def blob_polygon(
    rng: np.random.Generator,
    center: tuple[float, float],
    radius: tuple[float, float],
    n: int = 40,
    wobble: float = 0.18,
) -> np.ndarray:
    """A star-shaped outline (n, 2): an ellipse whose radius wobbles with a few harmonics."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    harmonics = range(2, 5) if wobble < 0.3 else range(2, 14)  # strong wobble: a leafy, lobed outline
    for k in harmonics:
        r += rng.uniform(0, wobble / k * (2 if wobble < 0.3 else 0.6)) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    r = np.maximum(r, 0.2)
    return np.c_[center[0] + radius[0] * r * np.cos(t), center[1] + radius[1] * r * np.sin(t)]


# ------------------------------------------------------------------------------- window layouts
@dataclass
class UnitLayout:
    """A glazed unit (window, door, glass wall, partition) in its own unit square.

    Bars (frame, mullions, seams) and panes tile the square exactly; handles/fittings sit on top.
    """

    bars: list[Rect] = field(default_factory=list)
    panes: list[Rect] = field(default_factory=list)
    hardware: list[Rect] = field(default_factory=list)


def _splits(rng: np.random.Generator, n: int, even: bool) -> np.ndarray:
    """n cells along [0, 1]: the n-1 interior boundaries plus the ends, evenly or unevenly spaced."""
    w = np.ones(n) if even else rng.uniform(0.6, 1.4, n)
    return np.concatenate([[0.0], np.cumsum(w) / w.sum()])


def grid_layout(
    rng: np.random.Generator,
    rows: int,
    cols: int,
    frame: tuple[float, float, float, float],
    mullion: tuple[float, float],
    even: bool = True,
) -> UnitLayout:
    """Frame of widths (left, top, right, bottom) and a rows x cols grid of mullions of (width, height).

    Widths are fractions of the unit square's side. Zero frame widths give a frameless edge.
    """
    fl, ft, fr, fb = frame
    mw, mh = mullion
    out = UnitLayout()
    # The outer frame as four bars; corners belong to the vertical bars.
    if fl > 0:
        out.bars.append((0.0, 0.0, fl, 1.0))
    if fr > 0:
        out.bars.append((1.0 - fr, 0.0, 1.0, 1.0))
    if ft > 0:
        out.bars.append((fl, 0.0, 1.0 - fr, ft))
    if fb > 0:
        out.bars.append((fl, 1.0 - fb, 1.0 - fr, 1.0))
    xs = fl + _splits(rng, cols, even) * (1.0 - fl - fr)
    ys = ft + _splits(rng, rows, even) * (1.0 - ft - fb)
    # Mullion centre lines at interior boundaries; panes are what is left between them.
    x_edges = [(xs[0], xs[1] - mw / 2 if cols > 1 else xs[1])]
    for c in range(1, cols):
        left = xs[c] + mw / 2
        right = xs[c + 1] - (mw / 2 if c + 1 < cols else 0.0)
        x_edges.append((left, right))
    y_edges = [(ys[0], ys[1] - mh / 2 if rows > 1 else ys[1])]
    for r in range(1, rows):
        top = ys[r] + mh / 2
        bottom = ys[r + 1] - (mh / 2 if r + 1 < rows else 0.0)
        y_edges.append((top, bottom))
    for c in range(1, cols):  # vertical mullions run the full inner height
        out.bars.append((xs[c] - mw / 2, ft, xs[c] + mw / 2, 1.0 - fb))
    for r in range(1, rows):  # horizontal transoms between vertical mullions
        for left, right in x_edges:
            out.bars.append((left, ys[r] - mh / 2, right, ys[r] + mh / 2))
    for top, bottom in y_edges:
        for left, right in x_edges:
            out.panes.append((left, top, right, bottom))
    return out
