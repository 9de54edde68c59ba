"""Model inference on image files and evaluation with the GSD-S protocol (METRICS.md).

Test protocol of the original: squash each image to size x size (aspect not kept), compute the
2-class semantic scores, resize them bilinearly back to the original size, predict glass where the
glass score beats the background score, and score with IoU / max F-beta / MAE / BER per image.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.datasets import GlassDataset, Pair
from ..data.transforms import TestTransform
from ..inference.protocol import check_threshold, flip_averaged, glass_mask, glass_probability, unsquash
from ..inference.runtime import autocast
from ..inference.threads import loader_workers
from ..io import load_image, save_image, save_mask
from ..overlay import error_overlay
from .metrics import GlassMetrics


def _collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"image": torch.stack([b["image"] for b in batch])}
    for key in ("orig_size", "stem", "mask"):
        out[key] = [b.get(key) for b in batch]
    return out


@torch.no_grad()
def iterate_predictions(
    model: torch.nn.Module,
    pairs: Sequence[Pair],
    size: int | tuple[int, int] = 384,
    batch_size: int = 4,
    num_workers: int = 2,
    device: Optional[torch.device] = None,
    dtype: Optional[torch.dtype] = None,
    tta: bool = False,
) -> Iterable[tuple[str, torch.Tensor, Optional[torch.Tensor]]]:
    """Yield (stem, scores [2,H,W] at the original size, gt mask [H,W] or None) per pair, in order.
    `tta`: average with the mirrored images' mirrored scores (inference/protocol.flip_averaged)."""
    device = device or next(model.parameters()).device
    loader = DataLoader(  # worker processes: at most one per core beside this one (threads.loader_workers)
        GlassDataset(list(pairs), TestTransform(size)),
        batch_size=batch_size,
        num_workers=loader_workers(num_workers),
        collate_fn=_collate,
    )
    was_training = model.training
    model.eval()
    try:
        for batch in loader:
            with autocast(device, dtype):
                images = batch["image"].to(device)
                scores = flip_averaged(model.semantic_scores, images) if tta else model.semantic_scores(images)
            scores = scores.float().cpu()
            for i, stem in enumerate(batch["stem"]):
                full = unsquash(scores[i : i + 1], batch["orig_size"][i])[0]
                yield stem, full, batch["mask"][i]
    finally:
        model.train(was_training)


def evaluate_model(
    model: torch.nn.Module,
    pairs: Sequence[Pair],
    size: int | tuple[int, int] = 384,
    batch_size: int = 4,
    num_workers: int = 2,
    device: Optional[torch.device] = None,
    dtype: Optional[torch.dtype] = None,
    save_masks: Optional[str | Path] = None,
    save_prob: bool = False,
    legacy: bool = False,
    progress: bool = True,
    tta: bool = False,
    report: Any = None,
    threshold: Optional[float] = None,
) -> dict[str, Any]:
    """GSD-S metrics of `model` on image/mask pairs; optionally writes `<stem>.png` masks (0/255).
    `report`: a `glassgem.evaluation.report.PerImageReport` that receives every image's scores and, for its worst
    images, draws the photo with the prediction's errors. `threshold`: glass where its probability
    exceeds it (default None: the larger score wins, the protocol; see inference.protocol.glass_mask)."""
    check_threshold(threshold)
    metrics = GlassMetrics(legacy=legacy)
    out_dir = Path(save_masks) if save_masks else None
    preds = iterate_predictions(model, pairs, size, batch_size, num_workers, device, dtype, tta)
    bar = tqdm(preds, total=len(pairs), desc="evaluate", unit="img", disable=not progress)
    for pair, (stem, scores, gt) in zip(pairs, bar):
        pred = glass_mask(scores, threshold).numpy()  # default: argmax, ties go to background
        gt = gt.numpy()
        score = metrics.update(pred, gt, name=str(pair.image_path))
        if report is not None:
            report.add(stem, score, partial(_error_picture, pair.image_path, pred, gt))
        if out_dir is not None:
            save_mask(out_dir / f"{stem}.png", pred)
            if save_prob:
                prob = (glass_probability(scores).numpy() * 255.0 + 0.5).astype(np.uint8)
                save_image(out_dir / "prob" / f"{stem}.png", prob)
    results = metrics.compute()
    if threshold is not None:
        results["threshold"] = float(threshold)  # not the protocol's argmax: said in the JSON too
    smoothing = float(getattr(getattr(model, "cfg", None), "score_smoothing", 0.0))
    if smoothing:
        results["score_smoothing"] = smoothing  # the model's post-processing, recorded beside its numbers
    return results


def _error_picture(image_path: Path, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    return error_overlay(load_image(image_path), pred, gt)
