"""A training folder mixed from labelled sets, each listed a chosen number of times.

`build_mix` (`glassgem data mix`) takes labelled sets (any layout `find_pairs` reads: gdd-dev/train,
low-glass crops, glass-free crops, the glass-free corpus, a real-scene split) with a repeat count each and
writes OUT/images + OUT/masks as links to the original files (symbolic links, or copies with
`copy=True`), so a training run samples each set in proportion to its files times its count without a
second copy of the photos. Every entry is named `<tag>__<stem>` (with `_r<k>` for the k-th listing of a
set listed several times), the tag being the set's position and folder name, so stems of different sets
never collide. OUT/mix.json records the sets, their counts and the number of files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..io import atomic_write_text
from .layouts import find_pairs
from .negatives import refuse_filled_output

RECORD = "mix.json"


@dataclass(frozen=True)
class Part:
    """One labelled set of a mix: its folder (any layout), an optional split, and how often it is listed."""

    folder: Path
    times: int = 1
    split: str | None = None


def parse_part(text: str) -> Part:
    """`DIR`, `DIR:K` (listed K times) or `DIR:K:SPLIT`; ConfigError naming the text when it is malformed."""
    folder, _, rest = text.partition(":")
    times_text, _, split = rest.partition(":")
    if not folder:
        raise ConfigError(f"data mix {text!r}: give DIR, DIR:K or DIR:K:SPLIT")
    try:
        times = int(times_text) if times_text else 1
    except ValueError:
        raise ConfigError(f"data mix {text!r}: K must be a whole number of listings, got {times_text!r}") from None
    if times < 1:
        raise ConfigError(f"data mix {text!r}: K must be at least 1, got {times}")
    return Part(Path(folder), times, split or None)


def _tag(index: int, folder: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9.-]+", "-", folder.resolve().name).strip("-") or "set"
    return f"m{index}-{name}"


def _place(source: Path, target: Path, copy: bool) -> None:
    if copy:
        shutil.copyfile(source, target)
    else:
        os.symlink(source.resolve(), target)


def build_mix(parts: Sequence[Part], out_dir: str | os.PathLike, copy: bool = False) -> dict:
    """Write the mix of `parts` to `out_dir` (new, or with empty images/ and masks/); return its record.

    Every set is read (DataError naming the folder: no images, images without masks ...) before anything
    is written."""
    if not parts:
        raise ConfigError("data mix: give at least one labelled set")
    out = refuse_filled_output(out_dir)
    listed = [(part, find_pairs(part.folder, split=part.split)) for part in parts]  # DataError before writing
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    record: dict = {"copy": copy, "sets": [], "files": 0}
    for index, (part, pairs) in enumerate(listed):
        tag = _tag(index, part.folder)
        for pair in pairs:
            mask = pair.labelled_mask()
            for k in range(part.times):
                stem = f"{tag}__{pair.stem}" + (f"_r{k}" if part.times > 1 else "")
                _place(pair.image_path, out / "images" / f"{stem}{pair.image_path.suffix.lower()}", copy)
                _place(mask, out / "masks" / f"{stem}{mask.suffix.lower()}", copy)
        n = len(pairs) * part.times
        record["sets"].append(
            {"folder": str(part.folder), "split": part.split, "times": part.times, "pairs": len(pairs), "files": n}
        )
        record["files"] += n
    atomic_write_text(out / RECORD, json.dumps(record, indent=2) + "\n")
    return record
