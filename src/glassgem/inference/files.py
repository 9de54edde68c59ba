"""Input and output files of `glassgem predict`: which files the inputs name, what each output is
called (photos and videos), and writing one photo's mask, probability map and overlay.

Outputs per photo in --out: `<name>.png` (mask 0/255 at the photo's size), optionally `<name>_prob.png`
(glass probability x 255) and `<name>_overlay.jpg` (photo with the glass tinted). `<name>` is the file
stem (the path below the folder, for folders read with --recursive); photos that would share a name get
`_2`, `_3`, ... in input order, and each renaming is reported. A video `<name>` gets `<name>/` (a mask per
frame, frames.csv) and `<name>_overlay.mp4` (glassgem.inference.video).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError, GlassgemError
from ..io import IMAGE_EXTENSIONS, not_a_file, save_image, save_mask
from ..outputs import check_inside
from ..overlay import overlay_mask

if TYPE_CHECKING:
    from .predictor import Output

GLOB_CHARS = set("*?[")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
FRAMES_CSV = "frames.csv"


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def video_outputs(name: str, overlay: bool) -> list[str]:
    """Output names of a video below --out (for the name clash checks of assign_names)."""
    return [f"{name}/{FRAMES_CSV}"] + ([f"{name}_overlay.mp4"] if overlay else [])


@dataclass
class Photo:
    path: Path
    name: str  # output name below --out, no extension ("x" or "sub/x")

    @property
    def video(self) -> bool:  # a video file (glassgem.inference.video), not a photo
        return is_video(self.path)


# ------------------------------------------------------------------------------------------ inputs
def _is_input(path: Path) -> bool:  # a photo or a video
    return path.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS and not path.name.startswith(".")


def _folder_inputs(folder: Path, recursive: bool) -> list[Path]:
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and _is_input(p))
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if _is_input(Path(f))]
    return found


def _within(path: Path, folder: Path | None) -> bool:
    return folder is not None and (path == folder or folder in path.parents)


def collect_inputs(inputs: Sequence[str], recursive: bool = False, out: str | Path | None = None) -> list[Photo]:
    """Files, folders and glob patterns -> photos with their base output names, in order, each file once.

    Folders give their image files (sorted; subfolders too with `recursive`); globs are expanded here,
    so quoted patterns work, `**` included. Files under `out` are left out (earlier results). Raises
    GlassgemError naming the input for a path that does not exist or a folder/pattern without images.
    """
    out_dir = _resolve(Path(out), f"--out {out}") if out is not None else None
    photos: list[Photo] = []
    seen: set[Path] = set()

    def add(path: Path, name: str) -> None:
        key = _resolve(path, str(path))
        if key not in seen and not _within(key, out_dir):
            seen.add(key)
            photos.append(Photo(path, name))

    def add_folder(folder: Path, label: str) -> None:
        if _within(_resolve(folder, label), out_dir):
            raise DataError(
                f"--out {out}: the input folder {label} is inside it (or is it), so its photos would be "
                "taken for earlier results and the masks mixed with them; choose another --out"
            )
        images = _folder_inputs(folder, recursive)
        if not images:
            deep = "" if recursive else " (use --recursive for subfolders)"
            raise DataError(
                f"{label}: no image or video files ({', '.join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)}) "
                f"in this folder{deep}"
            )
        for p in images:
            add(p, p.relative_to(folder).with_suffix("").as_posix())

    if not inputs:
        raise GlassgemError("predict: no inputs given")
    for text in inputs:
        path = Path(text)
        if path.is_file():
            if _within(_resolve(path, text), out_dir):
                raise DataError(
                    f"{text}: this input is inside --out {out}, where its mask would be written over or "
                    "beside it; choose another --out"
                )
            add(path, path.stem)  # named explicitly: taken whatever its extension
        elif path.is_dir():
            add_folder(path, text)
        elif GLOB_CHARS & set(text):
            found = 0
            for m in (Path(m) for m in sorted(glob.glob(text, recursive=True))):
                images = (
                    [(p, p.relative_to(m).with_suffix("").as_posix()) for p in _folder_inputs(m, recursive)]
                    if m.is_dir()
                    else [(m, m.stem)]
                    if _is_input(m)
                    else []
                )
                found += len(images)
                for p, name in images:
                    add(p, name)
            if not found:
                raise DataError(f"{text}: the pattern matches no image or video files")
        elif path.exists() or path.is_symlink():
            raise DataError(f"{text}: {not_a_file(path)}")
        else:
            raise DataError(f"{text}: no such file or folder")
    if not photos:
        raise DataError(
            f"{', '.join(inputs)}: every input file is inside --out {out} (earlier results); nothing to predict"
        )
    return photos


def _resolve(path: Path, label: str) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop (Python < 3.13)
        raise DataError(f"{label}: cannot follow this path ({e})") from None


def _outputs(name: str, save_prob: bool, overlay: bool, video: bool = False) -> list[str]:
    if video:
        return video_outputs(name, overlay)
    return [f"{name}.png"] + ([f"{name}_prob.png"] if save_prob else []) + ([f"{name}_overlay.jpg"] if overlay else [])


def assign_names(
    photos: list[Photo], out: str | Path, save_prob: bool = False, overlay: bool = False
) -> tuple[list[Photo], list[str]]:
    """Give every photo output names no other photo uses (`_2`, `_3`, ... in input order; compared
    case-insensitively, as on macOS and Windows disks). -> (photos, notes about renamings).

    Raises GlassgemError when an output would overwrite one of the input photos or be written outside `out`
    (through a symbolic link to a folder elsewhere)."""
    taken: set[str] = set()
    renamed: list[str] = []
    result = []
    for photo in photos:
        name, k = photo.name, 1
        while any(f.casefold() in taken for f in _outputs(name, save_prob, overlay, photo.video)):
            k += 1
            name = f"{photo.name}_{k}"
        taken.update(f.casefold() for f in _outputs(name, save_prob, overlay, photo.video))
        if name != photo.name:
            renamed.append(f"{photo.path} -> {name}{'/' if photo.video else '.png'}")
        result.append(Photo(photo.path, name))
    inputs = {p.path.resolve() for p in photos}
    out = Path(out)
    for photo in result:
        for f in _outputs(photo.name, save_prob, overlay, photo.video):
            target = check_inside(out / f, out, "--out")  # no symbolic link inside --out leads out of it
            if target in inputs or (out / f).resolve() in inputs:
                raise GlassgemError(
                    f"--out {out}: writing {f} would overwrite the input {out / f}; choose another output folder"
                )
    notes = []
    if renamed:
        shown = "; ".join(renamed[:5]) + ("; ..." if len(renamed) > 5 else "")
        notes.append(f"note: {len(renamed)} photo(s) share a name with an earlier one and were renamed: {shown}")
    return result, notes


def outputs_done(out: Path, name: str, save_prob: bool, overlay: bool) -> bool:
    """Every output of photo `name` is in `out` and decodes (an earlier run wrote it: `predict --resume`)."""
    from PIL import Image

    for f in _outputs(name, save_prob, overlay):
        try:
            with Image.open(out / f) as img:
                img.load()
        except Exception:  # missing, truncated, not an image: score the photo again
            return False
    return True


def write_outputs(out: Path, name: str, rgb: np.ndarray, output: Output, overlay: bool) -> np.ndarray:
    """One photo's Output (glassgem.Predictor) -> `name.png` (mask 0/255), `name_prob.png` when it holds the
    probability, `name_overlay.jpg` with `overlay`, in `out`; -> the mask."""
    save_mask(out / f"{name}.png", output.mask)
    if output.probability is not None:
        save_image(out / f"{name}_prob.png", (output.probability * 255.0 + 0.5).astype(np.uint8))
    if overlay:
        save_image(out / f"{name}_overlay.jpg", overlay_mask(rgb, output.mask), quality=90)
    return output.mask


__all__ = [
    "FRAMES_CSV",
    "GLOB_CHARS",
    "IMAGE_EXTENSIONS",
    "Photo",
    "VIDEO_EXTENSIONS",
    "assign_names",
    "collect_inputs",
    "is_video",
    "outputs_done",
    "video_outputs",
    "write_outputs",
]
