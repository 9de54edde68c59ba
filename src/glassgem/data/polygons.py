"""Hand-drawn glass labels: polygons in a JSON file per photo, rasterised to a 0/255 mask.

A label file describes one photo at its own pixel size:

    {"size": [width, height],
     "glass": [[[x, y], [x, y], [x, y], ...], ...],      # one polygon per pane or glazed area
     "not_glass": [[[x, y], ...], ...],                    # optional: cut out of the glass (a person in front)
     "note": "free text"}                                  # optional

Coordinates are pixels of the photo as stored (x to the right, y down; fractions allowed). The mask is
the union of the `glass` polygons minus the union of the `not_glass` ones; a photo without glass has
`"glass": []`. The conventions for what counts as glass are in docs/labelling.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..errors import DataError

Polygon = list[tuple[float, float]]


def _polygons(value: Any, key: str, where: str, size: tuple[int, int]) -> list[Polygon]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DataError(f"{where}: '{key}' must be a list of polygons")
    out: list[Polygon] = []
    w, h = size
    for i, poly in enumerate(value):
        if not isinstance(poly, list) or len(poly) < 3:
            raise DataError(f"{where}: {key}[{i}] must be a list of at least 3 [x, y] points")
        pts: Polygon = []
        for pt in poly:
            if (
                not isinstance(pt, (list, tuple))
                or len(pt) != 2
                or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in pt)
            ):
                raise DataError(f"{where}: {key}[{i}] has a point that is not [x, y]: {pt!r}")
            x, y = float(pt[0]), float(pt[1])
            if not (-1 <= x <= w + 1 and -1 <= y <= h + 1):
                raise DataError(f"{where}: {key}[{i}] point ({x:g}, {y:g}) is outside the {w}x{h} photo")
            pts.append((x, y))
        out.append(pts)
    return out


def parse_label(data: Any, where: str = "label") -> dict:
    """Validate a label's JSON object; returns {'size': (w, h), 'glass': [...], 'not_glass': [...]}."""
    if not isinstance(data, dict):
        raise DataError(f"{where}: a label must be a JSON object")
    size = data.get("size")
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise DataError(f"{where}: 'size' must be [width, height] in pixels")
    wh = (size[0], size[1])
    return {
        "size": wh,
        "glass": _polygons(data.get("glass"), "glass", where, wh),
        "not_glass": _polygons(data.get("not_glass"), "not_glass", where, wh),
    }


def load_label(path: str | os.PathLike) -> dict:
    """Read and validate one label file (one-line DataError naming the file otherwise)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read label ({type(e).__name__}: {e})") from None
    return parse_label(data, str(path))


def _fill(polygons: list[Polygon], size: tuple[int, int]) -> np.ndarray:
    """bool (H, W): inside any of the polygons (outline included)."""
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        draw.polygon(poly, fill=255, outline=255)
    return np.asarray(canvas) > 0


def rasterize(label: dict) -> np.ndarray:
    """The label's mask: uint8 (H, W), 255 on glass, 0 elsewhere."""
    glass = _fill(label["glass"], label["size"])
    if label["not_glass"]:
        glass &= ~_fill(label["not_glass"], label["size"])
    return glass.astype(np.uint8) * 255


def label_mask(path: str | os.PathLike, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Rasterise a label file; with `image_size` (w, h), refuse a label drawn for another size."""
    label = load_label(path)
    if image_size is not None and tuple(image_size) != label["size"]:
        w, h = label["size"]
        raise DataError(f"{path}: label drawn for {w}x{h}, but the photo is {image_size[0]}x{image_size[1]}")
    return rasterize(label)
