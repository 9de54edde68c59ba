"""Per-image evaluation reports: which photos a model gets wrong, as a table and as a picture.

`glassgem evaluate ... --report DIR` and `glassgem evaluate-masks ... --report DIR` write:
- `per_image.csv`: one row per image in evaluation order: name, IoU, MAE, BER (%), the fraction of the
  image that is glass in the ground truth and the fraction predicted as glass;
- `worst.jpg`: the `worst` lowest-IoU images, worst first (equal IoUs, e.g. the zeros of glass-free photos
  with false glass: larger MAE first), each with its errors coloured
  (`glassgem.overlay.error_overlay`: green = glass found, red = false glass, blue = missed glass);
- `per_image_fbeta.npz`: every image's precision and recall at the 256 thresholds k/255 (`names`,
  `precision` and `recall` [N, 256] float64): max F-beta is computed from their means over images, so
  `glassgem compare` needs them to resample F-beta;
- `metrics.json`: the dataset-level numbers (the same as `--json`).

Memory: only the `worst` lowest-IoU images keep what is needed to draw them (a callable that makes the
picture when the sheet is written); the others keep their numbers and two 256-value curves (4 KB).
"""

from __future__ import annotations

import csv
import heapq
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write_bytes, atomic_write_text, save_image
from ..overlay import grid, titled
from .metrics import ImageScore, write_json

Picture = Callable[[], np.ndarray]  # makes one error picture (uint8 [H,W,3]) on demand

CSV_COLUMNS = ("name", "iou", "mae", "ber", "glass_fraction", "predicted_fraction")
CSV_FILE = "per_image.csv"
CURVES_FILE = "per_image_fbeta.npz"
SHEET_COLS = 4
SHEET_CELL = (216, 288)  # h, w of one picture on the sheet


CLEAN_BELOW = 0.01  # a glass-free photo is "clean" when under 1% of its pixels are predicted as glass


def false_glass_summary(fractions) -> dict[str, Any]:
    """False glass on glass-free photos from each photo's predicted-glass fraction: `false_glass` (the mean
    fraction), `clean` (photos under CLEAN_BELOW) and `n`. The one definition that `glassgem experiment`,
    the demo and benchmarks/glass_free_check.py report."""
    fractions = [float(f) for f in fractions]
    return {
        "false_glass": float(np.mean(fractions)) if fractions else float("nan"),
        "clean": int(sum(f < CLEAN_BELOW for f in fractions)),
        "n": len(fractions),
    }


def _sort_iou(iou: float) -> float:
    """A legacy NaN IoU (no glass, none predicted) is a perfect image, not a bad one."""
    return 1.0 if math.isnan(iou) else iou


class PerImageReport:
    """Collects `ImageScore`s (in order) and the `worst` lowest-IoU images' pictures; `write(dir)`."""

    def __init__(self, worst: int = 12) -> None:
        if worst < 0:
            raise ValueError(f"worst must be >= 0, got {worst}")
        self.worst = int(worst)
        self.rows: list[tuple[str, ImageScore]] = []
        # Worse = lower IoU, then more error (MAE: e.g. more false glass on a glass-free photo), then
        # earlier. Kept as a min-heap on (-iou, mae, -index), so the root is the best of the kept worst;
        # the index is unique, so comparisons never reach the name, score or picture.
        self._heap: list[tuple[float, float, int, str, ImageScore, Picture]] = []

    def add(self, name: str, score: ImageScore, picture: Picture | None = None) -> None:
        index = len(self.rows)
        self.rows.append((name, score))
        if self.worst == 0 or picture is None:
            return
        item = (-_sort_iou(score.iou), score.mae, -index, name, score, picture)
        if len(self._heap) < self.worst:
            heapq.heappush(self._heap, item)
        elif item[:3] > self._heap[0][:3]:
            heapq.heapreplace(self._heap, item)

    def false_glass(self) -> dict[str, Any]:
        """`false_glass_summary` of the images so far (read as glass-free photos)."""
        return false_glass_summary(s.predicted for _, s in self.rows)

    def worst_images(self) -> list[tuple[str, ImageScore, Picture]]:
        """The kept lowest-IoU images, worst first (equal IoUs: larger MAE first, then evaluation order)."""
        kept = sorted(self._heap, key=lambda it: (-it[0], -it[1], -it[2]))
        return [(name, score, picture) for _, _, _, name, score, picture in kept]

    def csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for name, s in self.rows:
            w.writerow(
                [name] + [("nan" if math.isnan(v) else f"{v:.6f}") for v in (s.iou, s.mae, s.ber, s.glass, s.predicted)]
            )
        return buf.getvalue()

    def curves(self) -> bytes | None:
        """The per-image precision/recall curves as .npz bytes (None unless every image has them)."""
        precision = [s.precision for _, s in self.rows if s.precision is not None]
        recall = [s.recall for _, s in self.rows if s.recall is not None]
        if not self.rows or len(precision) < len(self.rows) or len(recall) < len(self.rows):
            return None
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            names=np.array([name for name, _ in self.rows]),
            precision=np.stack(precision).astype(np.float64),
            recall=np.stack(recall).astype(np.float64),
        )
        return buf.getvalue()

    def sheet(self) -> np.ndarray | None:
        """The worst images' error pictures on one contact sheet (None when there are none)."""
        worst = self.worst_images()
        if not worst:
            return None
        cells = [picture() for _, _, picture in worst]
        labels = [f"{name}  IoU {s.iou:.3f}  MAE {s.mae:.3f}" for name, s, _ in worst]
        body = grid(cells, cols=SHEET_COLS, cell=SHEET_CELL, labels=labels)
        return titled(
            body,
            f"{len(worst)} lowest-IoU of {len(self.rows)} images, worst first.  "
            "green: glass found   red: false glass   blue: missed glass",
        )

    def write(self, out_dir: str | Path, results: dict[str, Any]) -> list[Path]:
        """Write per_image.csv, per_image_fbeta.npz, worst.jpg (if any picture was kept) and metrics.json
        into out_dir."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = [atomic_write_text(out / CSV_FILE, self.csv_text())]
        curves = self.curves()
        if curves is not None:
            written.append(atomic_write_bytes(out / CURVES_FILE, curves))
        sheet = self.sheet()
        if sheet is not None:
            written.append(save_image(out / "worst.jpg", sheet, quality=90))
        write_json(out / "metrics.json", results)
        written.append(out / "metrics.json")
        return written
