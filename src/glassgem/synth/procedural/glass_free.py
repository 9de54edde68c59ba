"""Glass-free scenes among the procedural ones: `synthesize(..., glass_free=p)` (`--glass-free p`).

A fraction p of the scenes are plain glass-free photos: a background photo's random crop, flip and colour
shift, through the same camera model as the glass scenes (so noise and blur are no cue); the mask is all
zero. They are spread evenly: scene i is one when floor((i+1)p) > floor(ip), so every prefix of a set
(1x inside 20x) holds floor(n p) of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .backgrounds import Backgrounds, augment


def is_glass_free(i: int, fraction: float) -> bool:
    """Whether scene i is a glass-free photo when a `fraction` of the set is (evenly spread, deterministic)."""
    return fraction > 0 and math.floor((i + 1) * fraction + 1e-9) > math.floor(i * fraction + 1e-9)


def glass_free_scene(
    rng: np.random.Generator,
    backgrounds: Backgrounds,
    size: tuple[int, int],
    camera: Callable[[np.random.Generator, np.ndarray], tuple[np.ndarray, dict]],
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(image uint8 (H, W, 3), an all-zero mask, meta) for one glass-free scene; `camera` is the glass
    scenes' camera model (render.camera_effects)."""
    w, h = size
    p = backgrounds.weights.copy()
    p /= p.sum()  # the scene photo is picked as the glass scenes pick theirs
    i = int(rng.choice(len(backgrounds), p=p))
    base, params = augment(rng, backgrounds.image(i), size)
    image, camera_meta = camera(rng, base)
    meta = {
        "mode": "glass_free_photo",
        "no_glass": True,
        "n_panes": 0,
        "glass_fraction": 0.0,
        "size": [w, h],
        "background": {"source": backgrounds.name(i), **params},
        "behind": None,
        "reflection": None,
        "camera": camera_meta,
        "units": [],
        "layers": [],
        "coordinates": "x right, y down, pixels; pixel (r, c) is centred at (x=c, y=r)",
    }
    return image, np.zeros((h, w), np.uint8), meta
