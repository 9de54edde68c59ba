"""Dataset folder layouts: image/mask folder pairs matched by file stem, under the layouts the field uses.

Torch-free on purpose, so that `glassgem data check` starts in well under a second.

Layouts (root = the dataset folder, split = "train" / "val" / "test" or None):
  gsds    GSD-S as downloaded: root/{split}/images + root/{split}/masks (or root/images + root/masks);
          also the original GEM release: root/images/{training,validation} +
          root/annotations_zero_one|annotations*/{training,validation} (val and test both mean validation,
          because GEM evaluates on the GSD-S test set under that name).
  gdd     GDD (Mei et al.): root/{split}/image + root/{split}/mask (images/masks also accepted).
  gsd     GSD (Lin et al.): root/{split}/images + root/{split}/masks (image/mask, gt, labels accepted).
  sgsd    S-GSD as glassgem's synthesiser writes it: root/images + root/masks (+ optional manifest.jsonl).
  auto    the first of the above whose folders exist.
Explicit `images=` + `masks=` folders bypass layouts.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from ..io import IMAGE_EXTENSIONS, MASK_EXTENSIONS

LAYOUTS = ("auto", "gsds", "gdd", "gsd", "sgsd")
MANIFEST_NAME = "manifest.jsonl"

# Split names as they appear on disk. GEM's release names GSD-S test "validation".
_SPLIT_DIRS = {
    "train": ("train", "training"),
    "val": ("val", "validation", "valid"),
    "test": ("test", "testing"),
}
_RELEASE_SPLIT = {"train": "training", "val": "validation", "test": "validation"}
_RELEASE_ANNOTATIONS = ("annotations_zero_one", "annotations")

_DIR_NAMES = {  # layout -> (image folder names, mask folder names), in preference order
    "gsds": (("images",), ("masks",)),
    "gdd": (("image", "images"), ("mask", "masks")),
    "gsd": (("images", "image", "imgs"), ("masks", "mask", "gt", "labels")),
    "sgsd": (("images",), ("masks",)),
}


@dataclass(frozen=True)
class Pair:
    stem: str
    image_path: Path
    mask_path: Path | None  # None only for image-only sets (prediction)

    def labelled_mask(self) -> Path:
        """The mask file; DataError naming the image when the pair has none (an image-only set)."""
        if self.mask_path is None:
            raise DataError(f"{self.image_path}: no mask for this image")
        return self.mask_path


@dataclass
class FolderScan:
    """What two folders hold, before any file is decoded."""

    images_dir: Path
    masks_dir: Path
    pairs: list[Pair] = field(default_factory=list)
    orphan_images: list[Path] = field(default_factory=list)  # no mask with that stem
    orphan_masks: list[Path] = field(default_factory=list)  # no image with that stem
    duplicates: dict[str, list[Path]] = field(default_factory=dict)  # stem -> files sharing it
    ignored: list[Path] = field(default_factory=list)  # files that are not images
    n_image_files: int = 0
    n_mask_files: int = 0


@dataclass(frozen=True)
class ResolvedSplit:
    layout: str
    split: str | None
    images_dir: Path
    masks_dir: Path


# ------------------------------------------------------------------------------ layout resolution
def _split_names(split: str) -> tuple[str, ...]:
    return _SPLIT_DIRS.get(split, (split,))


def _release_annotation_dirs(root: Path) -> list[Path]:
    """annotations_zero_one first (what GEM trains on), then annotations, then other annotations*."""
    named = [root / n for n in _RELEASE_ANNOTATIONS]
    others = sorted(p for p in root.glob("annotations*") if p.is_dir() and p not in named)
    return named + others


def _candidates(root: Path, layout: str, split: str | None) -> list[tuple[Path, Path]]:
    """(images_dir, masks_dir) pairs that `layout` would accept, best first."""
    image_names, mask_names = _DIR_NAMES[layout]
    bases = [root / s for s in _split_names(split)] if split else [root]
    out = [(b / i, b / m) for b in bases for i in image_names for m in mask_names]
    if layout == "gsds" and split:
        sub = _RELEASE_SPLIT.get(split, split)
        out += [(root / "images" / sub, ann / sub) for ann in _release_annotation_dirs(root)]
    return out


def _auto_order(root: Path) -> tuple[str, ...]:
    # A manifest marks a synthesised set; otherwise the layouts are tried in a fixed order.
    if (root / MANIFEST_NAME).is_file():
        return ("sgsd", "gsds", "gdd", "gsd")
    return ("gsds", "gdd", "gsd", "sgsd")


def available_splits(root: str | os.PathLike) -> list[str]:
    """Canonical split names (train/val/test) present under `root` in any known layout."""
    root = Path(root)
    found: dict[tuple[Path, Path], str] = {}  # folders -> first split name; GEM's val and test share one
    for split in _SPLIT_DIRS:
        for layout in ("gsds", "gdd", "gsd"):
            hit = next(((i, m) for i, m in _candidates(root, layout, split) if i.is_dir() and m.is_dir()), None)
            if hit is not None:
                found.setdefault(hit, split)
                break
    return list(found.values())


def resolve_split(
    root: str | os.PathLike | None,
    layout: str = "auto",
    split: str | None = None,
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
) -> ResolvedSplit:
    """Find the images and masks folders; DataError lists every place looked at if none exist."""
    if (images is None) != (masks is None):
        raise DataError("give both an images folder and a masks folder, or neither")
    if images is not None and masks is not None:
        base = Path(root) if root is not None else Path(".")
        img_dir, msk_dir = base / Path(images), base / Path(masks)
        for d, what in ((img_dir, "images"), (msk_dir, "masks")):
            if not d.is_dir():
                raise DataError(f"{d}: {what} folder not found")
        return ResolvedSplit("folders", split, img_dir, msk_dir)
    if root is None:
        raise DataError("no dataset folder given")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    if layout not in LAYOUTS:
        raise DataError(f"unknown dataset layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    names = _auto_order(root) if layout == "auto" else (layout,)
    for name in names:
        for img_dir, msk_dir in _candidates(root, name, split):
            if img_dir.is_dir() and msk_dir.is_dir():
                return ResolvedSplit(name, split, img_dir, msk_dir)
    found = available_splits(root)
    if split is None and found:
        hint = f"; it has splits {', '.join(found)}: pass a split"
    else:
        hint = f"; splits found: {', '.join(found)}" if found else ""
    looked = "; ".join(f"{n}: {_describe(n, split)}" for n in names)
    where = f", split {split!r}" if split else ""
    raise DataError(f"{root}: no image/mask folders for layout {layout!r}{where} (looked for {looked}){hint}")


def _alternatives(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else "{" + ",".join(names) + "}"


def _describe(layout: str, split: str | None) -> str:
    """The folders a layout looks for, as brace patterns (for error messages)."""
    image_names, mask_names = _DIR_NAMES[layout]
    base = _alternatives(_split_names(split)) + "/" if split else ""
    text = f"{base}{_alternatives(image_names)} + {base}{_alternatives(mask_names)}"
    if layout == "gsds" and split:
        sub = _RELEASE_SPLIT.get(split, split)
        text += f" or images/{sub} + annotations*/{sub}"
    return text


# ------------------------------------------------------------------------------ pairing by stem
def _list_files(folder: Path, extensions: tuple[str, ...]) -> tuple[dict[str, list[Path]], list[Path]]:
    """stem -> files with an accepted extension; plus non-image files (hidden files skipped)."""
    by_stem: dict[str, list[Path]] = defaultdict(list)
    ignored = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith(".") or not entry.is_file():
                continue  # atomic-write temporaries, .DS_Store, sub-folders
            path = Path(entry.path)
            if path.suffix.lower() in extensions:
                by_stem[path.stem].append(path)
            else:
                ignored.append(path)
    return by_stem, sorted(ignored)


def scan_folders(images_dir: str | os.PathLike, masks_dir: str | os.PathLike) -> FolderScan:
    """Match images and masks by file stem without decoding anything."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    imgs, ignored_i = _list_files(images_dir, IMAGE_EXTENSIONS)
    msks, ignored_m = _list_files(masks_dir, MASK_EXTENSIONS)
    scan = FolderScan(
        images_dir,
        masks_dir,
        ignored=ignored_i + ignored_m,
        n_image_files=sum(map(len, imgs.values())),
        n_mask_files=sum(map(len, msks.values())),
    )
    for stem, files in sorted(imgs.items()):
        if len(files) > 1:
            scan.duplicates[stem] = sorted(files)
    for stem, files in sorted(msks.items()):
        if len(files) > 1:
            scan.duplicates.setdefault(stem, [])
            scan.duplicates[stem] = sorted(scan.duplicates[stem] + files)
    for stem in sorted(imgs):
        if stem in msks:
            scan.pairs.append(Pair(stem, sorted(imgs[stem])[0], sorted(msks[stem])[0]))
        else:
            scan.orphan_images.extend(sorted(imgs[stem]))
    scan.orphan_masks = sorted(p for stem, files in msks.items() if stem not in imgs for p in files)
    return scan


def _listing(paths: list[Path], limit: int = 5) -> str:
    names = [p.name for p in paths[:limit]]
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(names) + more


def find_pairs(
    root: str | os.PathLike | None,
    layout: str = "auto",
    split: str | None = None,
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
) -> list[Pair]:
    """Image/mask pairs of a dataset split, sorted by stem.

    Raises DataError for a missing layout, an empty folder, duplicate stems, or images without masks
    and masks without images (run `glassgem data check` to see every problem at once).
    """
    res = resolve_split(root, layout, split, images, masks)
    scan = scan_folders(res.images_dir, res.masks_dir)
    problems = []
    if not scan.pairs and not scan.orphan_images:
        problems.append(f"{res.images_dir}: no images found")
    if scan.duplicates:
        dup = next(iter(scan.duplicates.values()))
        problems.append(f"{len(scan.duplicates)} stems name several files (e.g. {_listing(dup)})")
    if scan.orphan_images:
        problems.append(
            f"{len(scan.orphan_images)} images without a mask in {res.masks_dir} ({_listing(scan.orphan_images)})"
        )
    if scan.orphan_masks:
        problems.append(
            f"{len(scan.orphan_masks)} masks without an image in {res.images_dir} ({_listing(scan.orphan_masks)})"
        )
    if problems:
        raise DataError("; ".join(problems))
    return scan.pairs
