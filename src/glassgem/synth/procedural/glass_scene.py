"""Laying out one procedural glass scene: which glass goes where, before anything is drawn.

A scene is a base (a photo, or a painted wall) and a list of glazed units (glass walls, windows, doors,
partitions, and opaque framed decoys), each a plane seen in perspective and laid out as frame bars +
panes + hardware in its own unit square (glass_geometry). Each scene kind has a maker here that decides
sizes, grids, frames and what the glass shows; procedural.py draws the units back to front.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .glass_effects import FRAME_COLOURS, GlassLook, sample_glass_look
from .glass_geometry import Rect, UnitLayout, grid_layout, perspective_plane, rect_to_quad, sub_homography

# Scene kinds and how often each is drawn. "none" scenes have no glass at all (hard negatives).
MODES = {"glass_wall": 0.26, "windows": 0.2, "doors": 0.2, "partition": 0.16, "small_windows": 0.11, "none": 0.07}


@dataclass
class Unit:
    kind: str  # glass_wall | window | door | sidelight | partition | panel (opaque decoy)
    h: np.ndarray  # unit square -> image
    layout: UnitLayout
    finish: str  # frame colour name (FRAME_COLOURS)
    through: str = "other"  # what the glass shows: "same" scene continued, or an "other" view
    look: GlassLook | None = None  # None for opaque decoys
    shadow: bool = False
    handle_round: bool = True


@dataclass
class Scene:
    size: tuple[int, int]
    units: list[Unit] = field(default_factory=list)
    wall_base: bool = False  # base is a painted wall rather than a photo


# ----------------------------------------------------------------------------------- unit makers
def _frame_uv(px: tuple[float, float, float, float], quad_size: tuple[float, float]) -> tuple:
    """Frame widths in pixels (left, top, right, bottom) -> fractions of the unit square."""
    w, h = max(quad_size[0], 1.0), max(quad_size[1], 1.0)
    left, top, right, bottom = px
    return (min(left / w, 0.3), min(top / h, 0.3), min(right / w, 0.3), min(bottom / h, 0.3))


def _quad_size(h: np.ndarray) -> tuple[float, float]:
    q = rect_to_quad(h, (0, 0, 1, 1))
    return (
        float(np.linalg.norm(q[1] - q[0]) + np.linalg.norm(q[2] - q[3])) / 2,
        float(np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2,
    )


def _grazing(h: np.ndarray) -> float:
    """0 for a frontal plane, towards 1 the more its far side shrinks (an oblique view)."""
    q = rect_to_quad(h, (0, 0, 1, 1))
    left, right = float(np.linalg.norm(q[3] - q[0])), float(np.linalg.norm(q[2] - q[1]))
    return float(np.clip(2.5 * (1 - min(left, right) / max(left, right, 1e-6)), 0, 1))


def _handle(rng: np.random.Generator, size_px: tuple[float, float], side: str) -> Rect:
    """A door handle in the door's unit square: a vertical pull bar near the opening edge or a push bar."""
    w, h = size_px
    if rng.random() < 0.7:
        bw, bh = rng.uniform(5, 9) / w, rng.uniform(0.18, 0.4)
        u = rng.uniform(0.07, 0.14) if side == "left" else 1 - rng.uniform(0.07, 0.14) - bw
        v = rng.uniform(0.42, 0.52) - bh / 2
        return (float(u), float(v), float(u + bw), float(v + bh))
    bh, bw = rng.uniform(5, 9) / h, rng.uniform(0.55, 0.8)
    v = rng.uniform(0.45, 0.55)
    return (float((1 - bw) / 2), float(v), float((1 + bw) / 2), float(v + bh))


def _glass_unit(rng, kind, h, rows, cols, frame_px, mullion_px, through, finish, even=True) -> Unit:
    size = _quad_size(h)
    frame = _frame_uv(frame_px, size)
    mullion = (min(mullion_px / max(size[0], 1.0), 0.1), min(mullion_px / max(size[1], 1.0), 0.1))
    layout = grid_layout(rng, rows, cols, frame, mullion, even=even)
    return Unit(kind, h, layout, finish, through, sample_glass_look(rng, _grazing(h)))


def _finish(rng) -> str:
    return str(rng.choice(list(FRAME_COLOURS)))


def _wall_plane(rng, w, h, max_strength=0.8):
    strength = 0.0 if rng.random() < 0.35 else rng.uniform(0.1, max_strength)
    box = (
        rng.uniform(-0.12, -0.02) * w,
        rng.uniform(-0.12, -0.02) * h,
        rng.uniform(1.02, 1.12) * w,
        rng.uniform(1.02, 1.12) * h,
    )
    return perspective_plane(rng, box, strength)


def make_glass_wall(rng, scene: Scene) -> None:
    """A storefront / curtain wall covering most of the image, framed or frameless."""
    w, h = scene.size
    box = (
        rng.uniform(-0.3, 0.15) * w,
        rng.uniform(-0.3, 0.2) * h,
        rng.uniform(0.85, 1.3) * w,
        rng.uniform(0.8, 1.3) * h,
    )
    if rng.random() < 0.75:  # floor to ceiling: a pane that ends inside the picture reads as a poster
        box = (box[0], rng.uniform(-0.3, -0.02) * h, box[2], rng.uniform(1.02, 1.3) * h)
    plane = perspective_plane(rng, box, 0.0 if rng.random() < 0.3 else rng.uniform(0.2, 1.0))
    cols, rows = int(rng.integers(1, 6)), int(rng.choice([1, 2], p=[0.7, 0.3]))
    framed = rng.random() < 0.6
    fp = rng.uniform(5, 16) if framed else 0.0
    frame_px = (fp, fp * rng.uniform(0.8, 1.5), fp, fp * rng.uniform(0.8, 2.0))
    if not framed and rng.random() < 0.4:
        frame_px = (0.0, rng.uniform(6, 16), 0.0, rng.uniform(6, 16))  # floor and ceiling channels only
    mullion = rng.uniform(4, 12) if framed else rng.uniform(1.5, 3.5)  # frameless panels meet at seams
    # Frameless glass showing an unrelated picture reads as a pasted photo: it mostly shows the scene.
    through = "same" if rng.random() < (0.6 if framed else 0.85) else "other"
    unit = _glass_unit(
        rng,
        "glass_wall",
        plane,
        rows,
        cols,
        frame_px,
        mullion,
        through,
        _finish(rng) if framed else "steel",
        even=rng.random() < 0.6,
    )
    if rng.random() < 0.3:  # one panel is a door
        pane = unit.layout.panes[int(rng.integers(len(unit.layout.panes)))]
        hu, hv = pane[2] - pane[0], pane[3] - pane[1]
        size = _quad_size(plane)
        hd = _handle(rng, (size[0] * hu, size[1] * hv), str(rng.choice(["left", "right"])))
        unit.layout.hardware.append(
            (pane[0] + hd[0] * hu, pane[1] + hd[1] * hv, pane[0] + hd[2] * hu, pane[1] + hd[3] * hv)
        )
    scene.units.append(unit)


def make_windows(rng, scene: Scene) -> None:
    """One to three framed windows in a row on one wall plane, looking out onto another view."""
    w, h = scene.size
    wall = _wall_plane(rng, w, h)
    n = int(rng.integers(1, 4))
    top, height = rng.uniform(0.08, 0.35), rng.uniform(0.3, 0.6)
    widths = rng.uniform(0.15, 0.34, n) * (1.0 if n < 3 else 0.8)
    gap = (1.0 - widths.sum()) / (n + 1)
    u = gap * rng.uniform(0.5, 1.5)
    rows, cols = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    finish, through = _finish(rng), "other" if rng.random() < 0.9 else "same"
    frame = rng.uniform(6, 18)
    for k in range(n):
        plane = sub_homography(wall, (u, top, u + widths[k], top + height))
        unit = _glass_unit(
            rng,
            "window",
            plane,
            rows,
            cols,
            (frame, frame, frame, frame * rng.uniform(1.2, 2.2)),
            rng.uniform(3, 10),
            through,
            finish,
        )
        unit.shadow = rng.random() < 0.7
        scene.units.append(unit)
        u += widths[k] + gap
    scene.wall_base = rng.random() < 0.9  # windows belong in walls; a few sit on a photo for variety
    if scene.wall_base and rng.random() < 0.2:
        _decoy(rng, scene, wall)


def make_doors(rng, scene: Scene) -> None:
    """A glass door (or double door), sometimes with a sidelight, standing on the floor."""
    w, h = scene.size
    wall = _wall_plane(rng, w, h)
    bottom = rng.uniform(0.86, 1.02)
    height = rng.uniform(0.55, 0.85)
    width = height * (h / w) * rng.uniform(0.38, 0.55)
    n = 2 if rng.random() < 0.35 else 1
    u = rng.uniform(0.05, max(0.06, 0.95 - n * width))
    scene.wall_base = rng.random() < 0.8  # a door on a painted wall shows another room through it
    finish = _finish(rng)
    through = "same" if not scene.wall_base and rng.random() < 0.5 else "other"
    frame = rng.uniform(8, 22)
    kick = rng.uniform(12, 60) if rng.random() < 0.5 else frame
    rows = 2 if rng.random() < 0.25 else 1
    for k in range(n):
        plane = sub_homography(wall, (u, bottom - height, u + width, bottom))
        unit = _glass_unit(rng, "door", plane, rows, 1, (frame, frame, frame, kick), frame * 0.8, through, finish)
        side = ("right" if k == 0 else "left") if n == 2 else str(rng.choice(["left", "right"]))
        unit.layout.hardware.append(_handle(rng, _quad_size(plane), side))
        unit.handle_round = rng.random() < 0.7
        unit.shadow = rng.random() < 0.5
        scene.units.append(unit)
        u += width
    if rng.random() < 0.35 and u + 0.3 * width < 1.1:  # a fixed sidelight beside the door
        plane = sub_homography(wall, (u, bottom - height, u + width * rng.uniform(0.3, 0.5), bottom))
        scene.units.append(_glass_unit(rng, "sidelight", plane, 1, 1, (frame,) * 4, frame, through, finish))
    if scene.wall_base and rng.random() < 0.2:
        _decoy(rng, scene, wall)


def make_partition(rng, scene: Scene) -> None:
    """Frameless glass panels meeting at thin seams, with floor/ceiling channels or patch fittings."""
    w, h = scene.size
    for _ in range(int(rng.choice([1, 2], p=[0.75, 0.25]))):
        x0 = rng.uniform(-0.2, 0.45) * w
        box = (x0, rng.uniform(-0.2, 0.25) * h, x0 + rng.uniform(0.45, 1.2) * w, rng.uniform(0.75, 1.2) * h)
        if rng.random() < 0.7:  # partitions stand floor to ceiling
            box = (box[0], rng.uniform(-0.2, -0.02) * h, box[2], rng.uniform(1.02, 1.2) * h)
        plane = perspective_plane(rng, box, rng.uniform(0.2, 1.0))
        rail = (0.0, rng.uniform(5, 14), 0.0, rng.uniform(5, 14)) if rng.random() < 0.4 else (0.0,) * 4
        unit = _glass_unit(
            rng,
            "partition",
            plane,
            1,
            int(rng.integers(1, 5)),
            rail,
            rng.uniform(1.5, 3.0),
            "same" if rng.random() < 0.75 else "other",
            "steel",
            even=rng.random() < 0.5,
        )
        if rng.random() < 0.4:  # patch fittings: small metal clamps at the panel corners
            size = _quad_size(plane)
            fw, fh = rng.uniform(10, 22) / size[0], rng.uniform(10, 22) / size[1]
            for u0, v0, u1, v1 in unit.layout.panes:
                for uu in (u0, u1 - fw):
                    for vv in (v0, v1 - fh):
                        unit.layout.hardware.append((uu, vv, uu + fw, vv + fh))
            unit.handle_round = False
        scene.units.append(unit)


def make_small_windows(rng, scene: Scene) -> None:
    """A facade of small windows (a building seen from afar), each with a thin frame."""
    w, h = scene.size
    wall = _wall_plane(rng, w, h, max_strength=0.5)
    nr, nc = int(rng.integers(1, 4)), int(rng.integers(2, 6))
    ww, wh = rng.uniform(0.06, 0.14), rng.uniform(0.08, 0.2)
    finish, frame = _finish(rng), rng.uniform(2, 6)
    gu, gv = (1 - nc * ww) / (nc + 1), (1 - nr * wh) / (nr + 1)
    cols = int(rng.integers(1, 3))
    for r in range(nr):
        for c in range(nc):
            if rng.random() < 0.15:
                continue  # a gap in the facade
            u0 = gu + c * (ww + gu) + rng.uniform(-0.01, 0.01)
            v0 = gv + r * (wh + gv) + rng.uniform(-0.01, 0.01)
            plane = sub_homography(wall, (u0, v0, u0 + ww, v0 + wh))
            unit = _glass_unit(rng, "window", plane, 1, cols, (frame,) * 4, frame, "other", finish)
            unit.shadow = rng.random() < 0.5
            scene.units.append(unit)
    scene.wall_base = True  # a facade: small windows pasted on a photo read as stickers


def _decoy(rng, scene: Scene, wall: np.ndarray) -> None:
    """An opaque framed panel on the wall (a solid door panel or a picture): looks framed, is not glass."""
    u0, v0 = rng.uniform(0.05, 0.6), rng.uniform(0.05, 0.4)
    plane = sub_homography(wall, (u0, v0, u0 + rng.uniform(0.15, 0.35), v0 + rng.uniform(0.2, 0.5)))
    frame = _frame_uv((rng.uniform(4, 14),) * 4, _quad_size(plane))
    rows, cols = (1, 1) if rng.random() < 0.6 else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    layout = grid_layout(rng, rows, cols, frame, (frame[0], frame[1]))
    scene.units.insert(0, Unit("panel", plane, layout, _finish(rng), through="none", shadow=True))


def make_none(rng, scene: Scene) -> None:
    """No glass. Usually an opaque framed panel or picture on a wall, as a hard negative."""
    w, h = scene.size
    if rng.random() < 0.7:
        wall = _wall_plane(rng, w, h)
        for _ in range(int(rng.integers(1, 3))):
            _decoy(rng, scene, wall)
    scene.wall_base = rng.random() < 0.6


MAKERS = {
    "glass_wall": make_glass_wall,
    "windows": make_windows,
    "doors": make_doors,
    "partition": make_partition,
    "small_windows": make_small_windows,
    "none": make_none,
}
