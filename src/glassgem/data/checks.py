"""Dataset validation: find every problem at once, each message naming the file.

Errors (training or evaluation would fail or silently learn from wrong data):
  unreadable / corrupt / truncated image or mask, image without mask, mask without image,
  image and mask of different sizes, several files sharing a stem, empty folder, a manifest.jsonl
  line that is not a JSON object.
Warnings (the data loads, but look at it):
  non-binary mask values — anything but {0,1} or {0,255} (a palette mask with indices {0,k} is fine).
  JPEG-compressed or soft masks land here; they still load, binarised by the GSD-S rule
  (divide by 255 if the max is above 127, then glass = value > 0.5), so they are not errors.
  Empty masks (no glass) — normal for some sets, reported as one count.
  Files in the folders that are not images.
`strict=True` turns warnings into errors.

Images are decoded cheaply (JPEG at 1/8 scale, which still reads every byte, so truncation shows);
masks are decoded fully to see their values.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import DataError
from ..io import MAX_PIXELS, MAX_PIXELS_ENV, ROTATING, _max_pixels, exif_note, mask_to_binary
from .layouts import MANIFEST_NAME, Pair, ResolvedSplit, available_splits, resolve_split, scan_folders

_EXIF_ORIENTATION = 0x0112
_PROGRESS_MIN_PAIRS = 200  # below this a progress bar is noise
_LIST_LIMIT = 10  # stems listed in a one-line summary (empty masks)


@dataclass
class CheckReport:
    root: str | None = None
    layout: str = ""
    splits: list[dict[str, Any]] = field(default_factory=list)  # split, images_dir, masks_dir, n_pairs
    n_images: int = 0
    n_masks: int = 0
    n_pairs: int = 0  # image/mask pairs matched by stem
    n_empty: int = 0  # readable masks with no glass
    n_non_binary: int = 0
    empty_stems: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        named = [s for s in self.splits if s["split"]]
        if len(named) == 1:
            where = f"; split {named[0]['split']}"
        else:  # several splits: pairs per split
            where = "".join(f"{'; ' if i == 0 else ', '}{s['split']}: {s['n_pairs']}" for i, s in enumerate(named))
        return (
            f"{self.root or self.splits[0]['images_dir']} (layout {self.layout}{where}): {self.n_pairs} pairs, "
            f"{self.n_empty} empty masks, {len(self.errors)} errors, {len(self.warnings)} warnings"
        )

    def to_text(self, max_lines: int | None = None) -> str:
        lines = [f"error: {e}" for e in self.errors] + [f"warning: {w}" for w in self.warnings]
        if max_lines is not None and len(lines) > max_lines:
            more = len(lines) - max_lines
            lines = lines[:max_lines] + [f"... and {more} more (run `glassgem data check` to list them all)"]
        return "\n".join(lines + [self.summary()])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class _PairResult:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    empty: bool = False
    non_binary: bool = False


# ------------------------------------------------------------------------------ per-file probes
def _open_checked(path: Path) -> Image.Image:
    img = Image.open(path)
    w, h = img.size
    limit = _max_pixels(MAX_PIXELS)
    if w * h > limit:
        raise DataError(
            f"{w}x{h} pixels exceeds the limit of {limit} (possible decompression bomb; if the "
            f"image is genuine, set {MAX_PIXELS_ENV}={w * h} in the environment)"
        )
    return img


def _image_size(path: Path) -> tuple[tuple[int, int], int]:
    """((width, height) as load_image would return it (EXIF rotation applied), the EXIF orientation), after a
    full read."""
    with _open_checked(path) as img:
        w, h = img.size
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
        if img.format == "JPEG":
            img.draft(img.mode, (max(1, w // 8), max(1, h // 8)))  # DCT scaling: fast, reads all data
        img.load()
    return ((h, w) if orientation in (5, 6, 7, 8) else (w, h)), orientation


def _mask_values(path: Path) -> tuple[tuple[int, int], np.ndarray, bool]:
    """(width, height), the distinct raw values (colour masks: max over channels), is-palette."""
    with _open_checked(path) as img:
        img.load()
        size, palette = img.size, img.mode == "P"
        if img.mode in ("L", "P"):  # PIL's histogram is ~4x faster than numpy on 8-bit masks
            return size, np.flatnonzero(img.histogram()), palette
        a = np.asarray(img)
    if a.ndim == 3:
        a = a[..., :3].max(axis=2) if a.shape[2] >= 3 else a[..., 0]
    if a.dtype == np.uint8:
        return size, np.flatnonzero(Image.fromarray(a).histogram()), palette
    return size, np.unique(a), palette


def _is_binary(values: np.ndarray, palette: bool) -> bool:
    if palette:  # load_mask reads index 0 as background and any other index as glass
        return len(values[values > 0]) <= 1
    v = set(values.astype(np.int64).tolist())
    return v <= {0, 1} or v <= {0, 255}


def _describe_values(values: np.ndarray) -> str:
    shown = ", ".join(str(v) for v in values[:8].tolist())
    return f"{shown}{', ...' if len(values) > 8 else ''} ({len(values)} distinct)"


def _check_pair(pair: Pair) -> _PairResult:
    res = _PairResult()
    if pair.mask_path is None:
        res.errors.append(f"{pair.image_path}: no mask for this image")
        return res
    img_size: tuple[int, int] | None = None
    orientation = 1
    try:
        img_size, orientation = _image_size(pair.image_path)
    except Exception as e:  # PIL raises many types for corrupt or truncated files
        res.errors.append(f"{pair.image_path}: cannot read image ({_reason(e)})")
    try:
        msk_size, values, palette = _mask_values(pair.mask_path)
    except Exception as e:
        res.errors.append(f"{pair.mask_path}: cannot read mask ({_reason(e)})")
        return res
    note = exif_note(orientation)
    if img_size is not None and img_size != msk_size:
        exif = f"; {note}" if note and img_size[::-1] == msk_size else ""
        res.errors.append(
            f"{pair.mask_path}: mask is {msk_size[0]}x{msk_size[1]} but image {pair.image_path.name} is "
            f"{img_size[0]}x{img_size[1]} (width x height){exif}"
        )
    elif note and img_size is not None and (orientation not in ROTATING or img_size[0] == img_size[1]):
        # the sizes agree either way (a square photo, a flip or half turn): only the labels can tell
        res.warnings.append(f"{pair.image_path}: {note} (check the mask lines up with the turned photo)")
    if not _is_binary(values, palette):
        res.non_binary = True
        res.warnings.append(
            f"{pair.mask_path}: non-binary mask values {_describe_values(values)}; read as glass where "
            "value > 0.5 after dividing by 255 if the max is above 127"
        )
    glass = values > 0 if palette else mask_to_binary(values).astype(bool)
    res.empty = not glass.any()
    return res


def _reason(e: Exception) -> str:
    msg = str(e)
    return f"{type(e).__name__}: {msg}" if not isinstance(e, DataError) else msg


# ------------------------------------------------------------------------------ folder level
def _check_manifest(path: Path, report: CheckReport) -> None:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                report.errors.append(f"{path}:{lineno}: not valid JSON ({e})")
                continue
            if not isinstance(record, dict):
                report.errors.append(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")


def _check_split(res: ResolvedSplit, report: CheckReport, progress: bool | None, workers: int) -> None:
    scan = scan_folders(res.images_dir, res.masks_dir)
    n_images, n_masks = scan.n_image_files, scan.n_mask_files
    report.n_images += n_images
    report.n_masks += n_masks
    report.n_pairs += len(scan.pairs)
    report.splits.append(
        {
            "split": res.split,
            "layout": res.layout,
            "images_dir": str(res.images_dir),
            "masks_dir": str(res.masks_dir),
            "n_pairs": len(scan.pairs),
        }
    )
    images_empty = n_images == 0
    masks_empty = n_masks == 0
    if images_empty:
        report.errors.append(f"{res.images_dir}: empty folder (no image files)")
    if masks_empty:
        report.errors.append(f"{res.masks_dir}: empty folder (no mask files)")
    for stem, files in scan.duplicates.items():
        names = ", ".join(f.name for f in files)
        report.errors.append(f"{files[0].parent}: stem {stem!r} names several files ({names})")
    if not masks_empty:  # with no masks at all, one "empty folder" line says it
        for path in scan.orphan_images:
            report.errors.append(f"{path}: image has no mask (no {path.stem}.* in {res.masks_dir})")
    if not images_empty:
        for path in scan.orphan_masks:
            report.errors.append(f"{path}: mask has no image (no {path.stem}.* in {res.images_dir})")
    if scan.ignored:
        names = ", ".join(p.name for p in scan.ignored[:_LIST_LIMIT])
        report.warnings.append(f"{len(scan.ignored)} files that are not images were ignored ({names})")

    show = progress if progress is not None else len(scan.pairs) >= _PROGRESS_MIN_PAIRS
    desc = f"checking {res.split or res.images_dir.name}"
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL decodes without holding the GIL
        results = pool.map(_check_pair, scan.pairs)
        checked = list(tqdm(results, total=len(scan.pairs), desc=desc, unit="pair", disable=not show, leave=False))
    empty = []
    for pair, r in zip(scan.pairs, checked):
        report.errors.extend(r.errors)
        report.warnings.extend(r.warnings)
        report.n_non_binary += r.non_binary
        if r.empty:
            empty.append(pair.stem)
    if empty:
        shown = ", ".join(empty[:_LIST_LIMIT]) + (", ..." if len(empty) > _LIST_LIMIT else "")
        report.warnings.append(f"{res.masks_dir}: {len(empty)} masks contain no glass ({shown})")
    report.n_empty += len(empty)
    report.empty_stems.extend(empty)

    manifest = res.images_dir.parent / MANIFEST_NAME
    if manifest.is_file():
        _check_manifest(manifest, report)


def check_dataset(
    root: str | os.PathLike | None = None,
    layout: str = "auto",
    split: str | None = None,
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
    strict: bool = False,
    progress: bool | None = None,
    workers: int | None = None,
) -> CheckReport:
    """Scan a dataset and report every problem. With no split on a dataset that has splits, all of
    them are checked. Raises DataError only when no image/mask folders can be found at all."""
    workers = workers or min(4, os.cpu_count() or 1)
    if images is None and split is None and root is not None and available_splits(root):
        try:
            targets = [resolve_split(root, layout, None)]
        except DataError:  # a root with splits: check each of them
            targets = [resolve_split(root, layout, s) for s in available_splits(root)]
    else:
        targets = [resolve_split(root, layout, split, images, masks)]
    report = CheckReport(
        root=str(root) if root is not None else None, layout=",".join(dict.fromkeys(t.layout for t in targets))
    )
    for target in targets:
        _check_split(target, report, progress, workers)
    if strict and report.warnings:
        report.errors.extend(f"(strict) {w}" for w in report.warnings)
        report.warnings = []
    return report


def require_valid(
    root: str | os.PathLike | None = None,
    layout: str = "auto",
    split: str | None = None,
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
    strict: bool = False,
    progress: bool | None = None,
) -> CheckReport:
    """check_dataset, raising DataError with the report's text if there is any error."""
    report = check_dataset(root, layout, split, images, masks, strict=strict, progress=progress)
    if not report.ok:
        first, rest = report.errors[0], len(report.errors) - 1
        more = (
            f" (and {rest} more error{'s' if rest > 1 else ''}: `glassgem data check` lists them all)" if rest else ""
        )
        raise DataError(f"dataset check failed: {first}{more}")
    return report
