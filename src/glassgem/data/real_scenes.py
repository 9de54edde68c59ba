"""The real-scene sets: hand-drawn glass polygons for public photos, rebuilt from pinned sources.

glassgem ships labels, never photos. `assets/real_scenes/manifest.csv` lists every photo with the
repository and commit it comes from, its path there, its licence and its split (`train`, `train2`, `train3`,
`train4` or `dev`, split by source so that no dev source is in a training split; `train2` to `train4` add photos to
train, of its sources and of others, each a split of its own so that a model trained on the earlier
training splits alone can be reproduced),
and `assets/real_scenes/labels/<source>/<stem>.json` holds its polygons (data/polygons.py; conventions:
docs/labelling.md). `rebuild` (`glassgem data real-scenes`) reads each photo from a git repository at the
pinned commit and writes

    OUT/<split>/images/<source>__<stem>.<ext>   the photo's bytes as stored in the repository
    OUT/<split>/masks/<source>__<stem>.png      its mask (0/255) from the polygons

so `glassgem evaluate --data OUT/dev` and training read it like any dataset. Repositories are found in
a local folder (`--from DIR`: DIR/owner+name, DIR/owner+name/repo, DIR/owner/name or DIR/name, a clone
or a bare repository) or cloned from a URL prefix (`--from https://github.com`: PREFIX/owner/name,
into OUT/.sources/). Photos already written are not read again, so an interrupted run resumes;
masks are always redrawn from the current labels, and photos (`<source>__<stem>.*`) that the manifest no
longer lists are removed from the rebuilt splits.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write_bytes, atomic_write_text, load_image, save_image, save_mask
from .polygons import label_mask

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "real_scenes"
MANIFEST = ASSETS / "manifest.csv"
LABELS = ASSETS / "labels"
COLUMNS = ("source", "stem", "split", "repo", "commit", "path", "licence")
SPLITS = ("train", "train2", "train3", "train4", "dev")
TRAINING_SPLITS = ("train", "train2", "train3", "train4")  # may share sources with each other, never with dev
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # one plain path component
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Entry:
    source: str
    stem: str
    split: str
    repo: str  # owner/name
    commit: str
    path: str  # inside the repository
    licence: str

    @property
    def name(self) -> str:
        return f"{self.source}__{self.stem}"


def read_manifest(path: str | os.PathLike = MANIFEST) -> list[Entry]:
    """The manifest's rows, validated (one-line DataError naming the file and row otherwise)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read manifest ({type(e).__name__}: {e})") from None
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or set(COLUMNS) - set(rows[0]):
        raise DataError(f"{path}: a manifest needs the columns {', '.join(COLUMNS)}")
    out: list[Entry] = []
    seen: set[str] = set()
    for i, row in enumerate(rows, start=2):
        entry = Entry(**{k: (row[k] or "").strip() for k in COLUMNS})
        where = f"{path} line {i}"
        if not (_NAME.match(entry.source) and _NAME.match(entry.stem)):
            raise DataError(f"{where}: source and stem must be plain names, got {entry.source!r}, {entry.stem!r}")
        if entry.split not in SPLITS:
            raise DataError(f"{where}: split must be one of {', '.join(SPLITS)}, got {entry.split!r}")
        if (
            not _REPO.match(entry.repo)
            or not _COMMIT.match(entry.commit)
            or not entry.path
            or entry.path.startswith("/")
        ):
            raise DataError(f"{where}: repo must be owner/name, commit 40 hex digits and path relative")
        if entry.name in seen:
            raise DataError(f"{where}: {entry.source}/{entry.stem} is listed twice")
        seen.add(entry.name)
        out.append(entry)
    sides: dict[str, str] = {}
    for entry in out:
        side = "train" if entry.split in TRAINING_SPLITS else entry.split
        if sides.setdefault(entry.source, side) != side:
            raise DataError(
                f"{path}: source {entry.source} is in both splits, dev and training (the split is by source)"
            )
    return out


def _git(args: list[str], cwd: Path | None = None) -> bytes:
    try:
        return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True).stdout
    except FileNotFoundError:
        raise DataError("git is needed to read the photos' repositories; install git") from None
    except subprocess.CalledProcessError as e:
        msg = e.stderr.decode(errors="replace").strip().splitlines()
        raise DataError(f"git {' '.join(args[:3])}: {msg[-1] if msg else 'failed'}") from None


def _git_dir(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--absolute-git-dir"], check=True, capture_output=True, text=True
        ).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    return Path(out)


class Sources:
    """Finds (or clones) the git directory of each repository named in the manifest."""

    def __init__(self, origin: str, clone_dir: Path) -> None:
        self.origin, self.clone_dir = origin, clone_dir
        self.local = Path(origin) if Path(origin).is_dir() else None
        if self.local is None and "://" not in origin and not origin.startswith("git@"):
            raise DataError(f"--from {origin}: no such folder (give a folder of repositories or a URL prefix)")
        self._dirs: dict[str, Path] = {}

    def git_dir(self, repo: str) -> Path:
        if repo in self._dirs:
            return self._dirs[repo]
        owner, name = repo.split("/")
        if self.local is not None:
            for cand in (f"{owner}+{name}/repo", f"{owner}+{name}", f"{owner}/{name}", name):
                found = _git_dir(self.local / cand)
                if found is not None:
                    self._dirs[repo] = found
                    return found
            raise DataError(
                f"--from {self.local}: no git repository for {repo} (looked for {owner}+{name}, "
                f"{owner}+{name}/repo, {owner}/{name} and {name})"
            )
        target = self.clone_dir / f"{owner}+{name}.git"
        if _git_dir(target) is None:
            url = f"{self.origin.rstrip('/')}/{owner}/{name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            _git(["clone", "--quiet", "--bare", "--filter=blob:none", url, str(target)])
        self._dirs[repo] = target
        return target

    def read(self, e: Entry) -> bytes:
        git_dir = self.git_dir(e.repo)
        try:
            return _git(["--git-dir", str(git_dir), "cat-file", "blob", f"{e.commit}:{e.path}"])
        except DataError:
            if self.local is not None:
                raise DataError(f"{e.repo}: no {e.path} at commit {e.commit[:12]} in {git_dir}") from None
            _git(["--git-dir", str(git_dir), "fetch", "--quiet", "origin", e.commit])
            return _git(["--git-dir", str(git_dir), "cat-file", "blob", f"{e.commit}:{e.path}"])


def label_path(e: Entry, labels: str | os.PathLike = LABELS) -> Path:
    return Path(labels) / e.source / f"{e.stem}.json"


def rebuild(
    origin: str,
    out_dir: str | os.PathLike,
    splits: Iterable[str] = SPLITS,
    manifest: str | os.PathLike = MANIFEST,
    labels: str | os.PathLike = LABELS,
    progress: bool = True,
) -> dict[str, int]:
    """Write the photos and masks of `splits` under OUT (module docstring); returns {split: photos}."""
    from tqdm.auto import tqdm

    listed = read_manifest(manifest)
    entries = [e for e in listed if e.split in set(splits)]
    if not entries:
        raise DataError(f"{manifest}: no photo in split(s) {', '.join(splits)}")
    out = Path(out_dir)
    sources = Sources(origin, out / ".sources")
    counts = {s: 0 for s in splits}
    for e in tqdm(entries, desc="real scenes", unit="photo", disable=not progress):
        ext = Path(e.path).suffix.lower() or ".jpg"
        image_file = out / e.split / "images" / f"{e.name}{ext}"
        mask_file = out / e.split / "masks" / f"{e.name}.png"
        counts[e.split] += 1
        if not image_file.is_file():  # else written by an earlier run (atomically): not read again
            atomic_write_bytes(image_file, sources.read(e))
        h, w = load_image(image_file).shape[:2]  # the mask is always redrawn: labels may have changed
        save_mask(mask_file, label_mask(label_path(e, labels), (w, h)))
    atomic_write_text(out / "manifest.csv", Path(manifest).read_text(encoding="utf-8"))
    names = {e.name for e in listed}
    for split in splits:  # photos an earlier manifest listed and this one does not: not part of the set now
        for folder in (out / split / "images", out / split / "masks"):
            for f in sorted(folder.glob("*__*")) if folder.is_dir() else []:
                if f.is_file() and f.stem not in names:
                    f.unlink()
    refuse_dev_copies(out, names)
    return counts


COPY_DISTANCE = 12.0  # mean abs difference of 32x32 grey thumbnails (0-255) under which two photos are one


def _thumbnail(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L").resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float32)


def refuse_dev_copies(out_dir: str | os.PathLike, listed: set[str]) -> None:
    """DataError when a photo of OUT/dev is (nearly) the same picture as one of a training split under OUT:
    the same photo is often published in several repositories, so a split by source does not keep it out of
    training. Checks the photos named in `listed` (`<source>__<stem>`) of whatever splits OUT holds (nothing
    when it lacks dev or every training split)."""
    out = Path(out_dir)

    def photos(split: str) -> list[Path]:
        folder = out / split / "images"
        return [p for p in sorted(folder.glob("*")) if p.stem in listed] if folder.is_dir() else []

    dev = photos("dev")
    train = [p for s in TRAINING_SPLITS for p in photos(s)]
    if not dev or not train:
        return
    t = np.stack([_thumbnail(p) for p in train]).reshape(len(train), -1)
    for photo in dev:
        d = np.abs(t - _thumbnail(photo).reshape(1, -1)).mean(axis=1)
        i = int(d.argmin())
        if d[i] < COPY_DISTANCE:
            raise DataError(
                f"{photo} is the same picture as {train[i]} (thumbnail distance {d[i]:.1f}): a dev photo must not "
                "be a training photo; drop one of them from the manifest"
            )


def contact_sheet(split_dir: str | os.PathLike, cols: int = 6) -> np.ndarray:
    """Every photo of a rebuilt split with its glass tinted, labelled with its name and glass share."""
    from ..io import load_mask
    from ..overlay import grid, overlay_mask
    from .layouts import find_pairs

    pictures, names = [], []
    for pair in find_pairs(split_dir):
        mask = load_mask(pair.labelled_mask())
        image = load_image(pair.image_path)
        pictures.append(overlay_mask(image, mask))
        names.append(f"{pair.stem[:34]}  {(mask > 0).mean():.0%}")
    return grid(pictures, cols=cols, cell=(180, 240), labels=names)


def write_sheet(split_dir: str | os.PathLike) -> Path:
    return save_image(Path(split_dir) / "sheet.jpg", contact_sheet(split_dir), quality=85)
