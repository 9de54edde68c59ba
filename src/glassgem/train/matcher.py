"""Hungarian matching of predicted queries to per-class targets (docs/original.md#criterion-and-matcher).

Cost per (query, target) pair:
    C = w_class·focal_class_cost + w_mask·BCE + w_dice·dice + w_box·L1(cxcywh) + w_giou·(−GIoU)
The class cost is the focal-style cost on sigmoid(logits), as in the original, even though training
uses softmax CE. Mask costs use one set of uniformly random points per image, shared by every query
and target, so the costs are comparable across the image's pairs. Matching is per image, so no
[B·Q, ΣGT] tensor is ever built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from ..model.box_ops import box_cxcywh_to_xyxy, generalized_box_iou

Indices = list[tuple[torch.Tensor, torch.Tensor]]  # per image: (query ids, target ids), int64


def point_sample(inp: torch.Tensor, coords: torch.Tensor, padding: str = "border") -> torch.Tensor:
    """Bilinear values of inp [M, C, H, W] at coords [M, N, 2] (x, y in [0, 1]) -> [M, C, N].

    align_corners=False: coordinate 0 is the outer edge of the first pixel, so maps of different
    resolutions (1/4 predictions, full-size targets) are sampled at the same physical points.
    padding "border" (glassgem default): a point in the outer half-pixel takes the edge pixel's value.
    "zeros" is the original's grid_sample default: it blends edge values towards 0 there, more so on
    the coarse predictions than on the targets, which biases the loss and draws the "uncertain"
    (near-zero logit) points to the image border.
    """
    grid = coords[:, :, None, :].mul(2.0).sub_(1.0)  # [M, N, 1, 2] in grid_sample's [-1, 1]
    out = F.grid_sample(inp, grid.to(inp.dtype), mode="bilinear", padding_mode=padding, align_corners=False)
    return out[..., 0]


def uniform_points(m: int, n: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """[m, n, 2] uniform points in [0, 1)^2, drawn from `generator` if given.

    A CPU generator with an accelerator `device`: one seed is drawn from the generator and the points
    come from a generator on `device` seeded with it (still a function of the generator's state alone).
    Drawing them on the CPU and copying was ~70% of a GPU training step.
    """
    if generator is None:
        return torch.rand(m, n, 2, device=device)
    device = torch.device(device)
    if device.type != generator.device.type:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        generator = torch.Generator(device=device).manual_seed(seed)
    return torch.rand(m, n, 2, generator=generator, device=generator.device).to(device)


def focal_class_cost(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0):
    """logits [Q, C], labels [n] -> [Q, n]: focal loss for "positive" minus focal loss for "negative"."""
    prob = logits.sigmoid()
    neg = (1 - alpha) * prob**gamma * -(1 - prob + 1e-8).log()
    pos = alpha * (1 - prob) ** gamma * -(prob + 1e-8).log()
    return pos[:, labels] - neg[:, labels]


def bce_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over points of sigmoid BCE for every pair: logits [Q, N], targets [n, N] -> [Q, n]."""
    # BCE(x, t) = t·softplus(-x) + (1-t)·softplus(x), so all pairs are two matmuls.
    pos = F.softplus(-logits)
    neg = F.softplus(logits)
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[1]


def dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss 1 − (2Σpt + 1)/(Σp + Σt + 1) for every pair: [Q, N] x [n, N] -> [Q, n]."""
    prob = logits.sigmoid()
    inter = prob @ targets.T
    return 1 - (2 * inter + 1) / (prob.sum(-1)[:, None] + targets.sum(-1)[None, :] + 1)


class HungarianMatcher(nn.Module):
    def __init__(
        self,
        cost_class: float = 4.0,
        cost_mask: float = 5.0,
        cost_dice: float = 5.0,
        cost_box: float = 5.0,
        cost_giou: float = 2.0,
        num_points: int = 12544,
        point_padding: str = "border",  # "zeros" = original (see point_sample)
    ) -> None:
        super().__init__()
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.cost_box = cost_box
        self.cost_giou = cost_giou
        self.num_points = num_points
        self.point_padding = point_padding

    def cost_matrix(
        self,
        logits: torch.Tensor,  # [Q, C]
        masks: torch.Tensor,  # [Q, h, w] logits
        boxes: torch.Tensor,  # [Q, 4] cxcywh
        target: dict[str, torch.Tensor],  # labels [n], masks [n, H, W], boxes [n, 4]
        points: torch.Tensor,  # [N, 2] in [0, 1)^2, shared by all pairs of this image
    ) -> torch.Tensor:
        """The weighted matching cost of one image, [Q, n] float32."""
        labels = target["labels"]
        n, q = labels.numel(), logits.shape[0]
        pts = points[None]
        pad = self.point_padding
        out_pts = point_sample(masks[:, None].float(), pts.expand(q, -1, -1), pad)[:, 0]  # [Q, N]
        tgt_pts = point_sample(target["masks"][:, None].float(), pts.expand(n, -1, -1), pad)[:, 0]  # [n, N]
        tgt_boxes = target["boxes"].float()
        boxes = boxes.float()
        cost = (
            self.cost_class * focal_class_cost(logits.float(), labels)
            + self.cost_mask * bce_cost(out_pts, tgt_pts)
            + self.cost_dice * dice_cost(out_pts, tgt_pts)
            + self.cost_box * torch.cdist(boxes, tgt_boxes, p=1)
            - self.cost_giou * generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt_boxes))
        )
        return cost

    @torch.no_grad()
    def forward(
        self,
        outputs: dict[str, torch.Tensor],  # pred_logits [B,Q,C], pred_masks [B,Q,h,w], pred_boxes [B,Q,4]
        targets: list[dict[str, torch.Tensor]],
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> Indices:
        """Per image, the minimal-cost one-to-one assignment of min(Q, n) queries to targets.
        `generator` is one for the batch or one per image (then image b's points come from generator[b])."""
        device = outputs["pred_logits"].device
        indices: Indices = []
        with torch.autocast(device.type, enabled=False):
            for b, target in enumerate(targets):
                if target["labels"].numel() == 0:
                    empty = torch.zeros(0, dtype=torch.int64)
                    indices.append((empty, empty.clone()))
                    continue
                gen = generator[b] if isinstance(generator, (list, tuple)) else generator
                points = uniform_points(1, self.num_points, device, gen)[0]
                cost = self.cost_matrix(
                    outputs["pred_logits"][b],
                    outputs["pred_masks"][b],
                    outputs["pred_boxes"][b],
                    target,
                    points,
                )
                rows, cols = linear_sum_assignment(cost.cpu().numpy())
                indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices
