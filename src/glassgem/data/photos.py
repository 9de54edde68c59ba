"""A corpus of real glass-free photos from offline sources: what a model must learn is *not* glass.

Every GDD photo contains glass, so a model trained only on GDD learns that every photo does. The fix is
real photos without glass, and some ship inside packages that install offline: desktop backgrounds in
Debian packages (`apt-get install gnome-backgrounds mate-backgrounds plasma-workspace-wallpapers ...`)
and the sample photos of scikit-image, scikit-learn and matplotlib. `build_corpus` (`glassgem data
photos`) gathers them, one source per package:

- reads each photo (one that fails to decode is reported by name and skipped, never fatal);
- drops resolution variants of one picture (the same name with a `WxH` suffix, or one wallpaper folder
  of Plasma's `contents/images*`; the largest is kept) and near-duplicates across sources
  (`same_picture`: small thumbnails of nearly the same colours and detail), and photos that were checked
  by eye and show glass (`EXCLUDED`, each with its reason) or are no photo of a scene (logos, text pages);
- splits **by source**: the sources in `HELDOUT_SOURCES` (fixed before any model was scored on them)
  are only ever used to measure false glass, so it is measured on photos from packages the model never saw;
- writes each kept photo scaled to at most `long_side` px, plus for training photos `crops` random
  crops (a third to two thirds of each side) that show the texture at other scales, with all-zero masks,
  in the images/ + masks/ layout every glassgem command reads: `OUT/train/` and `OUT/heldout/`;
- records every output file (source package, licence, original path, crop box) in `OUT/manifest.jsonl`,
  every dropped photo and why in `OUT/dropped.jsonl`, and draws a labelled contact sheet per split.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, GlassgemError
from ..io import atomic_write_text, load_image, save_image, save_mask
from ..overlay import grid

# Debian packages of photographs and pictures; `glassgem data photos` reads those that are installed.
DEBIAN_PACKAGES = (
    "gnome-backgrounds",
    "mate-backgrounds",
    "plasma-workspace-wallpapers",
    "ukui-wallpapers",
    "lomiri-wallpapers",
    "lomiri-wallpapers-16.04",
    "lomiri-wallpapers-20.04",
    "sway-backgrounds",
)
PYTHON_PACKAGES = ("scikit-image", "scikit-learn", "matplotlib")
# Chosen before any model was measured on them: photos of these sources are never trained on.
HELDOUT_SOURCES = ("mate-backgrounds", "ukui-wallpapers", "sway-backgrounds", "scikit-learn", "matplotlib")

# source:file name -> why it is not in the corpus (looked at on the contact sheets, `--keep-all` to see all).
EXCLUDED = {
    "scikit-image:text.png": "no scene (a page of text)",
    "scikit-image:page.png": "no scene (a scanned page)",
    "scikit-image:logo.png": "no scene (a logo)",
    "scikit-image:astronaut.png": "a helmet visor",
    "scikit-image:clock_motion.png": "a clock face, possibly under glass",
    "scikit-image:motorcycle_right.png": "the other view of the stereo pair motorcycle_left",
    "scikit-learn:china.jpg": "a building with windows",
    "matplotlib:logo2.png": "no scene (a logo)",
    "matplotlib:grace_hopper.jpg": "spectacles",
    "lomiri-wallpapers-16.04:Wine_by_Jakkub_Mede.jpg": "windows and a bottle",
    "lomiri-wallpapers-16.04:free_by_Peter_Nerlich.jpg": "glass lamp globes",
    "lomiri-wallpapers-16.04:friends_by_Aitzol_Berasategi.jpg": "dogs looking out of a window",
    "lomiri-wallpapers-16.04:greentock_by_Peter_Nerlich.jpg": "a clock face, possibly under glass",
    "lomiri-wallpapers-16.04:sunset_by_Aitzol_Berasategi.jpg": "a transparent dome in the foreground",
    "plasma-workspace-wallpapers:ColorfulCups": "cups that may be glass",
    "plasma-workspace-wallpapers:Grey": "a building facade that may be glazed",
    **{
        f"mate-backgrounds:{n}.png": "transparent overlay: blank on its own"
        for n in ("Arc-Colors-Transparent-Wallpaper", "Flow", "Gulp", "Silk", "Spring", "Waves", "MATE-Stripes-Light")
    },
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
DUPLICATE_DIFF = 8.0  # see same_picture
DUPLICATE_CORR = 0.9
MIN_SIDE = 128
WORKING_SIDE = 2048  # photos are held at most this large between reading and writing
_VARIANT = re.compile(r"[_-]?\d{3,5}x\d{3,5}(_portrait)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Photo:
    source: str  # package (or folder name) it came from
    path: Path
    licence: str


def _debian_licence(package: str) -> str:
    copyright = Path("/usr/share/doc") / package / "copyright"
    try:
        names = sorted(
            {
                line.split(":", 1)[1].strip()
                for line in copyright.read_text(errors="replace").splitlines()
                if line.startswith("License:")
            }
        )
    except OSError:
        return f"unknown (no {copyright})"
    return (" / ".join(names) or "see copyright") + f" ({copyright})"


def debian_photos(package: str) -> list[Photo]:
    """Images a Debian package installed (`dpkg -L`); [] if it is not installed."""
    try:
        listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False)
    except OSError:
        return []
    if listing.returncode != 0:
        return []
    licence = _debian_licence(package)
    files = [
        Path(f)
        for f in listing.stdout.splitlines()
        if f.lower().endswith(IMAGE_SUFFIXES) and "screenshot" not in Path(f).name.lower()
    ]
    return [Photo(package, f, licence) for f in sorted(files) if f.is_file()]


def python_photos(package: str) -> list[Photo]:
    """The sample photos an installed Python package ships; [] if it is not installed."""
    module, sub, licence = {
        "scikit-image": ("skimage", "data", "BSD-3-Clause; per-image terms in skimage/data/README.txt"),
        "scikit-learn": (
            "sklearn",
            "datasets/images",
            "BSD-3-Clause; per-image terms in sklearn/datasets/images/README.txt",
        ),
        "matplotlib": ("matplotlib", "mpl-data/sample_data", "Matplotlib licence (PSF-based)"),
    }[package]
    try:
        mod = __import__(module)
    except ImportError:
        return []
    if mod.__file__ is None:  # a namespace package: no folder of its own
        return []
    folder = Path(mod.__file__).parent / sub
    return [Photo(package, f, licence) for f in sorted(folder.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]


def folder_photos(source: str, folder: str | os.PathLike) -> list[Photo]:
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (given as --folder {source}={folder})")
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    return [Photo(source, f, f"as given in {root}") for f in files]


def photo_name(photo: Photo) -> str:
    """The picture's name: the file name, or for Plasma (NAME/contents/images/WxH.jpg) its folder NAME."""
    parts = photo.path.parts
    if "contents" in parts:
        i = parts.index("contents")
        return parts[i - 1] + ("" if parts[i + 1] == "images" else f"_{parts[i + 1]}")
    return photo.path.name


def variant_key(photo: Photo) -> tuple[str, str]:
    """Resolution variants of one picture share this key: Plasma's wallpaper folder, or the file stem
    without a `WxH` suffix."""
    parts = photo.path.parts
    if "contents" in parts:  # Plasma: NAME/contents/images/1920x1080.jpg (images_dark: another picture)
        i = parts.index("contents")
        return photo.source, "/".join(parts[: i + 2])
    return photo.source, str(photo.path.parent / _VARIANT.sub("", photo.path.stem))


def thumbnails(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(16x16 RGB thumbnail, 64x64 grey detail with zero mean and unit norm), aspect not kept."""
    from PIL import Image

    pic = Image.fromarray(image)
    colour = np.asarray(pic.resize((16, 16), Image.Resampling.BOX), np.float32)
    grey = np.asarray(pic.convert("L").resize((64, 64), Image.Resampling.BOX), np.float32)
    grey = grey - grey.mean()
    return colour, grey / max(float(np.linalg.norm(grey)), 1e-6)


def same_picture(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    """Near-duplicates: the same colours (thumbnail difference under `DUPLICATE_DIFF`) *and* the same
    detail (correlation of the grey thumbnails over `DUPLICATE_CORR`; two textures of one mean grey differ here)."""
    return float(np.abs(a[0] - b[0]).mean()) < DUPLICATE_DIFF and float((a[1] * b[1]).sum()) > DUPLICATE_CORR


def scale_down(image: np.ndarray, long_side: int) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    s = long_side / max(h, w)
    if s >= 1:
        return image
    return np.asarray(
        Image.fromarray(image).resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
    )


def _crop_boxes(rng: np.random.Generator, h: int, w: int, n: int) -> list[tuple[int, int, int, int]]:
    boxes = []
    for _ in range(n):
        ch, cw = int(h * rng.uniform(1 / 3, 2 / 3)), int(w * rng.uniform(1 / 3, 2 / 3))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        boxes.append((top, left, ch, cw))
    return boxes


def corpus_name(photo: Photo) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{photo.source}__{Path(photo_name(photo)).stem}")


@dataclass
class Corpus:
    kept: dict[str, int]  # split -> photos
    files: dict[str, int]  # split -> files written
    dropped: list[dict]
    out: Path

    def line(self) -> str:
        parts = [f"{self.kept[s]} photos -> {self.files[s]} files in {self.out / s}" for s in ("train", "heldout")]
        return "; ".join(parts) + f"; {len(self.dropped)} dropped (see {self.out / 'dropped.jsonl'})"


def select_photos(
    photos: Sequence[Photo], keep_all: bool = False, progress: bool = True
) -> tuple[list[tuple[Photo, np.ndarray]], list[dict]]:
    """Decode, drop excluded photos, resolution variants and near-duplicates. -> (kept with pixels, dropped)."""
    from tqdm.auto import tqdm

    dropped: list[dict] = []
    best: dict[tuple[str, str], tuple[Photo, np.ndarray]] = {}
    for photo in tqdm(photos, desc="reading photos", unit="photo", disable=not progress):
        why = None if keep_all else EXCLUDED.get(f"{photo.source}:{photo_name(photo)}")
        if why:
            dropped.append({"source": photo.source, "path": str(photo.path), "why": why})
            continue
        try:
            image = scale_down(load_image(photo.path), WORKING_SIDE)  # bounded memory, enough for the crops
        except GlassgemError as e:
            dropped.append({"source": photo.source, "path": str(photo.path), "why": f"unreadable: {e}"})
            continue
        if min(image.shape[:2]) < MIN_SIDE:
            dropped.append({"source": photo.source, "path": str(photo.path), "why": f"smaller than {MIN_SIDE} px"})
            continue
        key = variant_key(photo)
        if key in best:
            small, large = sorted([best[key], (photo, image)], key=lambda pi: pi[1].shape[0] * pi[1].shape[1])
            dropped.append(
                {"source": small[0].source, "path": str(small[0].path), "why": f"resolution variant of {large[0].path}"}
            )
            best[key] = large
        else:
            best[key] = (photo, image)
    kept: list[tuple[Photo, np.ndarray, tuple]] = []
    for photo, image in best.values():
        t = thumbnails(image)
        twin = next((p for p, _, u in kept if same_picture(t, u)), None)
        if twin is not None:
            dropped.append({"source": photo.source, "path": str(photo.path), "why": f"near-duplicate of {twin.path}"})
        else:
            kept.append((photo, image, t))
    return [(p, im) for p, im, _ in kept], dropped


def build_corpus(
    photos: Iterable[Photo],
    out_dir: str | os.PathLike,
    heldout: Sequence[str] = HELDOUT_SOURCES,
    crops: int = 3,
    long_side: int = 640,
    seed: int = 0,
    keep_all: bool = False,
    progress: bool = True,
) -> Corpus:
    """Write the glass-free corpus to out/{train,heldout}/{images,masks} (see the module docstring)."""
    if crops < 0 or long_side < MIN_SIDE:
        raise ConfigError(f"--crops must be >= 0 and --long-side >= {MIN_SIDE}, got {crops}, {long_side}")
    photos = list(photos)
    if not photos:
        raise DataError("no photos found: install a source (e.g. apt-get install mate-backgrounds) or pass --folder")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: already holds files; give an empty or new --out folder")
    kept, dropped = select_photos(photos, keep_all=keep_all, progress=progress)
    if not any(p.source not in heldout for p, _ in kept) or not any(p.source in heldout for p, _ in kept):
        raise DataError(
            "the split by source left train or heldout empty: sources found were "
            f"{sorted({p.source for p, _ in kept})}, held out {sorted(heldout)}"
        )
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)  # an interrupted earlier build
    rows = []
    thumbs: dict[str, list[tuple[np.ndarray, str]]] = {"train": [], "heldout": []}
    for photo, image in kept:
        split = "heldout" if photo.source in heldout else "train"
        name = corpus_name(photo)
        rng = np.random.default_rng([seed, *name.encode()])  # each photo's crops depend on its name only
        h, w = image.shape[:2]
        boxes = [(0, 0, h, w)] + (_crop_boxes(rng, h, w, crops) if split == "train" else [])
        for k, (top, left, ch, cw) in enumerate(boxes):
            pic = scale_down(image[top : top + ch, left : left + cw], long_side)
            stem = name if k == 0 else f"{name}_crop{k}"
            save_image(tmp / split / "images" / f"{stem}.png", pic)
            save_mask(tmp / split / "masks" / f"{stem}.png", np.zeros(pic.shape[:2], np.uint8))
            rows.append(
                {
                    "file": f"{split}/images/{stem}.png",
                    "split": split,
                    "source": photo.source,
                    "licence": photo.licence,
                    "original": str(photo.path),
                    "box": [top, left, ch, cw],
                }
            )
        thumbs[split].append((scale_down(image, 256), f"{photo.source}: {photo_name(photo)}"[:40]))
    atomic_write_text(tmp / "manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write_text(tmp / "dropped.jsonl", "".join(json.dumps(r) + "\n" for r in dropped))
    for split, items in thumbs.items():
        sheet = grid([t for t, _ in items], cols=8, cell=(144, 192), labels=[label for _, label in items])
        save_image(tmp / f"contact_{split}.jpg", sheet, quality=88)
    if out.exists():
        out.rmdir()  # empty (checked above)
    os.replace(tmp, out)
    kept_n = {s: len(thumbs[s]) for s in thumbs}
    files = {s: sum(r["split"] == s for r in rows) for s in thumbs}
    return Corpus(kept_n, files, dropped, out)


def installed_photos(
    debian: Sequence[str] = DEBIAN_PACKAGES,
    python: Sequence[str] = PYTHON_PACKAGES,
    folders: dict[str, str] | None = None,
) -> tuple[list[Photo], list[str]]:
    """Photos of every installed source. -> (photos, names of sources with none installed)."""
    photos, missing = [], []
    for package in debian:
        found = debian_photos(package)
        photos += found
        missing += [] if found else [package]
    for package in python:
        found = python_photos(package)
        photos += found
        missing += [] if found else [package]
    for source, folder in (folders or {}).items():
        photos += folder_photos(source, folder)
    return photos, missing


def heldout_photos() -> tuple[list[tuple[Photo, np.ndarray]], list[str]]:
    """Every installed photo of the held-out sources, after select_photos (exclusions, variants,
    near-duplicates): what `glassgem demo` scores for false glass. -> (kept (photo, pixels), missing sources)."""
    photos, missing = installed_photos(
        [p for p in DEBIAN_PACKAGES if p in HELDOUT_SOURCES], [p for p in PYTHON_PACKAGES if p in HELDOUT_SOURCES]
    )
    kept, _ = select_photos(photos, progress=False)
    return kept, missing
