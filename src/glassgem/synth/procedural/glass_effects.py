"""How glass, frames and foreground objects look: the per-pixel rendering of procedural scenes.

Images are float32 (H, W, 3) in [0, 1]. A pane shows what is behind it (refracted, defocused, tinted and
attenuated) plus a reflection of the room in front of it, weighted Fresnel-like (more at the pane's edges
and at grazing view angles, with a vertical gradient), plus soft specular streaks, smudges and dust, and a
dark green-grey rim where the thick edge of the sheet is seen. Every effect is low-frequency and
vectorised over the pane's bounding box; the only resampling is one bilinear lookup per covered pixel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from .glass_geometry import Rect, polygon_bbox, rasterize_polygon

Box = tuple[int, int, int, int]  # (r0, r1, c0, c1), the pixel block a shape can touch


# ------------------------------------------------------------------------------------- primitives
def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: float) -> np.ndarray:
    """Low-frequency noise (H, W), roughly zero-mean and unit-variance, with ~`cells` bumps across."""
    h, w = shape
    gh = max(2, int(round(cells * h / max(h, w))) + 2)
    gw = max(2, int(round(cells * w / max(h, w))) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    up = Image.fromarray(grid, mode="F").resize((max(w, 1), max(h, 1)), Image.Resampling.BICUBIC)
    return np.asarray(up, dtype=np.float32)


def local_mask(poly: np.ndarray, shape: tuple[int, int]) -> tuple[Box, np.ndarray] | None:
    """The polygon's pixel block and its coverage inside that block (None when it misses the image)."""
    box = polygon_bbox(poly, shape)
    if box is None:
        return None
    r0, r1, c0, c1 = box
    cov = rasterize_polygon(poly - [c0, r0], (r1 - r0, c1 - c0))
    return box, cov


def plane_coords(h_inv: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of every pixel centre of `box` on a plane, given the image->plane homography."""
    r0, r1, c0, c1 = box
    ys = np.arange(r0, r1, dtype=np.float64)[:, None]
    xs = np.arange(c0, c1, dtype=np.float64)[None, :]
    (a, b, c), (d, e, f), (g, k, m) = h_inv
    z = g * xs + k * ys + m  # projective division written out: cheap broadcasting, no (N, 3) stack
    return ((a * xs + b * ys + c) / z).astype(np.float32), ((d * xs + e * ys + f) / z).astype(np.float32)


def sample_bilinear(img: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """img (H, W, 3) at fractional (rows, cols) -> (3, N) planes; outside reads the nearest border pixel."""
    coords = np.stack([rows.ravel(), cols.ravel()])
    return np.stack([ndimage.map_coordinates(img[..., k], coords, order=1, mode="nearest") for k in range(3)])


# ------------------------------------------------------------------------------------------ glass
@dataclass
class GlassLook:
    """Everything that decides how one glazed unit looks; recorded in the manifest."""

    tint: tuple[float, float, float]  # per-channel transmission (slight green/blue cast)
    attenuation: float  # overall darkening of what is behind
    contrast_loss: float  # pull of the transmitted image towards its own mean
    refraction_px: float  # amplitude of the smooth displacement field
    edge_refraction_px: float  # extra displacement near the pane edges (thick glass)
    defocus_sigma: float  # blur of what is behind the glass
    reflectance: float  # base reflection weight, straight on
    fresnel: float  # how much more it reflects near the edges / at grazing angles
    reflection_gradient: float  # vertical gradient of the reflection (sign = direction)
    reflection_patchiness: float = 0.0  # low-frequency variation of the reflection over the pane
    streaks: list[tuple[float, float, float, float]] = field(default_factory=list)  # angle, pos, width, amp
    smudge: float = 0.0  # haze strength of smudge blobs
    dust: float = 0.0  # specks per 10k glass pixels
    rim_px: float = 1.5  # width of the dark edge of the sheet
    rim_darkening: float = 0.3

    def to_dict(self) -> dict:
        return {k: (np.round(v, 4).tolist() if not isinstance(v, str) else v) for k, v in asdict(self).items()}


def sample_glass_look(rng: np.random.Generator, grazing: float) -> GlassLook:
    """A plausible look; `grazing` in [0, 1] says how obliquely the pane is seen."""
    cast = rng.choice(["green", "blue", "neutral", "grey"], p=[0.45, 0.25, 0.2, 0.1])
    base = {
        "green": (0.93, 0.99, 0.96),
        "blue": (0.92, 0.96, 0.99),
        "neutral": (0.98, 0.99, 0.98),
        "grey": (0.85, 0.86, 0.86),
    }[cast]
    r, g, b = (float(np.clip(c + rng.normal(0, 0.01), 0.75, 1.0)) for c in base)
    tint = (r, g, b)
    n_streaks = int(rng.choice([0, 1, 2, 3], p=[0.25, 0.35, 0.28, 0.12]))
    streaks = [
        (
            float(rng.uniform(0.5, 1.2) * rng.choice([-1, 1])),
            float(rng.uniform(-0.2, 1.2)),
            float(rng.uniform(0.03, 0.18)),
            float(rng.uniform(0.04, 0.22)),
        )
        for _ in range(n_streaks)
    ]
    return GlassLook(
        tint=tint,
        attenuation=float(rng.uniform(0.02, 0.12)),
        contrast_loss=float(rng.uniform(0.04, 0.22)),
        # Float glass is flat: a faint wobble mostly, a strong one for old or patterned glass.
        refraction_px=float(rng.uniform(0.2, 1.2) if rng.random() < 0.85 else rng.uniform(1.5, 3.5)),
        edge_refraction_px=float(rng.uniform(0.0, 5.0)),
        defocus_sigma=float(rng.choice([0.0, rng.uniform(0.4, 1.6)], p=[0.3, 0.7])),
        reflectance=float(
            (rng.uniform(0.07, 0.22) if rng.random() < 0.75 else rng.uniform(0.25, 0.45)) + 0.12 * grazing
        ),  # a quarter are strongly reflective (shop windows)
        fresnel=float(rng.uniform(0.3, 1.5)),
        reflection_gradient=float(rng.uniform(-0.6, 0.6)),
        reflection_patchiness=float(rng.uniform(0.2, 0.8)),
        streaks=streaks,
        smudge=float(rng.choice([0.0, rng.uniform(0.03, 0.12)], p=[0.5, 0.5])),
        dust=float(rng.choice([0.0, rng.uniform(1.0, 12.0)], p=[0.6, 0.4])),
        rim_px=float(rng.uniform(0.8, 2.5)),
        rim_darkening=float(rng.uniform(0.15, 0.5)),
    )


def _edge_distance(s: np.ndarray, t: np.ndarray, size_px: tuple[float, float]) -> np.ndarray:
    """Approximate distance in pixels from (s, t) in the pane's unit square to its nearest side."""
    pw, ph = size_px
    return np.minimum(np.minimum(s, 1 - s) * pw, np.minimum(t, 1 - t) * ph)


def render_pane(
    canvas: np.ndarray,
    behind: np.ndarray,
    reflection: np.ndarray,
    quad: np.ndarray,
    unit_h_inv: np.ndarray,
    rect: Rect,
    look: GlassLook,
    rng: np.random.Generator,
) -> tuple[Box, np.ndarray] | None:
    """Paint one pane (image-space quad = `rect` of its unit's plane) into `canvas`.

    `behind` is what the glass is in front of, `reflection` the (already mirrored, blurred) room the
    glass reflects; both full-size. Streaks and the vertical gradient use the unit's plane coordinates,
    so they run continuously across the panes of one window. Returns the pixel block and coverage.
    """
    hit = local_mask(quad, canvas.shape[:2])
    if hit is None:
        return None
    box, cov = hit
    r0, r1, c0, c1 = box
    if not cov.any():
        return box, cov
    u, v = plane_coords(unit_h_inv, box)
    u, v = u[cov], v[cov]
    s, t = (u - rect[0]) / (rect[2] - rect[0]), (v - rect[1]) / (rect[3] - rect[1])
    size_px = (
        float(np.linalg.norm(quad[1] - quad[0]) + np.linalg.norm(quad[2] - quad[3])) / 2,
        float(np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2,
    )
    edge_d = _edge_distance(s, t, size_px)
    rows, cols = np.nonzero(cov)
    rows, cols = rows + r0, cols + c0
    # Colours are handled as (3, N) planes: per-channel boolean gathers and scatters are several times
    # faster than gathering (N, 3) rows of an interleaved image.

    # Refraction: a smooth wobble everywhere plus a pull near the edges, where thick glass bends most.
    cells = rng.uniform(2, 6)
    dx = smooth_noise(rng, cov.shape, cells)[cov] * look.refraction_px
    dy = smooth_noise(rng, cov.shape, cells)[cov] * look.refraction_px
    near_edge = np.exp(-edge_d / 6.0) * look.edge_refraction_px
    dx += near_edge * np.sign(0.5 - s)
    dy += near_edge * np.sign(0.5 - t)
    seen = sample_bilinear(behind, rows + dy, cols + dx)

    # Transmission: tint, attenuation and a loss of contrast (scattering inside the sheet).
    seen *= (np.asarray(look.tint, np.float32) * np.float32(1.0 - look.attenuation))[:, None]
    seen += (seen.mean(axis=1, keepdims=True) - seen) * np.float32(look.contrast_loss)

    # Reflection, Fresnel-like: stronger towards the edges and with a vertical gradient.
    edge_term = np.exp(-edge_d / (0.12 * min(size_px) + 1.0))
    patchy = 1.0
    if look.reflection_patchiness > 0:
        noise = smooth_noise(rng, cov.shape, rng.uniform(1.5, 4))[cov]
        patchy = np.clip(1.0 + look.reflection_patchiness * noise, 0.2, 2.0)
    refl_w = (
        look.reflectance * patchy * (1.0 + look.fresnel * edge_term) * (1.0 + look.reflection_gradient * (v - 0.5) * 2)
    )
    refl_w = np.clip(refl_w, 0.0, 0.6).astype(np.float32)
    block = reflection[r0:r1, c0:c1]
    mirrored = np.stack([block[..., k][cov] for k in range(3)])
    seen += (mirrored - seen) * refl_w

    # Specular streaks: soft diagonal bands of light on the unit's plane (screen-blended). The unit's
    # aspect ratio (not the pane's) keeps a band straight across all the panes of a window.
    aspect = size_px[0] / max(size_px[1], 1.0) * (rect[3] - rect[1]) / (rect[2] - rect[0])
    if look.streaks:
        light = np.zeros_like(u)
        for angle, pos, width, amp in look.streaks:
            d = u * np.float32(aspect * np.cos(angle)) + v * np.float32(np.sin(angle)) - np.float32(pos)
            light += np.float32(amp) * np.exp(-((d / np.float32(width)) ** 2))
        seen += light * (1.0 - seen)

    # Smudges (low-amplitude haze blobs) and dust specks.
    if look.smudge > 0:
        blob = np.clip(smooth_noise(rng, cov.shape, rng.uniform(6, 14))[cov] - 0.6, 0.0, None)
        seen += (look.smudge * blob) * (0.85 - seen)
    if look.dust > 0:
        n = rng.poisson(look.dust * len(rows) / 1e4)
        pick = rng.integers(0, len(rows), n)
        seen[:, pick] = seen[:, pick] * 0.6 + np.float32(rng.uniform(0.3, 0.5))

    # The rim: the sheet's edge seen through its thickness reads as a dark green-grey line.
    rim = np.exp(-edge_d / look.rim_px) * np.float32(look.rim_darkening)
    seen *= 1.0 - rim * np.array([1.0, 0.75, 0.85], np.float32)[:, None]

    np.clip(seen, 0.0, 1.0, out=seen)
    target = canvas[r0:r1, c0:c1]
    for k in range(3):
        target[..., k][cov] = seen[k]
    return box, cov


# ------------------------------------------------------------------------------- opaque things
FRAME_COLOURS = {  # name -> (base RGB, sheen): the finishes one sees on window and door frames
    "aluminium": ((0.62, 0.64, 0.66), 0.35),
    "white": ((0.88, 0.88, 0.86), 0.12),
    "black": ((0.10, 0.10, 0.11), 0.25),
    "bronze": ((0.33, 0.26, 0.19), 0.25),
    "wood": ((0.45, 0.30, 0.18), 0.10),
    "steel": ((0.36, 0.38, 0.40), 0.30),
}


def render_bar(
    canvas: np.ndarray,
    quad: np.ndarray,
    h_inv: np.ndarray,
    colour: np.ndarray,
    sheen: float,
    light: float,
    rng: np.random.Generator,
    round_profile: bool = False,
) -> tuple[Box, np.ndarray] | None:
    """Paint an opaque bar (frame, mullion, seam, handle) with a bevel shading across its width.

    `h_inv` maps image -> the bar's own unit square; the shorter side (in pixels) is "across".
    """
    hit = local_mask(quad, canvas.shape[:2])
    if hit is None:
        return None
    box, cov = hit
    if not cov.any():
        return box, cov
    r0, _, c0, _ = box
    s, t = plane_coords(h_inv, box)
    width_px = np.linalg.norm(quad[1] - quad[0])
    height_px = np.linalg.norm(quad[3] - quad[0])
    across, along = (s, t) if width_px < height_px else (t, s)
    across, along = np.clip(across[cov], 0, 1), np.clip(along[cov], 0, 1)
    across_px = max(min(width_px, height_px), 1.0)
    if round_profile:  # a cylindrical handle: bright ridge, dark flanks
        shade = 0.55 + 0.75 * np.sin(np.pi * across) ** 2 * sheen * 2
    else:  # a flat bar with a chamfer: one lit edge, one shaded edge
        shade = 1.0 + sheen * (0.5 - across) * light + 0.25 * sheen * np.exp(-(((across - 0.25) / 0.12) ** 2))
    shade = shade * (1.0 + 0.06 * (along - 0.5) * light)
    # A dark joint line where bars meet each other and the glass (gaskets, profile edges).
    shade = shade * (1.0 - 0.35 * np.exp(-np.minimum(across, 1 - across) * across_px / 0.8))
    grain = rng.normal(0.0, 0.012, len(across)).astype(np.float32)
    rows, cols = np.nonzero(cov)
    canvas[rows + r0, cols + c0] = np.clip(colour[None, :] * shade[:, None] + grain[:, None], 0.0, 1.0)
    return box, cov


def drop_shadow(
    canvas: np.ndarray, quad: np.ndarray, offset: tuple[float, float], sigma: float, strength: float
) -> None:
    """Darken the wall around an object as if it stood a little off the wall (soft, offset shadow)."""
    h, w = canvas.shape[:2]
    hit = local_mask(quad + np.asarray(offset), (h, w))
    if hit is None:
        return
    (r0, r1, c0, c1), cov = hit
    pad = int(3 * sigma) + 1  # blur only the shadow's neighbourhood, not the whole image
    R0, R1, C0, C1 = max(r0 - pad, 0), min(r1 + pad, h), max(c0 - pad, 0), min(c1 + pad, w)
    shadow = np.zeros((R1 - R0, C1 - C0), np.float32)
    shadow[r0 - R0 : r1 - R0, c0 - C0 : c1 - C0] = cov
    shadow = ndimage.gaussian_filter(shadow, sigma)
    canvas[R0:R1, C0:C1] *= (1.0 - strength * shadow)[..., None]


def render_occluder(
    canvas: np.ndarray, poly: np.ndarray, texture: np.ndarray, rng: np.random.Generator, flatten: float | None = None
) -> tuple[Box, np.ndarray] | None:
    """Paint an opaque object: a uint8 texture, shaded darker towards its outline (reads as round).

    `flatten` pulls a photo texture towards one colour (None: a random amount) so it reads as an object.
    """
    hit = local_mask(poly, canvas.shape[:2])
    if hit is None:
        return None
    box, cov = hit
    r0, r1, c0, c1 = box
    tex = np.asarray(Image.fromarray(texture).resize((c1 - c0, r1 - r0), Image.Resampling.BILINEAR), np.float32) / 255.0
    inner = ndimage.distance_transform_edt(np.pad(cov, 1))[1:-1, 1:-1]
    roundness = 1.0 - 0.45 * np.exp(-inner / max(3.0, 0.15 * min(r1 - r0, c1 - c0)))
    # Flatten the texture towards one colour: an object, not a pasted photo.
    colour = tex.reshape(-1, 3).mean(axis=0) * rng.uniform(0.4, 1.1, 3)
    flat = rng.uniform(0.4, 0.8) if flatten is None else flatten
    tex = tex * (1 - flat) + colour * flat
    gain = rng.uniform(0.5, 1.0) if flatten is None else 1.0
    rows, cols = np.nonzero(cov)
    canvas[rows + r0, cols + c0] = np.clip(tex[cov] * (gain * roundness[cov])[:, None], 0.0, 1.0)
    return box, cov
