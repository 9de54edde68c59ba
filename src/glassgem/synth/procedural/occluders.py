"""Foreground objects in front of the glass: pillars, people, potted plants, furniture.

They are opaque, so each one is cleared from the glass mask and recorded as an "occluder" layer (one
polygon per piece). Shapes are simple silhouettes with generated textures; what matters for training is
that glass is interrupted by real-looking opaque things at plausible places (standing on the floor).
"""

from __future__ import annotations

import numpy as np

from .glass_effects import render_bar, render_occluder, smooth_noise
from .glass_geometry import blob_polygon, fit_homography

UNIT_SQUARE = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
SKIN = [(0.87, 0.70, 0.58), (0.72, 0.53, 0.40), (0.48, 0.33, 0.24), (0.30, 0.20, 0.15)]
CLOTHES = [
    (0.10, 0.12, 0.20),
    (0.08, 0.08, 0.09),
    (0.40, 0.40, 0.42),
    (0.70, 0.64, 0.52),
    (0.85, 0.85, 0.83),
    (0.25, 0.35, 0.55),
    (0.55, 0.12, 0.12),
    (0.35, 0.24, 0.16),
    (0.20, 0.30, 0.22),
]
HAIR = [(0.08, 0.06, 0.05), (0.25, 0.17, 0.10), (0.55, 0.42, 0.25), (0.45, 0.45, 0.45)]


def _texture(rng: np.random.Generator, colour, grain: float, cells: float = 30, size: int = 64) -> np.ndarray:
    """A uint8 (size, size, 3) surface of one colour with some mottling (fabric, leaves, plaster)."""
    shade = 1.0 + grain * smooth_noise(rng, (size, size), cells)
    tex = np.asarray(colour, np.float32)[None, None, :] * shade[..., None]
    return (np.clip(tex, 0, 1) * 255 + 0.5).astype(np.uint8)


def _person(rng, cx: float, h: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Head and body of someone standing close to the camera, cut off by the bottom of the frame."""
    height = rng.uniform(0.6, 1.2) * h
    bottom = h * rng.uniform(1.0, 1.3)
    top = bottom - height
    r = 0.065 * height
    half = np.array([(0.45, 1.9), (1.6, 2.3), (2.3, 2.8), (2.55, 4.0), (2.5, 6.5), (2.1, 7.5), (2.3, 9.5)])
    right = np.c_[cx + half[:, 0] * r, top + half[:, 1] * r]
    right = np.vstack([right, [[cx + 2.2 * r, bottom + 1.0]]])
    left = right[::-1] * [-1, 1] + [2 * cx, 0]
    body = np.vstack([right, left]) + rng.normal(0, 0.06 * r, (2 * len(right), 2))
    head = blob_polygon(rng, (cx + rng.normal(0, 0.1 * r), top + r), (0.8 * r, r), n=32)
    cloth = np.asarray(CLOTHES[int(rng.integers(len(CLOTHES)))]) * rng.uniform(0.8, 1.15)
    face = SKIN[int(rng.integers(len(SKIN)))] if rng.random() < 0.5 else HAIR[int(rng.integers(len(HAIR)))]
    return [(body, _texture(rng, cloth, 0.07, 12)), (head, _texture(rng, face, 0.08, 8))]


def _plant(rng, cx: float, w: int, h: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """A pot on the floor with a leafy crown above it."""
    pw, ph = rng.uniform(0.05, 0.12) * w, rng.uniform(0.07, 0.15) * h
    bottom = h * rng.uniform(0.92, 1.05)
    pot = np.array(
        [[cx - pw / 2, bottom - ph], [cx + pw / 2, bottom - ph], [cx + pw * 0.38, bottom], [cx - pw * 0.38, bottom]]
    )
    crown_r = (pw * rng.uniform(0.8, 1.6), ph * rng.uniform(1.2, 2.8))
    crown = blob_polygon(rng, (cx, bottom - ph - crown_r[1] * 0.85), crown_r, n=64, wobble=0.5)
    pot_colour = [(0.70, 0.40, 0.28), (0.88, 0.88, 0.86), (0.20, 0.20, 0.22)][int(rng.integers(3))]
    leaves = np.array([0.16, 0.34, 0.12], np.float32) * rng.uniform(0.7, 1.4)
    return [(pot, _texture(rng, pot_colour, 0.05, 6)), (crown, _texture(rng, leaves, 0.45, 45))]


def _furniture(rng, cx: float, w: int, h: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """A low counter, sofa or cabinet standing on the floor in front of the glass."""
    fw, fh = rng.uniform(0.15, 0.45) * w, rng.uniform(0.12, 0.35) * h
    bottom = h * rng.uniform(0.95, 1.05)
    slope = rng.uniform(-0.05, 0.05) * fw
    box = np.array(
        [
            [cx - fw / 2, bottom - fh + slope],
            [cx + fw / 2, bottom - fh - slope],
            [cx + fw / 2, bottom],
            [cx - fw / 2, bottom],
        ]
    )
    colour = rng.uniform(0.15, 0.85) * rng.uniform(0.7, 1.0, 3)
    return [(box, _texture(rng, colour, 0.06, 10))]


def add_occluders(rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray) -> list[dict]:
    """Put one or two objects in front of the glass; clear them from `mask`; return their layers."""
    h, w = mask.shape
    layers = []
    for _ in range(int(rng.integers(1, 3))):
        ys, xs = np.nonzero(mask[::4, ::4])
        if len(ys) == 0:
            break
        k = int(rng.integers(len(ys)))
        cx = xs[k] * 4 + float(rng.uniform(-8, 8))  # anchored on a glass pixel so it really occludes
        kind = str(rng.choice(["pillar", "person", "plant", "furniture"], p=[0.25, 0.35, 0.2, 0.2]))
        hits = []
        if kind == "pillar":
            half, lean = rng.uniform(0.02, 0.06) * w, rng.uniform(-0.02, 0.02) * w
            poly = np.array(
                [
                    [cx - half + lean, -1.3],
                    [cx + half + lean, -1.3],
                    [cx + half - lean, h + 0.3],
                    [cx - half - lean, h + 0.3],
                ]
            )
            colour = np.float32(rng.uniform(0.3, 0.85)) * np.array([1.0, 0.98, 0.95], np.float32)
            hits.append(
                (
                    poly,
                    render_bar(
                        canvas,
                        poly,
                        np.linalg.inv(fit_homography(UNIT_SQUARE, poly)),
                        colour,
                        0.4,
                        1.0,
                        rng,
                        round_profile=rng.random() < 0.5,
                    ),
                )
            )
        else:
            maker = {
                "person": lambda: _person(rng, cx, h),
                "plant": lambda: _plant(rng, cx, w, h),
                "furniture": lambda: _furniture(rng, cx, w, h),
            }[kind]
            for poly, tex in maker():
                hits.append((poly, render_occluder(canvas, poly, tex, rng, flatten=0.0)))
        for poly, hit in hits:
            if hit is not None:
                (r0, r1, c0, c1), cov = hit
                mask[r0:r1, c0:c1] &= ~cov
            layers.append({"kind": "occluder", "object": kind, "glass": False, "polygon": poly.tolist()})
    return layers
