"""Run logs: CSV files anyone can plot, plus TensorBoard scalars. Only the main process writes."""

from __future__ import annotations

import csv
import io as _io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_write_text

# Main (final-layer) terms worth a column; the other ~90 deep-supervision terms go to TensorBoard only.
MAIN_TERMS = ("loss_ce", "loss_mask", "loss_dice", "loss_bbox", "loss_giou", "loss_proposal")


class RunLogger:
    def __init__(self, out_dir: Path, enabled: bool = True, resume_step: int = 0) -> None:
        self.out, self.enabled = Path(out_dir), enabled
        self._tb = None
        if not enabled:
            return
        # A resumed run drops log rows from after its checkpoint, which the replay will write again.
        for name in ("log.csv", "val.csv"):
            _truncate_after(self.out / name, resume_step)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out / "tb"), purge_step=resume_step or None)
        except Exception:  # tensorboard missing or broken: CSV logs still work
            self._tb = None

    def log_train(
        self,
        step: int,
        loss: float,
        terms: Mapping[str, torch.Tensor],
        lr: float,
        grad_norm: float,
        images_per_s: float,
    ) -> None:
        if not self.enabled:
            return
        row = {"step": step, "loss": loss}
        row.update({k: float(terms[k].detach()) for k in MAIN_TERMS if k in terms})
        row.update({"lr": lr, "grad_norm": grad_norm, "images_per_s": images_per_s})
        _append(self.out / "log.csv", row)
        if self._tb is not None:
            for k, v in terms.items():
                self._tb.add_scalar(f"train/{k}", float(v.detach()), step)
            self._tb.add_scalar("train/lr", lr, step)
            self._tb.add_scalar("train/images_per_s", images_per_s, step)

    def log_val(self, step: int, metrics: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        _append(self.out / "val.csv", row)
        if self._tb is not None:
            for k in ("iou", "fbeta", "mae", "ber"):
                if k in metrics:
                    self._tb.add_scalar(f"val/{k}", float(metrics[k]), step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _append(path: Path, row: dict[str, Any]) -> None:
    # A header goes in whenever the file has none yet: missing, or left empty by a kill before its first row.
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _truncate_after(path: Path, step: int) -> None:
    """Drop the rows after `step`, by writing the kept rows to a new file and renaming it over the old one:
    a kill at any moment leaves either the old log or the new one, never an empty or half-written file.
    Rows whose step cannot be read (a line cut short by an earlier kill) are dropped too."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows, fields = list(reader), reader.fieldnames
    if not rows or not fields:
        return
    keep = [r for r in rows if (s := _step(r)) is not None and s <= step and None not in r.values()]
    if len(keep) == len(rows):
        return
    text = _io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(keep)
    atomic_write_text(path, text.getvalue())


def _step(row: dict[str, Any]) -> int | None:
    try:
        return int(row["step"])
    except (KeyError, TypeError, ValueError):
        return None
