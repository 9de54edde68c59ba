"""Training targets built from semantic maps: per-class masks/boxes for matching, and DQS cell labels.

A semantic map `sem` is int64 [H, W] with 0 = background, 1 = glass and 255 = padding (the only
ignore value). As in the original GEM, every class present in a crop is one "object": so an image has
one or two targets (background and/or glass), ordered by class id (docs/original.md#training-pipeline, step 6).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ..errors import DataError
from ..model.box_ops import masks_to_boxes_cxcywh

IGNORE_VALUE = 255
GLASS = 1
DQS_IGNORE = -1  # ignore_index of the DQS cross-entropy

DQSTarget = Literal["sound", "original"]


def targets_from_semantic(sem: torch.Tensor, num_classes: int = 2) -> dict[str, torch.Tensor]:
    """One target per class present in `sem` [H, W] (padding 255 excluded from masks and boxes).

    Returns {"labels": int64 [n] sorted, "masks": bool [n, H, W], "boxes": float32 [n, 4] normalised
    cxcywh tight boxes (convention in `masks_to_boxes_cxcywh`), "semantic": sem}.
    """
    if sem.dim() != 2:
        raise DataError(f"semantic map must be [H, W], got shape {tuple(sem.shape)}")
    sem = sem.long()
    present = torch.unique(sem)
    bad = present[(present != IGNORE_VALUE) & ((present < 0) | (present >= num_classes))]
    if bad.numel():
        raise DataError(
            f"semantic map has values {bad.tolist()}; expected class ids 0..{num_classes - 1} "
            f"or {IGNORE_VALUE} (padding)"
        )
    labels = present[present != IGNORE_VALUE]  # torch.unique returns sorted ids
    masks = sem[None] == labels[:, None, None]  # [n, H, W]
    return {"labels": labels, "masks": masks, "boxes": masks_to_boxes_cxcywh(masks), "semantic": sem}


def targets_from_batch(sem: torch.Tensor, num_classes: int = 2) -> list[dict[str, torch.Tensor]]:
    """`targets_from_semantic` for each map of a batch [B, H, W]."""
    if sem.dim() != 3:
        raise DataError(f"batch of semantic maps must be [B, H, W], got shape {tuple(sem.shape)}")
    return [targets_from_semantic(s, num_classes) for s in sem]


def dqs_target(sem: torch.Tensor, size: tuple[int, int], mode: DQSTarget = "sound") -> torch.Tensor:
    """Per-cell labels for the DQS classifier: sem [B, H, W] -> int64 [B, h, w] in {0, 1, DQS_IGNORE}.

    "sound" (default): a cell is glass (1) when at least half of its non-padding pixels are glass;
    a cell that is more than half padding is ignored (-1).
    "original" (docs/original.md#the-proposal-loss): the fraction of pixels NOT in the first present class's mask,
    truncated to int. So a cell is 1 only if it is entirely glass or padding, and a crop that is all
    glass (first class = glass) is labelled all 0. A map with no class at all is labelled all 1 (no
    first mask, so every pixel is "not in it").
    """
    if sem.dim() != 3:
        raise DataError(f"batch of semantic maps must be [B, H, W], got shape {tuple(sem.shape)}")
    if mode == "sound":
        return _dqs_target_sound(sem, size)
    if mode == "original":
        return _dqs_target_original(sem, size)
    raise ValueError(f"unknown dqs_target {mode!r}; choose 'sound' or 'original'")


def _dqs_target_sound(sem: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    valid = F.adaptive_avg_pool2d((sem != IGNORE_VALUE).float()[:, None], size)[:, 0]  # [B, h, w]
    glass = F.adaptive_avg_pool2d((sem == GLASS).float()[:, None], size)[:, 0]
    # Both are (pixel count) / (cell size), so 2·glass >= valid compares counts without dividing.
    target = (2 * glass >= valid).long()
    return torch.where(2 * valid < 1, torch.full_like(target, DQS_IGNORE), target)


def _dqs_target_original(sem: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    not_first = []
    for s in sem:
        present = torch.unique(s)
        present = present[present != IGNORE_VALUE]
        if present.numel() == 0:
            not_first.append(torch.ones_like(s, dtype=torch.float32))
        else:
            # masks[0] never contains padding, so padding lands in its complement ("glass").
            not_first.append((s != present[0]).float())
    frac = F.adaptive_avg_pool2d(torch.stack(not_first)[:, None], size)[:, 0]
    return frac.long()  # truncation, as the original's .to(int64)
