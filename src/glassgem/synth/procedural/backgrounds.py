"""Background photos for procedural glass scenes: where they come from and how they are varied.

Default: the sample photos that ship inside scikit-image's wheel (no download; permissively licensed).
Otherwise a user folder of any images, read with glassgem.io.load_image. Each scene draws random crops,
flips, scales and colour shifts of them, and sometimes a plain painted wall instead, so thousands of
scenes do not look like the same fifteen pictures.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import DataError
from ...io import IMAGE_EXTENSIONS, load_image
from .glass_effects import smooth_noise

# Large user photos are shrunk once on load: scenes are a few hundred pixels wide.
MAX_SIDE = 1024
CACHE_SIZE = 48

# scikit-image sample photos that load offline, with how often each is the scene itself: real scenes
# are; textures (brick, gravel, text...) rarely are, but serve as views, reflections and wall texture.
SKIMAGE_PHOTOS: dict[str, float] = {
    "astronaut": 3,
    "chelsea": 3,
    "coffee": 3,
    "rocket": 3,
    "camera": 3,
    "motorcycle_left": 3,
    "motorcycle_right": 3,
    "clock": 1,
    "coins": 1,
    "brick": 0.3,
    "grass": 0.3,
    "gravel": 0.3,
    "page": 0.1,
    "text": 0.1,
    "hubble_deep_field": 0.3,
    "immunohistochemistry": 0.3,
    "moon": 0.3,
}


def _load_skimage(name: str) -> np.ndarray:
    from skimage import data

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        return left if name.endswith("left") else right
    return getattr(data, name)()


class _SkimageLoader:  # loaders are small classes, not lambdas, so worker processes can unpickle them
    def __init__(self, names: list[str]):
        self.names = names

    def __call__(self, i: int) -> np.ndarray:
        return _load_skimage(self.names[i])


class _FileLoader:
    def __init__(self, files: list[Path]):
        self.files = files

    def __call__(self, i: int) -> np.ndarray:
        return load_image(self.files[i])


class _ArrayLoader:
    def __init__(self, arrays: list[np.ndarray]):
        self.arrays = arrays

    def __call__(self, i: int) -> np.ndarray:
        return self.arrays[i]


def _as_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.clip(img.astype(np.float64) * (255.0 if img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def _shrink(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    if max(h, w) <= MAX_SIDE:
        return img
    scale = MAX_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BILINEAR))


class Backgrounds:
    """An indexed set of photos: `len`, `name(i)`, `image(i)` (uint8 RGB, cached).

    `weights` say how often each photo is picked as the scene itself (other uses pick uniformly).
    """

    def __init__(
        self,
        names: Sequence[str],
        loader: Callable[[int], np.ndarray],
        weights: Sequence[float] | None = None,
        source: str = "arrays",
    ):
        if not names:
            raise DataError("no background images given")
        self.names = list(names)
        self._loader = loader
        w = np.asarray(weights if weights is not None else np.ones(len(names)), dtype=float)
        self.weights = w / w.sum()
        self.source = source
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.names)

    def name(self, i: int) -> str:
        return self.names[i]

    def image(self, i: int) -> np.ndarray:
        if i not in self._cache:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[i] = _shrink(_as_rgb(self._loader(i)))
        return self._cache[i]

    def __getstate__(self) -> dict:  # workers rebuild their own cache
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], names: Sequence[str] | None = None) -> Backgrounds:
        arrays = [_as_rgb(a) for a in arrays]
        names = list(names) if names is not None else [f"array{i}" for i in range(len(arrays))]
        return cls(names, _ArrayLoader(arrays), source="arrays")


def default_backgrounds() -> Backgrounds:
    """scikit-image's bundled sample photos (read from its installed package, never downloaded)."""
    names = list(SKIMAGE_PHOTOS)
    return Backgrounds(
        [f"skimage:{n}" for n in names],
        _SkimageLoader(names),
        weights=[SKIMAGE_PHOTOS[n] for n in names],
        source="skimage",
    )


def folder_backgrounds(folder: str | os.PathLike) -> Backgrounds:
    """Every image file under `folder` (recursively, sorted). Headers are checked now, pixels on use.
    A dataset folder (images/ + masks/, e.g. a `glassgem data photos` split) gives its images/ only."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: backgrounds folder not found")
    if (folder / "images").is_dir() and (folder / "masks").is_dir():
        folder = folder / "images"  # its masks are not photos
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"{folder}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
    for p in files:  # fail before hours of work, naming the bad file
        try:
            with Image.open(p) as im:
                im.size
        except Exception as e:
            raise DataError(f"{p}: cannot read background image ({type(e).__name__}: {e})") from None
    names = [p.relative_to(folder).as_posix() for p in files]
    return Backgrounds(names, _FileLoader(files), source=str(folder))


# ------------------------------------------------------------------------------------- variation
def augment(rng: np.random.Generator, img: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, dict]:
    """A random crop (scale, position, flip) resized to size=(W, H) and colour-shifted -> float32 [0, 1]."""
    w_out, h_out = size
    h, w = img.shape[:2]
    aspect = w_out / h_out
    max_w = min(w, h * aspect)  # the largest crop with the output's aspect ratio
    frac = rng.uniform(0.4, 1.0)
    cw, ch = max_w * frac, max_w * frac / aspect
    x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    flip = bool(rng.random() < 0.5)
    crop = Image.fromarray(img).resize(
        (w_out, h_out), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch), reducing_gap=2.0
    )  # big shrinks: a fast integer reduce first
    if flip:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    gray = bool(np.ptp(img[::8, ::8].astype(np.int16), axis=2).max() < 3)
    gains = rng.normal(1.0, 0.05, 3) if not gray else np.array([1.0, 1.0, 1.0]) + rng.normal(0, 0.09, 3)
    bright, contrast = rng.uniform(0.75, 1.15), rng.uniform(0.8, 1.15)
    sat, gamma = rng.uniform(0.6, 1.3), rng.uniform(0.8, 1.25)
    # Saturation, contrast, gains and brightness are one affine colour map (a 3x3 matrix and an
    # offset), which PIL applies in C; gamma is a 256-entry lookup table. (In numpy this was 4x slower.)
    lum = np.full((3, 3), 1.0 / 3.0)
    m = lum + (np.eye(3) - lum) * sat
    mean = np.asarray(crop)[::4, ::4].reshape(-1, 3).mean(axis=0)
    m = m * contrast
    offset = (1.0 - contrast) * float((m / contrast @ mean).mean())
    scale = (gains * bright)[:, None]
    m, offsets = m * scale, offset * scale[:, 0]
    crop = crop.convert("RGB", tuple(float(v) for v in np.c_[m, offsets].ravel()))
    lut = np.clip(np.linspace(0.0, 1.0, 256) ** gamma * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out = np.asarray(crop.point(lut.tolist() * 3), dtype=np.float32)
    out *= np.float32(1.0 / 255.0)
    params = {
        "crop": [round(float(v), 2) for v in (x0, y0, x0 + cw, y0 + ch)],
        "flip": flip,
        "gains": np.round(gains, 3).tolist(),
        "brightness": round(float(bright), 3),
        "contrast": round(float(contrast), 3),
        "saturation": round(float(sat), 3),
        "gamma": round(float(gamma), 3),
    }
    return out, params


WALL_PAINTS = {
    "white": (0.90, 0.89, 0.86),
    "cream": (0.88, 0.83, 0.72),
    "grey": (0.68, 0.68, 0.67),
    "concrete": (0.58, 0.57, 0.54),
    "sage": (0.67, 0.72, 0.62),
    "blue": (0.62, 0.70, 0.78),
    "terracotta": (0.70, 0.45, 0.35),
    "dark": (0.28, 0.28, 0.30),
}


def _wall_texture(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """A multiplicative (H, W) relief for a wall finish: plaster grain, brick courses or tile joints."""
    if kind == "plaster":
        return 1.0 + 0.025 * smooth_noise(rng, (h, w), rng.uniform(80, 160))
    ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    if kind == "brick":
        bh = int(rng.integers(8, 20))
        bw = int(bh * rng.uniform(2.0, 3.2))
        course = ys // bh
        shift = (course % 2) * (bw // 2)  # every other course is offset by half a brick
        joint = ((ys % bh) < 2) | (((xs + shift) % bw) < 2)
        tone = 1.0 + 0.08 * rng.standard_normal((h // bh + 2, w // bw + 3)).astype(np.float32)
        relief = tone[course, (xs + shift) // bw]
        return np.where(joint, np.float32(0.75), relief).astype(np.float32)
    step = int(rng.integers(14, 40))  # tiles
    joint = ((ys % step) < 1) | ((xs % step) < 1)
    return np.where(joint, np.float32(0.8), np.float32(1.0)) * np.ones((h, w), np.float32)


def painted_wall(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, dict]:
    """A lit wall, plain or with plaster/brick/tile relief, sometimes with a floor -> float32 (H, W, 3)."""
    w, h = size
    paint = str(rng.choice(list(WALL_PAINTS)))
    base = np.asarray(WALL_PAINTS[paint], np.float32) * rng.uniform(0.85, 1.1)
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xs / w - 0.5) + np.sin(angle) * (ys / h - 0.5)) * rng.uniform(0.1, 0.4)
    light = 1.0 + ramp + 0.04 * smooth_noise(rng, (h, w), 4)
    finish = str(rng.choice(["plain", "plaster", "brick", "tiles"], p=[0.35, 0.35, 0.2, 0.1]))
    if finish != "plain":
        light = light * _wall_texture(rng, finish, h, w)
    img = base[None, None, :] * light[..., None]
    floor = None
    if rng.random() < 0.5:
        floor = float(rng.uniform(0.72, 0.92))
        fcol = np.asarray(WALL_PAINTS[str(rng.choice(list(WALL_PAINTS)))], np.float32) * rng.uniform(0.5, 0.9)
        below = (ys >= floor * h)[:, 0]
        img[below] = (fcol[None, :] * (0.9 + 0.2 * (ys[below] / h - floor)))[:, None, :]
    meta = {"paint": paint, "finish": finish, "floor": None if floor is None else round(floor, 3)}
    return np.clip(img, 0.0, 1.0).astype(np.float32), meta


def outdoor_view(rng: np.random.Generator, size: tuple[int, int], ground: np.ndarray | None) -> tuple[np.ndarray, dict]:
    """What a window looks out on: sky with clouds, a skyline or trees, and the ground (from a photo).

    A daylight view is the strongest single cue that a framed rectangle is a window, not a picture.
    """
    w, h = size
    ys = np.arange(h, dtype=np.float32)[:, None] / h
    horizon = float(rng.uniform(0.35, 0.9))
    overcast = bool(rng.random() < 0.3)
    top = (
        np.array([0.55, 0.6, 0.66], np.float32)
        if overcast
        else np.array([0.25, 0.45, 0.8], np.float32) * rng.uniform(0.9, 1.2)
    )
    low = np.array([0.82, 0.84, 0.86], np.float32) if overcast else np.array([0.72, 0.82, 0.95], np.float32)
    k = np.clip(ys / max(horizon, 1e-3), 0, 1)[..., None]
    img = top * (1 - k) + low * k + np.zeros((1, w, 1), np.float32)
    clouds = np.clip(smooth_noise(rng, (h, w), rng.uniform(3, 9)) * 0.6 + rng.uniform(-0.6, 0.2), 0, 1)
    img = img + (np.float32(0.95) - img) * (clouds * (1 - k[..., 0] * 0.5))[..., None]
    skyline = rng.random() < 0.6
    if skyline:  # building silhouettes standing on the horizon, each with a grid of windows
        x = float(rng.uniform(-0.1, 0.0))
        while x < 1.0:
            bw, bh = rng.uniform(0.06, 0.25), rng.uniform(0.05, 0.6) * horizon
            c0, c1 = int(max(x, 0) * w), int(min(x + bw, 1) * w)
            r0, r1 = int((horizon - bh) * h), int(horizon * h) + 1
            if c1 > c0 and r1 > r0:
                col = np.float32(rng.uniform(0.3, 0.8)) * np.float32(rng.uniform(0.85, 1.1, 3))
                face = np.broadcast_to(col, (r1 - r0, c1 - c0, 3)).copy()
                pitch = (int(rng.integers(6, 16)), int(rng.integers(6, 16)))
                rr, cc = np.arange(r1 - r0)[:, None], np.arange(c1 - c0)[None, :]
                glazing = ((rr % pitch[0]) < pitch[0] // 2) & ((cc % pitch[1]) < pitch[1] // 2)
                face[glazing] = face[glazing] * 0.6 + np.array([0.2, 0.25, 0.3], np.float32) * 0.4
                img[r0:r1, c0:c1] = face
            x += bw + rng.uniform(-0.02, 0.05)
    elif rng.random() < 0.6:  # a tree line: a bumpy canopy outline above the horizon
        crown = rng.uniform(0.05, 0.25)
        outline = horizon - crown * (1 + 0.5 * smooth_noise(rng, (1, w), rng.uniform(8, 30)))
        trees = (ys > outline) & (ys <= horizon)
        leaves = np.array([0.18, 0.32, 0.12], np.float32) * rng.uniform(0.7, 1.3)
        shade = 1 + 0.3 * smooth_noise(rng, (h, w), 40)
        img[trees] = leaves * shade[trees][:, None]
    r_h = int(horizon * h)
    if r_h < h:
        if ground is not None:
            img[r_h:] = ground[r_h:]
        else:
            field = np.array([0.35, 0.45, 0.25], np.float32) * rng.uniform(0.6, 1.2)
            img[r_h:] = field * (1 + 0.1 * smooth_noise(rng, (h - r_h, w), 8))[..., None]
    meta = {"horizon": round(horizon, 3), "overcast": overcast, "skyline": skyline, "ground": ground is not None}
    return np.clip(img, 0, 1).astype(np.float32), meta
