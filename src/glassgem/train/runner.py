"""What `glassgem train` and `glassgem evaluate` do between parsing and the loop: resolve the
datasets, validate them (bad data fails in seconds, not hours), and refuse test-split selection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TrainConfig
from ..data.checks import require_valid
from ..data.layouts import available_splits, find_pairs
from ..errors import ConfigError
from .engine import RunData, Trainer

TRAIN_SPLITS = ("train", "training")
VAL_SPLITS = ("val", "validation")
TEST_SPLITS = ("test", "testing")


@dataclass
class DataSpec:
    """A dataset on disk: a root (with an optional split) or explicit images/masks folders."""

    root: str | None = None
    split: str | None = None
    layout: str = "auto"
    images: str | None = None
    masks: str | None = None

    def describe(self) -> str:
        if self.images:
            return f"{self.images} + {self.masks}"
        return f"{self.root}" + (f" (split {self.split})" if self.split else "")


def default_split(root: str | None, wanted: tuple[str, ...]) -> str | None:
    """The first of `wanted` that `root` has; None for a split-less folder (images/ + masks/)."""
    if root is None:
        return None
    found = available_splits(root)
    return next((s for s in wanted if s in found), None)


def load_pairs(spec: DataSpec, progress: bool = True) -> list:
    """Validate the whole dataset (every problem at once), then list its pairs. The check's warnings (e.g.
    non-binary mask values and how they are read) go to stderr, as `glassgem data check` shows them."""
    report = require_valid(spec.root, spec.layout, spec.split, spec.images, spec.masks, progress=progress)
    if report.warnings:
        import sys

        shown = report.warnings[:5]
        more = len(report.warnings) - len(shown)
        for w in shown:
            print(f"warning: {w}", file=sys.stderr)
        if more:
            print(
                f"warning: ... and {more} more (`glassgem data check {spec.root or spec.images}` lists them all)",
                file=sys.stderr,
            )
    return find_pairs(spec.root, spec.layout, spec.split, spec.images, spec.masks)


def holdout(pairs: list, fraction: float, seed: int) -> tuple[list, list]:
    """A deterministic validation hold-out of `fraction` of the training pairs."""
    if not 0 < fraction < 1:
        raise ConfigError(f"--val-fraction must be between 0 and 1, got {fraction}")
    order = np.random.default_rng([seed, 7]).permutation(len(pairs))
    n_val = max(1, int(round(fraction * len(pairs))))
    val_idx = set(order[:n_val].tolist())
    return ([p for i, p in enumerate(pairs) if i not in val_idx], [p for i, p in enumerate(pairs) if i in val_idx])


def run_training(
    cfg: TrainConfig,
    train: DataSpec,
    out: str | Path,
    val: DataSpec | None = None,
    val_fraction: float = 0.0,
    resume: bool = False,
    allow_test_selection: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict[str, Any]:

    if train.split is None and not train.images:
        train.split = default_split(train.root, TRAIN_SPLITS)
    if val is not None and val.split is None and not val.images:
        val.split = default_split(val.root, VAL_SPLITS)
        if val.split is None and default_split(val.root, TEST_SPLITS):
            raise ConfigError(
                f"{val.root} has a test split but no validation split. Selecting checkpoints on the test "
                "split inflates the reported numbers; use --val-fraction to hold out training images"
            )
    if val is not None and val.split in TEST_SPLITS and not allow_test_selection:
        raise ConfigError(
            f"refusing to select checkpoints on the test split of {val.root} (pass "
            "--allow-test-selection to reproduce the original GEM, which did)"
        )
    train_pairs = load_pairs(train, progress)
    val_pairs = load_pairs(val, progress) if val is not None else None
    if val_fraction:
        if val_pairs is not None:
            raise ConfigError("give either --val or --val-fraction, not both")
        train_pairs, val_pairs = holdout(train_pairs, val_fraction, cfg.seed)
    trainer = Trainer(cfg, RunData(train_pairs, val_pairs), out, progress=progress, stop_after=stop_after)
    return trainer.train(resume=resume)
