"""One procedural glass scene: `generate_scene(seed, i, ...)` renders a photo and its exact glass mask.

Glass walls, windows, doors and partitions are composited onto photos with physically motivated effects
(glass_effects) in layouts that tile exactly (glass_geometry, glass_scene); scene i depends only on (seed, i)
through np.random.default_rng([seed, i]). pipeline.py writes many of them to a dataset folder.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from .backgrounds import Backgrounds, augment, outdoor_view, painted_wall
from .glass_effects import FRAME_COLOURS, drop_shadow, polygon_bbox, render_bar, render_occluder, render_pane
from .glass_geometry import rect_to_quad, sub_homography
from .glass_scene import MAKERS, MODES, Scene, Unit
from .occluders import add_occluders

DEFAULT_SIZE = (512, 384)
OUTWARD = ("windows", "doors", "small_windows")


# ------------------------------------------------------------------------------------- one scene
def _pick(rng: np.random.Generator, bgs: Backgrounds, avoid: set[int], scene: bool) -> int:
    """A photo not used yet in this scene (when possible); scene photos follow the set's weights."""
    p = bgs.weights.copy() if scene else np.full(len(bgs), 1.0 / len(bgs))
    if len(avoid) < len(bgs):
        p[list(avoid)] = 0.0
        p /= p.sum()
    return int(rng.choice(len(bgs), p=p))


def _photo(rng, bgs: Backgrounds, size, avoid: set[int], scene: bool = False) -> tuple[np.ndarray, dict]:
    i = _pick(rng, bgs, avoid, scene)
    avoid.add(i)
    img, params = augment(rng, bgs.image(i), size)
    return img, {"source": bgs.name(i), **params}


def _to_u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _blur(img: np.ndarray, sigma: float, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Gaussian blur (PIL, on 8 bits) of the whole image or only of the block (r0, r1, c0, c1)."""
    if sigma <= 0.05:
        return img
    if box is not None:
        r0, r1, c0, c1 = box
        out = img.copy()
        out[r0:r1, c0:c1] = _blur(img[r0:r1, c0:c1], sigma)
        return out
    if sigma < 0.9:  # a 3x3 kernel is a faithful Gaussian this small, and several times cheaper
        g = np.exp(-0.5 * (np.arange(-1, 2) / sigma) ** 2)
        kernel = ImageFilter.Kernel((3, 3), np.outer(g, g).ravel().tolist())
        return np.asarray(Image.fromarray(_to_u8(img)).filter(kernel), np.float32) / 255.0
    return np.asarray(Image.fromarray(_to_u8(img)).filter(ImageFilter.GaussianBlur(sigma)), np.float32) / 255.0


def _reflected_room(rng, bgs: Backgrounds, size, avoid: set[int]) -> tuple[np.ndarray, dict]:
    """What the glass reflects: another photo, mirrored, defocused, sometimes with ceiling lights.

    Made at half resolution and upsampled: a reflection is blurred anyway, and this is a quarter
    of the work.
    """
    w, h = size
    hw, hh = max(w // 2, 8), max(h // 2, 8)
    img, meta = _photo(rng, bgs, (hw, hh), avoid)
    img = np.ascontiguousarray(img[:, ::-1]) * np.float32(rng.uniform(0.7, 1.3))
    lights = int(rng.choice([0, 0, 1, 2, 3, 4]))
    if lights:  # a row of ceiling lamps in the reflected room (separable profiles: outer products)
        ys = np.arange(hh, dtype=np.float32)[:, None]
        xs = np.arange(hw, dtype=np.float32)[None, :]
        y = rng.uniform(0.05, 0.4) * hh
        for x in rng.uniform(0.1, 0.9, lights) * hw:
            rx, ry = rng.uniform(0.01, 0.06) * hw, rng.uniform(0.005, 0.02) * hh + 0.5
            img = img + (np.exp(-(((ys - y) / ry) ** 4)) * np.exp(-(((xs - x) / rx) ** 4)))[..., None] * 2.0
    sigma = float(rng.uniform(0.8, 3.5))
    meta.update(mirrored=True, blur=round(sigma, 2), lights=lights)
    small = Image.fromarray(_to_u8(img)).filter(ImageFilter.GaussianBlur(sigma / 2))
    return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR), np.float32) / 255.0, meta


def _soften(img: np.ndarray, sigma: float) -> np.ndarray:
    """A 3x3 Gaussian (separable, in place on the interior); borders are left sharp."""
    g = np.exp(-0.5 * (np.arange(-1, 2) / sigma) ** 2)
    a, b = np.float32(g[0] / g.sum()), np.float32(g[1] / g.sum())
    rows = img[1:-1] * b + (img[:-2] + img[2:]) * a
    img[1:-1] = rows
    cols = img[:, 1:-1] * b + (img[:, :-2] + img[:, 2:]) * a
    img[:, 1:-1] = cols
    return img


def camera_effects(rng, canvas: np.ndarray) -> tuple[np.ndarray, dict]:
    """Vignetting, sensor noise and a touch of lens softness, shared by the glass and its surroundings."""
    h, w = canvas.shape[:2]
    ys = np.arange(h, dtype=np.float32)[:, None] / h - 0.5
    xs = np.arange(w, dtype=np.float32)[None, :] / w - 0.5
    vignette = float(rng.uniform(0.0, 0.25))
    canvas *= (1 - vignette * 2 * (xs**2 + ys**2))[..., None]  # in place: the canvas is ours
    noise = float(rng.uniform(0.5, 2.5))
    # Uniform noise of the same standard deviation: indistinguishable here and 4x cheaper to draw.
    grain = rng.random(canvas.shape, dtype=np.float32)
    grain -= np.float32(0.5)
    grain *= np.float32(noise / 255.0 * np.sqrt(12.0))
    canvas += grain
    soft = float(rng.uniform(0.3, 0.8))  # also softens the noise, as demosaicing does
    image = _to_u8(_soften(canvas, soft))
    return image, {"blur": round(soft, 3), "vignette": round(vignette, 3), "noise": round(noise, 3)}


def _render_unit(
    canvas, mask, unit: Unit, other: np.ndarray, reflection: np.ndarray, rng, bgs, avoid, light: float
) -> list[dict]:
    """Draw a unit back to front (shadow, panes, bars, hardware); update the mask; return its layers."""
    layers = []
    outer = rect_to_quad(unit.h, (0, 0, 1, 1))
    if unit.shadow:
        drop_shadow(canvas, outer, tuple(rng.uniform(1, 5, 2)), rng.uniform(2, 5), rng.uniform(0.15, 0.35))
    behind = canvas.copy() if unit.through == "same" else other
    box = polygon_bbox(outer, canvas.shape[:2])
    if unit.look is not None and box is not None:  # defocus only around the unit (refraction margin)
        pad = 12
        r0, r1, c0, c1 = box
        region = (max(r0 - pad, 0), r1 + pad, max(c0 - pad, 0), c1 + pad)
        behind = _blur(behind, unit.look.defocus_sigma, region)
    colour = np.asarray(FRAME_COLOURS[unit.finish][0], np.float32) * np.float32(rng.uniform(0.85, 1.1))
    sheen = FRAME_COLOURS[unit.finish][1]
    h_inv = np.linalg.inv(unit.h)
    picture = rng.random() < 0.5
    for rect in unit.layout.panes:
        quad = rect_to_quad(unit.h, rect)
        if unit.look is None:  # an opaque decoy: a solid panel or a framed picture, never glass
            if picture:
                tex, _ = _photo(rng, bgs, (96, 96), avoid)
                hit = render_occluder(canvas, quad, _to_u8(tex), rng, flatten=0.0)
            else:
                hit = render_bar(
                    canvas, quad, np.linalg.inv(sub_homography(unit.h, rect)), colour * 0.9, 0.1, light, rng
                )
            if hit is not None:
                (r0, r1, c0, c1), cov = hit
                mask[r0:r1, c0:c1] &= ~cov
            layers.append({"kind": "panel", "glass": False, "polygon": quad.tolist()})
            continue
        hit = render_pane(canvas, behind, reflection, quad, h_inv, rect, unit.look, rng)
        if hit is not None:
            (r0, r1, c0, c1), cov = hit
            mask[r0:r1, c0:c1] |= cov
        layers.append({"kind": "pane", "glass": True, "polygon": quad.tolist()})
    for kind, rects, colour_k, sheen_k, rnd in (
        ("frame", unit.layout.bars, colour, sheen, False),
        ("handle", unit.layout.hardware, np.array([0.72, 0.73, 0.74], np.float32), 0.5, unit.handle_round),
    ):
        for rect in rects:
            quad = rect_to_quad(unit.h, rect)
            hit = render_bar(
                canvas,
                quad,
                np.linalg.inv(sub_homography(unit.h, rect)),
                colour_k,
                sheen_k,
                light,
                rng,
                round_profile=rnd,
            )
            if hit is not None:
                (r0, r1, c0, c1), cov = hit
                mask[r0:r1, c0:c1] &= ~cov
            layers.append({"kind": kind, "glass": False, "polygon": quad.tolist()})
    return layers


def generate_scene(
    rng: np.random.Generator, backgrounds: Backgrounds, size: tuple[int, int] = DEFAULT_SIZE
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One scene: (image uint8 (H, W, 3), mask uint8 (H, W) in {0, 1}, meta dict)."""
    if not isinstance(backgrounds, Backgrounds):
        backgrounds = Backgrounds.from_arrays(list(backgrounds))
    w, h = size
    mode = str(rng.choice(list(MODES), p=list(MODES.values())))
    scene = Scene(size=(w, h))
    MAKERS[mode](rng, scene)
    avoid: set[int] = set()
    if scene.wall_base:
        base, wall_meta = painted_wall(rng, size)
        base_meta = {"wall": wall_meta}
    else:
        base, base_meta = _photo(rng, backgrounds, size, avoid, scene=True)
    other, other_meta = _photo(rng, backgrounds, size, avoid)
    if rng.random() < (0.85 if mode in OUTWARD else 0.2):  # looking out: sky, skyline, the photo as ground
        other, view_meta = outdoor_view(rng, size, other if rng.random() < 0.6 else None)
        other_meta = {"outdoor": view_meta, "ground_from": other_meta["source"] if view_meta["ground"] else None}
    # A view out of a window or door is usually brighter than the room (daylight).
    daylight = float(rng.uniform(1.1, 1.4)) if rng.random() < (0.5 if mode in OUTWARD else 0.2) else 1.0
    if daylight != 1.0:
        other = np.minimum(other * np.float32(daylight), 1.0)
    other_meta["daylight"] = round(daylight, 3)
    reflection, refl_meta = _reflected_room(rng, backgrounds, size, avoid)

    canvas = base.copy()
    mask = np.zeros((h, w), dtype=bool)
    light = float(rng.choice([-1.0, 1.0]))
    layers, units_meta = [], []
    for unit in scene.units:
        unit_layers = _render_unit(canvas, mask, unit, other, reflection, rng, backgrounds, avoid, light)
        units_meta.append(
            {
                "kind": unit.kind,
                "through": unit.through,
                "finish": unit.finish,
                "homography": unit.h.tolist(),
                "outer": rect_to_quad(unit.h, (0, 0, 1, 1)).tolist(),
                "panes": len(unit.layout.panes),
                "look": unit.look.to_dict() if unit.look else None,
            }
        )
        layers += unit_layers
    if mask.any() and rng.random() < 0.3:
        layers += add_occluders(rng, canvas, mask)

    image, camera = camera_effects(rng, canvas)

    n_panes = sum(1 for L in layers if L["glass"] and polygon_bbox(np.asarray(L["polygon"]), (h, w)))
    meta = {
        "mode": mode,
        "no_glass": not mask.any(),
        "n_panes": n_panes,
        "glass_fraction": round(float(mask.mean()), 5),
        "size": [w, h],
        "background": base_meta,
        "behind": other_meta,
        "reflection": refl_meta,
        "camera": camera,
        "units": units_meta,
        "layers": layers,
        "coordinates": "x right, y down, pixels; pixel (r, c) is centred at (x=c, y=r)",
    }
    return image, mask.astype(np.uint8), meta


# ------------------------------------------------------------------------------- a whole dataset
