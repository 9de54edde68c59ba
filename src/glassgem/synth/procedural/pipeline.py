"""Offline procedural glass scenes with exact masks: `glassgem synth procedural`.

Glass walls, windows, doors and partitions are composited onto photos with physically motivated effects
(glass_effects) in layouts that tile exactly (glass_geometry, glass_scene). Scene i depends only on
(seed, i) through np.random.default_rng([seed, i]), so any number of workers, or a restart, writes the
same bytes. Output, the `sgsd` layout glassgem's datasets read:
    OUT/images/<id>.jpg   OUT/masks/<id>.png (0/255)   OUT/manifest.jsonl (one JSON record per scene)
plus OUT/meta/<id>.json (the per-scene records the manifest is rebuilt from) and OUT/synth_config.json.
`glass_free=p`: a fraction p of the scenes are plain glass-free photos (glass_free.py).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from ...errors import ConfigError, DataError
from ...io import atomic_write_text, load_image, load_mask, save_image, save_mask
from .backgrounds import Backgrounds, default_backgrounds, folder_backgrounds
from .glass_free import glass_free_scene, is_glass_free
from .render import DEFAULT_SIZE, camera_effects, generate_scene

GENERATOR_VERSION = 2  # 2: glass walls mostly floor to ceiling, windows mostly look out on daylight
CONFIG_NAME = "synth_config.json"
MANIFEST_NAME = "manifest.jsonl"


def scene_id(i: int) -> str:
    return f"proc_{i:06d}"


class _Writer:
    """Everything a worker needs to make and write scene i (sent once per worker process)."""

    def __init__(
        self, out: Path, seed: int, size: tuple[int, int], image_format: str, bgs: Backgrounds, glass_free: float = 0.0
    ):
        self.out, self.seed, self.size, self.image_format, self.bgs = out, seed, size, image_format, bgs
        self.glass_free = glass_free

    def paths(self, i: int) -> tuple[Path, Path, Path]:
        sid = scene_id(i)
        return (
            self.out / "images" / f"{sid}.{self.image_format}",
            self.out / "masks" / f"{sid}.png",
            self.out / "meta" / f"{sid}.json",
        )

    def done(self, i: int) -> bool:
        return all(p.is_file() for p in self.paths(i))

    def __call__(self, i: int) -> int:
        make = partial(glass_free_scene, camera=camera_effects) if is_glass_free(i, self.glass_free) else generate_scene
        image, mask, meta = make(np.random.default_rng([self.seed, i]), self.bgs, self.size)
        img_path, mask_path, meta_path = self.paths(i)
        save_image(img_path, image, **({"quality": 92} if self.image_format == "jpg" else {}))
        save_mask(mask_path, mask)
        record = {
            "id": scene_id(i),
            "index": i,
            "seed": self.seed,
            "image": f"images/{img_path.name}",
            "mask": f"masks/{mask_path.name}",
            **meta,
        }
        # The record goes last: its presence says the scene is complete (every write is atomic).
        atomic_write_text(meta_path, json.dumps(record, separators=(",", ":")) + "\n")
        return i


_WORKER: _Writer | None = None


def _init_worker(writer: _Writer) -> None:
    global _WORKER
    _WORKER = writer


def _work(i: int) -> int:
    assert _WORKER is not None, "_init_worker runs first in each worker process"
    return _WORKER(i)


def _check_config(out: Path, config: dict, n: int) -> None:
    """A folder is resumed or extended only by the same recipe, never shrunk: else two sets mix silently."""
    path = out / CONFIG_NAME
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: unreadable synthesis config ({e}); remove it or use another --out") from None
        diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        if diff:
            raise ConfigError(
                f"{path}: {out} was generated with different settings ({', '.join(diff)}); "
                "use another --out folder or the original settings"
            )
        held = [int(s[5:]) + 1 for s in (p.stem for p in (out / "meta").glob("proc_*.json")) if s[5:].isdigit()]
        if max(held, default=0) > n:
            raise ConfigError(
                f"--n {n}: {out} holds {max(held)} scenes; fewer leave the rest outside the manifest "
                f"but read by training; use --n {max(held)} or more, or another --out"
            )
        return
    images = out / "images"
    if images.is_dir() and any(images.iterdir()):
        raise DataError(
            f"{out}: has images/ but no {CONFIG_NAME}; not a procedural synthesis folder (choose an empty --out folder)"
        )
    atomic_write_text(path, json.dumps(config, indent=1) + "\n")


def write_manifest(out: str | os.PathLike, n: int) -> Path:
    """Rebuild OUT/manifest.jsonl from the per-scene records 0..n-1, atomically."""
    out = Path(out)
    lines = []
    for i in range(n):
        path = out / "meta" / f"{scene_id(i)}.json"
        if not path.is_file():
            raise DataError(f"{path}: scene record missing; run the same command again to finish the set")
        lines.append(path.read_text().strip())
    return atomic_write_text(out / MANIFEST_NAME, "\n".join(lines) + ("\n" if lines else ""))


def synthesize(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    backgrounds: str | os.PathLike | Backgrounds | None = None,
    workers: int = 1,
    size: tuple[int, int] = DEFAULT_SIZE,
    image_format: str = "jpg",
    progress: bool = True,
    glass_free: float = 0.0,
) -> dict:
    """Write scenes 0..n-1 (a `glass_free` fraction of them plain photos) to out_dir (resumable: finished
    scenes are skipped); return a summary."""
    if n < 0 or workers < 1:
        raise ConfigError(f"need n >= 0 and workers >= 1 (got n={n}, workers={workers})")
    if not 0.0 <= (glass_free := float(glass_free)) <= 1.0:
        raise ConfigError(f"glass_free is a fraction of the scenes, 0 to 1 (got {glass_free:g})")
    w, h = (int(v) for v in size)
    if w < 32 or h < 32:
        raise ConfigError(f"size {w}x{h}: width and height must be at least 32 pixels")
    if image_format not in ("jpg", "png"):
        raise ConfigError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    bgs = (
        backgrounds
        if isinstance(backgrounds, Backgrounds)
        else (default_backgrounds() if backgrounds is None else folder_backgrounds(backgrounds))
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "generator": "glassgem.synth.procedural",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "size": [w, h],
        "image_format": image_format,
        "backgrounds": {"source": bgs.source, "names": bgs.names},
    }
    config.update({"glass_free": glass_free} if glass_free > 0 else {})  # absent at 0: old folders resume
    _check_config(out, config, n)

    writer = _Writer(out, int(seed), (w, h), image_format, bgs, glass_free)
    todo = [i for i in range(n) if not writer.done(i)]
    start = time.perf_counter()
    bar = tqdm(
        total=n, initial=n - len(todo), unit="scene", desc="synth procedural", disable=not progress, dynamic_ncols=True
    )
    if workers == 1 or len(todo) <= 1:
        for i in todo:
            writer(i)
            bar.update()
    else:
        with multiprocessing.get_context().Pool(min(workers, len(todo)), _init_worker, (writer,)) as pool:
            for _ in pool.imap_unordered(_work, todo, chunksize=2):
                bar.update()
    bar.close()
    elapsed = time.perf_counter() - start
    write_manifest(out, n)

    records = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    return {
        "out": str(out),
        "n": n,
        "generated": len(todo),
        "skipped": n - len(todo),
        "no_glass": sum(r["no_glass"] for r in records),
        "glass_free_photos": sum(r["mode"] == "glass_free_photo" for r in records),
        "mean_glass_fraction": float(np.mean([r["glass_fraction"] for r in records])) if records else 0.0,
        "seconds": elapsed,
        "scenes_per_second": len(todo) / elapsed if todo and elapsed > 0 else 0.0,
    }


# --------------------------------------------------------------------------------- contact sheet
def contact_sheet(
    out_dir: str | os.PathLike,
    path: str | os.PathLike,
    n: int = 16,
    tile: tuple[int, int] = (256, 192),
    pairs_per_row: int = 4,
    quality: int = 85,
) -> Path:
    """Save an image of n scenes spread over the set, each as `image | mask overlay` side by side."""
    out = Path(out_dir)
    manifest = out / MANIFEST_NAME
    if not manifest.is_file():
        raise DataError(f"{manifest}: not found (run `glassgem synth procedural` first)")
    records = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    if not records:
        raise DataError(f"{manifest}: no scenes")
    picks = np.unique(np.linspace(0, len(records) - 1, min(n, len(records))).round().astype(int))
    tw, th = tile
    gap = 4
    cells = []
    for k in picks:
        rec = records[k]
        img = np.asarray(Image.fromarray(load_image(out / rec["image"])).resize(tile, Image.Resampling.BILINEAR))
        glass = (
            np.asarray(Image.fromarray(load_mask(out / rec["mask"]) * 255).resize(tile, Image.Resampling.NEAREST)) > 0
        )
        over = img.astype(np.float32)
        over[glass] = over[glass] * 0.45 + np.array([0, 190, 255], np.float32) * 0.55
        over[glass ^ ndimage.binary_erosion(glass)] = (255, 230, 0)  # the mask outline
        cells.append(np.concatenate([img, np.full((th, gap, 3), 255, np.uint8), over.astype(np.uint8)], axis=1))
    blank = np.full_like(cells[0], 255)
    cells += [blank] * (-len(cells) % pairs_per_row)
    rows = []
    for r in range(0, len(cells), pairs_per_row):
        row = []
        for c in cells[r : r + pairs_per_row]:
            row += [c, np.full((th, 3 * gap, 3), 255, np.uint8)]
        rows += [
            np.concatenate(row[:-1], axis=1),
            np.full((3 * gap, row[0].shape[1] * pairs_per_row + 3 * gap * (pairs_per_row - 1), 3), 255, np.uint8),
        ]
    sheet = np.concatenate(rows[:-1], axis=0)
    kwargs = {"quality": quality} if Path(path).suffix.lower() in (".jpg", ".jpeg") else {}
    return save_image(path, sheet, **kwargs)
