"""Evaluating a model on image/mask pairs with the GSD-S protocol (docs/evaluation.md, docs/original.md#metrics).

Every image goes through a glassgem.Predictor (squash to size x size, 2-class scores, bilinear resize back to
the image's size, glass where the glass score beats the background score or its probability beats --threshold),
decoded and squashed in data-loading worker processes by the Predictor's own Preparer; the masks are scored
with IoU / max F-beta / MAE / BER per image.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.datasets import GlassDataset, Pair
from ..inference.predictor import PROTOCOL_THRESHOLD, Output, Predictor, Preparer
from ..inference.threads import loader_workers
from ..io import load_image, save_image, save_mask
from ..overlay import error_overlay
from .metrics import GlassMetrics


class _Prepare:
    """The dataset transform: a sample's image through the Predictor's Preparer (picklable, for workers)."""

    def __init__(self, preparer: Preparer) -> None:
        self.preparer = preparer

    def __call__(self, sample: dict[str, Any], rng: Any = None) -> dict[str, Any]:
        rgb, squashed = self.preparer(sample["image"])
        return {"squashed": squashed, "hw": rgb.shape[:2], "stem": sample["stem"], "mask": sample.get("mask")}


def _collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: [b[key] for b in batch] for key in ("squashed", "hw", "stem", "mask")}


def _predictor(model: Any, size: int, batch_size: int, device: Any, dtype: Any, tta: bool, threshold: Any) -> Predictor:
    if isinstance(model, Predictor):
        return model
    return Predictor(
        model,
        size=size,
        tta=tta,
        threshold=threshold,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        precision="fp32",  # a model's numbers are its PyTorch fp32 numbers; pass a Predictor for another precision
    )


def iterate_predictions(
    model: Any,
    pairs: Sequence[Pair],
    size: int = 384,
    batch_size: int = 4,
    num_workers: int = 2,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    tta: bool = False,
    threshold: float | None = None,
    probabilities: bool = False,
) -> Iterable[tuple[str, Output, np.ndarray | None]]:
    """Yield (stem, Output at the image's size, ground-truth mask [H,W] or None) per pair, in order. `model`: a
    glassgem.Predictor (then the other prediction options are its own), or a model it is made of with `size`,
    `batch_size`, `device`, `dtype`, `tta` (flip test-time augmentation) and `threshold`."""
    predictor = _predictor(model, size, batch_size, device, dtype, tta, threshold)
    loader = DataLoader(  # worker processes: at most one per core beside this one (threads.loader_workers)
        GlassDataset(list(pairs), _Prepare(predictor.preparer)),
        batch_size=predictor.batch_size,
        num_workers=loader_workers(num_workers),
        collate_fn=_collate,
    )
    for batch in loader:
        scores = predictor.score(batch["squashed"])
        for i, stem in enumerate(batch["stem"]):
            mask = batch["mask"][i]
            yield stem, predictor.output(scores[i], batch["hw"][i], probabilities), mask


def evaluate_model(
    model: Any,
    pairs: Sequence[Pair],
    size: int = 384,
    batch_size: int = 4,
    num_workers: int = 2,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    save_masks: str | Path | None = None,
    save_prob: bool = False,
    legacy: bool = False,
    progress: bool = True,
    tta: bool = False,
    report: Any = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """GSD-S metrics of `model` (a glassgem.Predictor, or a model it is made of with `size`, `batch_size`,
    `device`, `dtype`, `tta` and `threshold`) on image/mask pairs; optionally writes `<stem>.png` masks (0/255).
    `report`: a `glassgem.evaluation.report.PerImageReport` that receives every image's scores and, for its worst
    images, draws the photo with the prediction's errors. `threshold`: glass where its probability
    exceeds it (default None: the larger score wins, the protocol; see glassgem.Predictor)."""
    predictor = _predictor(model, size, batch_size, device, dtype, tta, threshold)
    metrics = GlassMetrics(legacy=legacy)
    out_dir = Path(save_masks) if save_masks else None
    preds = iterate_predictions(predictor, pairs, num_workers=num_workers, probabilities=save_prob and bool(out_dir))
    bar = tqdm(preds, total=len(pairs), desc="evaluate", unit="img", disable=not progress)
    for pair, (stem, output, gt) in zip(pairs, bar):
        pred = output.mask.astype(np.uint8)
        score = metrics.update(pred, gt, name=str(pair.image_path))
        if report is not None:
            report.add(stem, score, partial(_error_picture, pair.image_path, pred, gt))
        if out_dir is not None:
            save_mask(out_dir / f"{stem}.png", pred)
            if output.probability is not None:
                prob = (output.probability * 255.0 + 0.5).astype(np.uint8)
                save_image(out_dir / "prob" / f"{stem}.png", prob)
    results = metrics.compute()
    if predictor.threshold != PROTOCOL_THRESHOLD:
        results["threshold"] = predictor.threshold  # not the protocol's rule: said in the JSON too
    smoothing = predictor.smoothing
    if smoothing:
        results["score_smoothing"] = smoothing  # the model's post-processing, recorded beside its numbers
    return results


def _error_picture(image_path: Path, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    return error_overlay(load_image(image_path), pred, gt)
