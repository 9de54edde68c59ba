"""The GEM training criterion (docs/original.md#the-proposal-loss, #denoising-queries, #criterion-and-matcher).

Terms, each with the same weights at every depth:
  loss_ce      softmax CE over {background, glass, no-object}, class weights [1, 1, eos]
  loss_mask    point-sampled sigmoid BCE (importance-sampled points), Σ over masks / num_masks
  loss_dice    point-sampled dice with +1 smoothing, Σ over masks / num_masks
  loss_bbox    L1 on normalised cxcywh, Σ / num_masks
  loss_giou    1 − GIoU, Σ / num_masks
  loss_proposal  DQS cell classification (CE, ignore −1), final output only
Suffixes: none = final layer, `_i` = aux output i (0 = initial DQS prediction), `_dn` / `_dn_i` =
denoising queries (fixed assignment, normalised by num_masks·scalar; aux 0 has no DN loss, as in the
original). `compute_terms` gives the unweighted terms (for logging), `weight_terms` the weighted ones
plus their sum `loss`; `forward` does both.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..model.box_ops import box_cxcywh_to_xyxy, generalized_box_iou
from .matcher import HungarianMatcher, Indices, point_sample, uniform_points
from .targets import DQS_IGNORE, DQSTarget, dqs_target

Targets = list[dict[str, torch.Tensor]]
# One generator for the whole batch, or one per image: per-image streams make every random draw of an
# image independent of which process (or which other images) it was batched with.
Generators = torch.Generator | list[torch.Generator] | None


def sample_uncertain_points(
    logits: torch.Tensor,  # [M, 1, h, w]
    num_points: int,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    generator: torch.Generator | None = None,
    padding: str = "border",
) -> torch.Tensor:
    """PointRend-style points [M, num_points, 2]: the most uncertain (−|logit|) of oversampled random
    candidates, topped up with uniform random points so that the whole mask keeps some supervision."""
    m = logits.shape[0]
    num_candidates = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    candidates = uniform_points(m, num_candidates, logits.device, generator)  # [M, K, 2]
    uncertainty = -point_sample(logits, candidates, padding)[:, 0].abs()  # [M, K]
    # The losses average over points, so their order does not matter: unsorted topk is ~2x faster.
    top = uncertainty.topk(num_uncertain, dim=1, sorted=False).indices  # [M, num_uncertain]
    chosen = torch.gather(candidates, 1, top[..., None].expand(-1, -1, 2))
    rest = uniform_points(m, num_points - num_uncertain, logits.device, generator)
    return torch.cat([chosen, rest], dim=1)


def sample_target_masks(
    targets: Targets, indices: Indices, points: torch.Tensor, padding: str = "border"
) -> torch.Tensor:
    """Values of the matched GT masks at points [M, N, 2] -> [M, N] (pairs in `indices` order).

    DN repeats each GT `scalar` times; sampling each distinct GT mask once at all of its pairs' points
    avoids materialising M full-resolution float masks.
    """
    labels = points.new_empty(points.shape[:2])
    start = 0
    for t, (_, gt) in zip(targets, indices):
        for g in gt.unique().tolist():
            rows = start + (gt == g).nonzero()[:, 0].to(points.device)  # this GT's pairs
            mask = t["masks"][g].to(points.device, torch.float32)[None, None]  # [1, 1, H, W]
            pts = points[rows].reshape(1, -1, 2)
            labels[rows] = point_sample(mask, pts, padding)[0, 0].view(len(rows), -1)
        start += gt.numel()
    return labels


def sigmoid_bce_loss(point_logits: torch.Tensor, point_labels: torch.Tensor, num_masks: torch.Tensor):
    """[M, N] x [M, N] -> scalar: BCE mean over points, summed over masks, / num_masks."""
    bce = F.binary_cross_entropy_with_logits(point_logits, point_labels, reduction="none")
    return bce.mean(1).sum() / num_masks


def dice_loss(point_logits: torch.Tensor, point_labels: torch.Tensor, num_masks: torch.Tensor):
    """[M, N] x [M, N] -> scalar: Σ over masks of 1 − (2Σpt + 1)/(Σp + Σt + 1), / num_masks."""
    prob = point_logits.sigmoid()
    dice = 1 - (2 * (prob * point_labels).sum(1) + 1) / (prob.sum(1) + point_labels.sum(1) + 1)
    return dice.sum() / num_masks


def box_losses(src: torch.Tensor, tgt: torch.Tensor, num_masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Matched cxcywh boxes [M, 4] x [M, 4] -> (Σ L1 / num_masks, Σ (1 − GIoU) / num_masks)."""
    l1 = F.l1_loss(src, tgt, reduction="none").sum() / num_masks
    giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt)))
    return l1, (1 - giou).sum() / num_masks


def global_num_masks(targets: Targets, device: torch.device) -> torch.Tensor:
    """Total GT masks in the batch, averaged over processes when distributed, at least 1."""
    n = torch.tensor(float(sum(t["labels"].numel() for t in targets)), device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(n)
        n = n / dist.get_world_size()
    return n.clamp(min=1.0)


def dn_indices(targets: Targets, scalar: int, single_pad: int) -> Indices:
    """Fixed DN assignment: image b's GT j in group g is DN query g·single_pad + j."""
    indices: Indices = []
    for t in targets:
        n = t["labels"].numel()
        gt = torch.arange(n, dtype=torch.int64)
        queries = (torch.arange(scalar, dtype=torch.int64)[:, None] * single_pad + gt[None]).flatten()
        indices.append((queries, gt.repeat(scalar)))
    return indices


def _batch_index(indices: Indices) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten per-image query ids into (batch ids, query ids) for advanced indexing."""
    batch = torch.cat([torch.full_like(q, b) for b, (q, _) in enumerate(indices)])
    return batch, torch.cat([q for q, _ in indices])


class GEMCriterion(nn.Module):
    empty_weight: torch.Tensor  # buffer, [num_classes + 1]: the class weights of the classification loss

    def __init__(
        self,
        num_classes: int = 2,
        matcher: HungarianMatcher | None = None,
        class_weight: float = 5.0,  # 5 for GEM-Tiny, 4 for GEM-Base
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        box_weight: float = 5.0,
        giou_weight: float = 2.0,
        proposal_weight: float = 80.0,  # 0 switches the DQS loss off
        eos_coef: float = 0.1,
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        dqs_target: DQSTarget = "sound",
        point_padding: str = "border",  # "zeros" = original (see matcher.point_sample)
    ) -> None:
        super().__init__()
        if dqs_target not in ("sound", "original"):
            raise ValueError(f"unknown dqs_target {dqs_target!r}; choose 'sound' or 'original'")
        if point_padding not in ("border", "zeros"):
            raise ValueError(f"unknown point_padding {point_padding!r}; choose 'border' or 'zeros'")
        self.num_classes = num_classes
        if matcher is None:
            matcher = HungarianMatcher(num_points=num_points, point_padding=point_padding)
        self.matcher = matcher
        self.weight_dict = {
            "loss_ce": class_weight,
            "loss_mask": mask_weight,
            "loss_dice": dice_weight,
            "loss_bbox": box_weight,
            "loss_giou": giou_weight,
            "loss_proposal": proposal_weight,
        }
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.dqs_target = dqs_target
        self.point_padding = point_padding
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    @classmethod
    def from_train_config(cls, cfg) -> GEMCriterion:
        """Criterion with the weights of a `glassgem.config.TrainConfig` (matcher costs stay 4/5/5/5/2)."""
        return cls(
            num_classes=cfg.model.num_classes,
            class_weight=cfg.class_weight,
            mask_weight=cfg.mask_weight,
            dice_weight=cfg.dice_weight,
            box_weight=cfg.box_weight,
            giou_weight=cfg.giou_weight,
            proposal_weight=cfg.proposal_weight,
            eos_coef=cfg.no_object_weight,
            num_points=cfg.num_points,
            oversample_ratio=cfg.oversample_ratio,
            importance_sample_ratio=cfg.importance_sample_ratio,
            dqs_target=cfg.dqs_target,
            point_padding=cfg.point_padding,
        )

    # ---- single loss terms (the unweighted values) -------------------------------------------------
    def loss_labels(self, logits: torch.Tensor, targets: Targets, indices: Indices) -> torch.Tensor:
        """logits [B, Q, C+1]; unmatched queries are supervised as no-object (class C)."""
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        batch, query = _batch_index(indices)
        matched = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)])
        target_classes[batch.to(logits.device), query.to(logits.device)] = matched.to(logits.device)
        weight = self.empty_weight.to(logits.device, torch.float32)
        return F.cross_entropy(logits.float().transpose(1, 2), target_classes, weight)

    def loss_masks(
        self,
        masks: torch.Tensor,  # [B, Q, h, w] logits
        targets: Targets,
        indices: Indices,
        num_masks: torch.Tensor,
        generator: Generators = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, query = _batch_index(indices)
        src = masks[batch.to(masks.device), query.to(masks.device)].float()[:, None]  # [M, 1, h, w]
        if src.shape[0] == 0:
            zero = masks.sum() * 0.0
            return zero, zero.clone()
        with torch.no_grad():
            if isinstance(generator, (list, tuple)):
                counts = [len(q) for q, _ in indices]
                points = torch.cat(
                    [self._points(chunk, generator[b]) for b, chunk in enumerate(src.split(counts)) if len(chunk)]
                )
            else:
                points = self._points(src, generator)
            labels = sample_target_masks(targets, indices, points, self.point_padding)  # [M, N]
        logits = point_sample(src, points, self.point_padding)[:, 0]  # [M, N]
        return sigmoid_bce_loss(logits, labels, num_masks), dice_loss(logits, labels, num_masks)

    def _points(self, src: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return sample_uncertain_points(
            src, self.num_points, self.oversample_ratio, self.importance_sample_ratio, generator, self.point_padding
        )

    def loss_boxes(
        self, boxes: torch.Tensor, targets: Targets, indices: Indices, num_masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, query = _batch_index(indices)
        src = boxes[batch.to(boxes.device), query.to(boxes.device)].float()  # [M, 4]
        tgt = torch.cat([t["boxes"][j.to(t["boxes"].device)] for t, (_, j) in zip(targets, indices)])
        if src.shape[0] == 0:
            zero = boxes.sum() * 0.0
            return zero, zero.clone()
        return box_losses(src, tgt.to(src.device, torch.float32), num_masks)

    def loss_proposal(self, logits: torch.Tensor, targets: Targets) -> torch.Tensor:
        """DQS logits [B, 2, h, w] against per-cell glass labels (see targets.dqs_target)."""
        sem = torch.stack([t["semantic"] for t in targets]).to(logits.device)
        target = dqs_target(sem, (logits.shape[-2], logits.shape[-1]), self.dqs_target)
        if not (target != DQS_IGNORE).any():  # all ignored: CE's mean would be 0/0
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float(), target, ignore_index=DQS_IGNORE)

    def output_terms(
        self,
        out: dict[str, torch.Tensor],
        targets: Targets,
        indices: Indices,
        num_masks: torch.Tensor,
        generator: Generators = None,
    ) -> dict[str, torch.Tensor]:
        """The five terms of one prediction (pred_logits, pred_masks, pred_boxes) under an assignment."""
        ce = self.loss_labels(out["pred_logits"], targets, indices)
        mask, dice = self.loss_masks(out["pred_masks"], targets, indices, num_masks, generator)
        bbox, giou = self.loss_boxes(out["pred_boxes"], targets, indices, num_masks)
        return {"loss_ce": ce, "loss_mask": mask, "loss_dice": dice, "loss_bbox": bbox, "loss_giou": giou}

    # ---- the whole criterion -----------------------------------------------------------------------
    def compute_terms(self, outputs: dict, targets: Targets, generator: Generators = None) -> dict[str, torch.Tensor]:
        """All unweighted terms, fp32 even under autocast. Randomness (matching and loss points) comes
        from `generator` when given (one for the batch or one per image), in a fixed order, so a resumed
        run can reproduce it."""
        device = outputs["pred_logits"].device
        with torch.autocast(device.type, enabled=False):
            return self._compute_terms(outputs, targets, generator, device)

    def _compute_terms(self, outputs: dict, targets: Targets, generator, device) -> dict[str, torch.Tensor]:
        num_masks = global_num_masks(targets, device)
        terms: dict[str, torch.Tensor] = {}

        def add(out: dict, indices: Indices, norm: torch.Tensor, suffix: str) -> None:
            for name, value in self.output_terms(out, targets, indices, norm, generator).items():
                terms[name + suffix] = value

        add(outputs, self.matcher(outputs, targets, generator), num_masks, "")
        for i, aux in enumerate(outputs.get("aux_outputs") or []):
            add(aux, self.matcher(aux, targets, generator), num_masks, f"_{i}")

        dn = outputs.get("dn_outputs")
        if dn is not None:
            scalar, single_pad = int(dn["scalar"]), int(dn["single_pad"])
            indices = dn_indices(targets, scalar, single_pad)
            dn_norm = num_masks * scalar
            add(dn, indices, dn_norm, "_dn")
            # aux 0 (the initial prediction) has no DN loss in the original.
            for i, aux in enumerate(dn.get("aux_outputs") or []):
                if i > 0:
                    add(aux, indices, dn_norm, f"_dn_{i}")

        proposal = outputs.get("proposal_cls_logits")
        if proposal is not None and self.weight_dict["loss_proposal"] != 0:
            terms["loss_proposal"] = self.loss_proposal(proposal, targets)
        return terms

    def weight_of(self, name: str) -> float:
        """Weight of a term name such as `loss_dice_dn_3`: that of its base term (`loss_dice`)."""
        return self.weight_dict["_".join(name.split("_")[:2])]

    def weight_terms(self, terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weighted terms plus their sum under `loss`."""
        weighted = {name: value * self.weight_of(name) for name, value in terms.items()}
        weighted["loss"] = torch.stack(list(weighted.values())).sum()
        return weighted

    def forward(self, outputs: dict, targets: Targets, generator: Generators = None):
        return self.weight_terms(self.compute_terms(outputs, targets, generator))
