"""Scoring folders of mask files with the GSD-S metrics: what `glassgem evaluate-masks` runs.

Predictions pair with ground-truth masks by file stem; a prediction at another size is an error unless
`resize_pred` (then `resize_map`: nearest for binary maps, bilinear as GEM resizes its scores for soft ones).
Files are decoded in a thread pool a bounded number of pairs ahead; the metrics are metrics.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..io import MASK_EXTENSIONS, load_mask, load_prediction, read_mask_values
from ..overlay import error_overlay
from .metrics import GlassMetrics, ImageStats, image_stats, prediction_levels


def _mask_files(folder: Path, what: str) -> dict[str, Path]:
    """stem -> file for every mask-like file in folder; duplicate stems are an error."""
    if not folder.is_dir():
        raise DataError(f"{folder}: {what} folder not found")
    by_stem: dict[str, list[Path]] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in MASK_EXTENSIONS:
            by_stem.setdefault(f.stem, []).append(f)
    dup = [v for v in by_stem.values() if len(v) > 1]
    if dup:
        raise DataError(f"{folder}: several {what} files share a name stem, e.g. " + ", ".join(p.name for p in dup[0]))
    return {stem: v[0] for stem, v in by_stem.items()}


def pair_files(pred_dir: str | Path, gt_dir: str | Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Pair predictions with ground-truth masks by file stem (extensions may differ).

    Returns ([(pred, gt), ...] in GT name order, predictions without a GT). A GT without a prediction
    is an error listing them.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    gts = _mask_files(gt_dir, "ground-truth")
    if not gts:
        raise DataError(f"{gt_dir}: no ground-truth masks ({', '.join(MASK_EXTENSIONS)}) in this folder")
    preds = _mask_files(pred_dir, "prediction")
    missing = [gts[s].name for s in gts if s not in preds]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise DataError(
            f"{pred_dir}: no prediction for {len(missing)} of {len(gts)} ground-truth masks "
            f"in {gt_dir}: {shown} (predictions pair with masks by file stem)"
        )
    extra = [p for s, p in preds.items() if s not in gts]
    return [(preds[s], gts[s]) for s in gts], extra


def _is_binary_map(a: np.ndarray) -> bool:
    if a.dtype == bool:
        return True
    hi = a.max(initial=0)
    return a.dtype.kind in "ui" and (hi <= 1 or not np.any((a != 0) & (a != hi)))


def resize_map(pred: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a prediction (H, W) to size = (h, w).

    Binary maps (only 0/1 or only 0/max values) use nearest neighbour, so they stay binary. Soft maps are
    scaled to [0, 1] and resized bilinearly with align_corners=False (as GEM resizes its scores to the
    image size); the result is float64.
    """
    h, w = size
    H, W = pred.shape

    def centres(n_out: int, n_in: int) -> np.ndarray:  # source coordinate of each output pixel centre
        return (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5

    if _is_binary_map(pred):
        ys = np.clip(np.floor(centres(h, H) + 0.5).astype(np.int64), 0, H - 1)
        xs = np.clip(np.floor(centres(w, W) + 0.5).astype(np.int64), 0, W - 1)
        return pred[ys[:, None], xs[None, :]]
    a = pred.astype(np.float64) / 255.0 if pred.dtype.kind in "ui" else pred.astype(np.float64)

    def taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum(centres(n_out, n_in), 0.0)  # torch clamps negative coordinates to 0
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), src - i0

    y0, y1, wy = taps(h, H)
    x0, x1, wx = taps(w, W)
    rows = a[y0] * (1 - wy)[:, None] + a[y1] * wy[:, None]  # (h, W)
    return rows[:, x0] * (1 - wx) + rows[:, x1] * wx  # (h, w)


def _pair_maps(pred_path: Path, gt_path: Path, legacy: bool, resize_pred: bool) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, ground truth) decoded from files, the prediction at the GT's size."""
    # The legacy MAE needs the stored GT values; the default only the binarised mask.
    gt = read_mask_values(gt_path) if legacy else load_mask(gt_path)
    pred = load_prediction(pred_path)
    if pred.shape != gt.shape[:2]:
        if not resize_pred:
            raise DataError(
                f"size mismatch: prediction {pred_path} is {pred.shape[1]}x{pred.shape[0]} (WxH) "
                f"but ground truth {gt_path} is {gt.shape[1]}x{gt.shape[0]}; resize predictions "
                "to the ground-truth size (--resize-pred)"
            )
        pred = resize_map(pred, gt.shape[:2])
    return pred, gt


def _pair_stats(pred_path: Path, gt_path: Path, legacy: bool, resize_pred: bool) -> ImageStats:
    pred, gt = _pair_maps(pred_path, gt_path, legacy, resize_pred)
    return image_stats(pred, gt, legacy=legacy, name=str(pred_path))


def _pair_picture(pred_path: Path, gt_path: Path, resize_pred: bool) -> np.ndarray:
    """The error picture of one file pair (no photo: errors on grey), for a per-image report."""
    pred, gt = _pair_maps(pred_path, gt_path, False, resize_pred)
    hard = prediction_levels(pred, str(pred_path))[0] >= 128  # pred >= 0.5 (to the bin)
    return error_overlay(None, hard, gt)


def evaluate_pairs(
    pairs: list[tuple[Path, Path]],
    *,
    legacy: bool = False,
    resize_pred: bool = False,
    workers: int | None = None,
    progress: bool = True,
    report: Any = None,
) -> dict[str, Any]:
    """Score (prediction file, GT file) pairs; returns `GlassMetrics.compute()`.

    Files are decoded in a thread pool (PIL and most of numpy release the GIL) a bounded number of
    pairs ahead, so decoding overlaps accumulation and memory stays constant. `report`: a
    `glassgem.evaluation.report.PerImageReport` that receives every image's scores (named by the prediction's stem)
    and, for its worst images, re-reads the two files to draw them.
    """
    import os
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    from functools import partial

    from tqdm import tqdm

    if not pairs:
        raise DataError("no (prediction, ground truth) pairs to evaluate")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    workers = workers or min(4, (os.cpu_count() or 1) + 1)  # decoding threads; one more than cores
    metrics = GlassMetrics(legacy=legacy)
    todo = iter(pairs)
    done = 0  # pairs scored so far; results come back in the order of `pairs`
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(pairs), unit="img", desc="evaluate", disable=not progress) as bar,
    ):
        ahead = deque(
            pool.submit(_pair_stats, p, g, legacy, resize_pred)
            for p, g in (next(todo) for _ in range(min(2 * workers, len(pairs))))
        )
        try:
            while ahead:
                stats = ahead.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    ahead.append(pool.submit(_pair_stats, *nxt, legacy, resize_pred))
                score = metrics.add(stats)
                if report is not None:
                    p, g = pairs[done]
                    report.add(p.stem, score, partial(_pair_picture, p, g, resize_pred))
                done += 1
                bar.update()
        except BaseException:
            for f in ahead:
                f.cancel()
            raise
    return metrics.compute()


def evaluate_folders(pred_dir: str | Path, gt_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Pair `pred_dir` with `gt_dir` by file stem and score them (keyword arguments: `evaluate_pairs`)."""
    pairs, _ = pair_files(pred_dir, gt_dir)
    return evaluate_pairs(pairs, **kwargs)


__all__ = ["evaluate_folders", "evaluate_pairs", "pair_files", "resize_map"]
