"""Discerning query selection (DQS, docs/original.md#discerning-query-selection-dqs).

Fuse strides 8/16/32 at stride 16, classify every position background/glass, and hand the features of
the k most *confident* positions (max softmax probability over both classes) to the decoder as its
initial content queries. Box anchors are not derived from the positions (they stay learned).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError


class Proposals(NamedTuple):
    queries: Tensor  # B x K x C, the fused features at the selected positions (not detached)
    logits: Tensor  # B x 2 x h x w, background/glass logits at stride 16
    indices: Tensor  # B x K, flat y·w + x, by descending score
    scores: Tensor  # B x h·w, max softmax probability
    fused: Tensor  # B x C x h x w


def fuse_levels(p5: Tensor, p4: Tensor, p3: Tensor) -> Tensor:
    """P4 + up2(P5) + maxpool3x3s2(P3) at P4's size, in the original's order of additions.

    The top-k ranking separates scores that differ by ~1e-6, so the additions keep the original order.
    Sizes that do not line up (odd maps from native CNN features) are matched to P4's grid.
    """
    h, w = p4.shape[-2:]
    # with align_corners=True, size=(2h5, 2w5) is exactly the original's scale_factor=2
    up = F.interpolate(p5, size=(h, w), mode="bilinear", align_corners=True)
    down = F.max_pool2d(p3, kernel_size=3, stride=2, padding=1)
    if down.shape[-2:] != (h, w):
        down = F.adaptive_max_pool2d(p3, (h, w))
    return p4 + up + down


def ranking_key(scores: Tensor) -> Tensor:
    """Scores [B, N] -> float64 keys with the same order, ties broken towards the lower index.

    A trained model saturates its softmax: many cells score exactly 1.0 in fp32, and top-k implementations
    (PyTorch CPU/CUDA, onnxruntime) order exact ties differently, which would change which anchor each
    query gets. The offset (≤ N·1e-11) is far below the fp32 spacing of distinct scores (≥ 6e-8 above 0.5,
    where max-softmax scores live), so every strict order is kept."""
    offset = torch.arange(scores.shape[1], device=scores.device, dtype=torch.float64) * 1e-11
    return scores.double() - offset


class QuerySelection(nn.Module):
    """[P5, P4, P3] -> Proposals. `conv_proposal_cls_logits` is the original's name."""

    def __init__(self, hidden_dim: int = 256, num_queries: int = 100, num_classes: int = 2) -> None:
        super().__init__()
        self.num_queries = num_queries
        self.conv_proposal_cls_logits = nn.Sequential(
            nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, num_classes, 1),
        )

    def forward(self, feats: list[Tensor]) -> Proposals:
        p5, p4, p3 = feats
        fused = fuse_levels(p5, p4, p3)  # B x C x h x w
        logits = self.conv_proposal_cls_logits(fused)  # B x 2 x h x w
        scores = logits.float().softmax(dim=1).max(dim=1).values.flatten(1)  # B x h·w
        if scores.shape[1] < self.num_queries:
            h, w = fused.shape[-2:]
            raise ConfigError(
                f"input too small for {self.num_queries} queries: its stride-16 grid is {h}x{w} = {h * w} "
                f"positions (use an input of at least {16 * int(self.num_queries**0.5 + 0.999)} px a side)"
            )
        indices = ranking_key(scores).topk(self.num_queries, dim=1).indices  # B x K, by descending score
        flat = fused.flatten(2)  # B x C x h·w
        queries = torch.gather(flat, 2, indices[:, None].expand(-1, flat.shape[1], -1)).transpose(1, 2)
        return Proposals(queries, logits, indices, scores, fused)


__all__ = ["Proposals", "QuerySelection", "fuse_levels", "ranking_key"]
