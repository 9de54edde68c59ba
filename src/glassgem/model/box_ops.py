"""Box conversions and overlaps: the one place glassgem converts boxes.

Convention everywhere outside this file: boxes are normalised (cx, cy, w, h) in [0, 1] of the padded
input. Overlaps are computed in (x1, y1, x2, y2). The arithmetic is torchvision.ops'; these wrappers
fix the formats and the mask-to-box convention.
"""

from __future__ import annotations

import torch
from torchvision import ops


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x1, y1, x2, y2)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (x1, y1, x2, y2) -> [..., 4] (cx, cy, w, h)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes: [N, 4] x [M, 4] -> [N, M]."""
    return ops.box_iou(boxes1, boxes2)


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise generalised IoU of xyxy boxes: [N, 4] x [M, 4] -> [N, M], in [-1, 1]."""
    return ops.generalized_box_iou(boxes1, boxes2)


def masks_to_boxes_cxcywh(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of binary masks [n, H, W] -> normalised cxcywh [n, 4] (float32).

    Convention (that of the original GEM targets): x1/y1 = first set column/row index and x2/y2 = last
    set index (torchvision's masks_to_boxes, *not* +1), then divided by [W, H, W, H]. So a full-image
    mask gives (0.5 - 0.5/W, 0.5 - 0.5/H, 1 - 1/W, 1 - 1/H) and a single pixel has zero width and height.
    An empty mask gives an all-zero box.
    """
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.float32, device=masks.device)
    masks = masks.bool()
    xyxy = torch.zeros((n, 4), dtype=torch.float32, device=masks.device)
    nonempty = masks.flatten(1).any(dim=1)
    if nonempty.any():
        xyxy[nonempty] = ops.masks_to_boxes(masks[nonempty]).float()
    scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=masks.device)
    boxes = box_xyxy_to_cxcywh(xyxy / scale)
    return torch.where(nonempty[:, None], boxes, torch.zeros_like(boxes))
