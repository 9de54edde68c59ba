"""MaskDINO-style mask decoder of GEM (docs/original.md#mask-decoder): 9 layers of self-attention, deformable
cross-attention over strides 8/16/32 and an FFN, with box anchors refined layer by layer; prediction
heads (3-way class, mask = MLP(query)·pixel embedding, box) and denoising queries for training.

Tensors are batch-first here ([B, Q, C]); the original is sequence-first, which changes nothing else.
Attribute names follow the original's `sem_seg_head.predictor.*` so checkpoints map one to one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from .deform_attn import MSDeformAttn

MaskFn = Callable[[Tensor], Tensor]  # mask embeddings [B,Q,D] -> mask logits [B,Q,H/4,W/4]


class MLP(nn.Module):
    """Linear layers with ReLU between them (`layers.N` as the original)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [out_dim]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def sine_embed(boxes: Tensor, num_feats: int = 128) -> Tensor:
    """[..., 4] (cx, cy, w, h) in [0,1] -> [..., 4·num_feats] in the order (y, x, w, h).

    Each coordinate becomes sin/cos pairs (sin at even, cos at odd channels) of 2π·v / 10000^(2⌊i/2⌋/n).
    """
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=boxes.device)
    dim_t = 10000 ** (2 * (dim_t // 2) / num_feats)
    v = boxes[..., [1, 0, 2, 3], None] * (2 * math.pi) / dim_t  # ... x 4 x n, coordinates as y, x, w, h
    return torch.stack((v[..., 0::2].sin(), v[..., 1::2].cos()), dim=-1).flatten(-3)


class DecoderLayer(nn.Module):
    """Post-norm layer: self-attn + norm2, deformable cross-attn + norm1, FFN + norm3 (dropout 0)."""

    def __init__(self, d_model: int, nheads: int, dim_ff: int, n_levels: int, n_points: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nheads, batch_first=True)
        self.norm2 = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformAttn(d_model, n_levels, nheads, n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_ff)
        self.linear2 = nn.Linear(dim_ff, d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        tgt: Tensor,
        query_pos: Tensor,
        ref: Tensor,
        memory: Tensor,
        shapes: list[tuple[int, int]],
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        """tgt, query_pos [B,Q,C]; ref [B,Q,4] (sigmoid space); memory [B,S,C] -> [B,Q,C]."""
        q = tgt + query_pos
        tgt = self.norm2(tgt + self.self_attn(q, q, tgt, attn_mask=attn_mask, need_weights=False)[0])
        tgt = self.norm1(tgt + self.cross_attn(tgt + query_pos, ref, memory, shapes))
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class DNQueries(NamedTuple):
    content: Tensor  # B x P x C, label embeddings of noised GT classes (zeros in unused slots)
    anchors: Tensor  # B x P x 4, inverse-sigmoid of noised GT boxes (zeros in unused slots)
    attn_mask: Tensor  # T x T bool, True = may not attend; T = P + num_queries
    scalar: int  # number of DN groups
    single_pad: int  # queries per group = max GT count per image


def dn_attn_mask(pad_size: int, num_queries: int, scalar: int, single_pad: int, device: torch.device) -> Tensor:
    """Matching queries cannot see DN queries; DN groups cannot see each other (they see matching ones)."""
    size = pad_size + num_queries
    mask = torch.zeros(size, size, dtype=torch.bool, device=device)
    mask[pad_size:, :pad_size] = True
    group = torch.arange(pad_size, device=device) // single_pad
    mask[:pad_size, :pad_size] = group[:, None] != group[None, :]
    return mask


def _dn_noise(
    labels: Tensor,
    boxes: Tensor,
    counts: list[int],
    scalar: int,
    num_classes: int,
    generators: list[torch.Generator] | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Uniform draws for label flips, flip classes and box jitter, laid out like `labels` (group-major).
    With one generator per image, image b's draws come from generators[b] alone."""
    device = labels.device
    if generators is None:
        return (
            torch.rand(labels.shape, device=device),
            torch.randint_like(labels, 0, num_classes),
            torch.rand_like(boxes),
        )
    per_image = []
    for n, gen in zip(counts, generators):
        per_image.append(
            (
                torch.rand(scalar, n, generator=gen),
                torch.randint(0, num_classes, (scalar, n), generator=gen),
                torch.rand(scalar, n, 4, generator=gen),
            )
        )
    # [scalar, n_b, ...] per image -> concatenate images within each group -> flatten groups
    u, k, r = (torch.cat([p[i] for p in per_image], dim=1).flatten(0, 1).to(device) for i in range(3))
    return u, k.to(labels.dtype), r


def build_dn_queries(
    targets: list[dict[str, Tensor]],
    label_enc: nn.Embedding,
    dn_num: int,
    noise_scale: float,
    num_classes: int,
    num_queries: int,
    generators: list[torch.Generator] | None = None,
) -> DNQueries | None:
    """DN-DETR denoising queries, MaskDINO "seg" variant: each GT (one per class mask) is repeated in
    `dn_num // max_gt` groups with label flips (p = noise_scale/2) and box jitter (±noise_scale of the
    half-size for the centre, of the size for w/h). DN query of image b's GT j in group g: g·single_pad + j.
    Returns None when no image has a GT."""
    counts = [int(t["labels"].numel()) for t in targets]
    single_pad = max(counts, default=0)
    scalar = dn_num // single_pad if single_pad else 0
    if scalar == 0:
        return None
    device = label_enc.weight.device
    labels = torch.cat([t["labels"].to(device=device, dtype=torch.long) for t in targets]).repeat(scalar)
    boxes = torch.cat([t["boxes"].to(device=device, dtype=torch.float32) for t in targets]).repeat(scalar, 1)
    batch = torch.cat([torch.full((n,), i, dtype=torch.long, device=device) for i, n in enumerate(counts)])
    slot = torch.cat([torch.arange(n, device=device) for n in counts])
    batch = batch.repeat(scalar)
    slot = torch.cat([slot + single_pad * g for g in range(scalar)])
    if noise_scale > 0:
        u, new_class, jitter = _dn_noise(labels, boxes, counts, scalar, num_classes, generators)
        labels = torch.where(u < noise_scale * 0.5, new_class, labels)
        spread = torch.cat([boxes[:, 2:] / 2, boxes[:, 2:]], dim=1)
        boxes = (boxes + (jitter * 2 - 1.0) * spread * noise_scale).clamp(min=0.0, max=1.0)
    pad_size = single_pad * scalar
    b, c = len(targets), label_enc.embedding_dim
    content = torch.zeros(b, pad_size, c, device=device, dtype=label_enc.weight.dtype)
    anchors = torch.zeros(b, pad_size, 4, device=device)
    content = content.index_put((batch, slot), label_enc(labels))
    anchors = anchors.index_put((batch, slot), inverse_sigmoid(boxes))
    mask = dn_attn_mask(pad_size, num_queries, scalar, single_pad, device)
    return DNQueries(content, anchors, mask, scalar, single_pad)


class GEMDecoder(nn.Module):
    """Queries + memory -> class logits, masks and boxes of the initial prediction and of every layer."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.cfg = cfg
        self.num_queries = cfg.num_queries
        self.layers = nn.ModuleList(
            DecoderLayer(d, cfg.nheads, cfg.dim_feedforward, cfg.num_feature_levels, cfg.dec_n_points)
            for _ in range(cfg.dec_layers)
        )
        self.ref_point_head = MLP(2 * d, d, d, 2)
        self.bbox_embed = MLP(d, d, 4, 3)  # shared by all layers (the original's aliases point here)
        self.decoder_norm = nn.LayerNorm(d)
        self.class_embed = nn.Linear(d, cfg.num_classes + 1)  # background, glass, no-object
        self.mask_embed = MLP(d, d, cfg.mask_dim, 3)
        self.query_embed = nn.Embedding(cfg.num_queries, 4)  # learned static anchors (unsigmoided)
        self.label_enc = nn.Embedding(cfg.num_classes, d)
        self.query_feat = None if cfg.use_dqs else nn.Embedding(cfg.num_queries, d)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in self.layers:
            assert isinstance(layer, DecoderLayer)
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            layer.cross_attn.reset_parameters()
        last = self.bbox_embed.layers[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    # ------------------------------------------------------------------------------ layers
    def run_layers(
        self,
        tgt: Tensor,
        anchors: Tensor,
        memory: Tensor,
        shapes: list[tuple[int, int]],
        attn_mask: Tensor | None = None,
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """tgt [B,T,C], anchors [B,T,4] unsigmoided -> (raw layer outputs, decoder_norm of them, references).

        references has one more entry: [0] = sigmoid(anchors), [l] = the boxes refined by layer l (not
        detached; the next layer gets them detached, and its refinement uses the *raw* output).
        """
        ref = anchors.sigmoid()
        raw, hs, refs = [], [], [ref]
        for layer in self.layers:
            query_pos = self.ref_point_head(sine_embed(ref, self.cfg.hidden_dim // 2))
            tgt = layer(tgt, query_pos, ref, memory, shapes, attn_mask)
            new_ref = (self.bbox_embed(tgt) + inverse_sigmoid(ref)).sigmoid()
            ref = new_ref.detach()
            raw.append(tgt)
            hs.append(self.decoder_norm(tgt))
            refs.append(new_ref)
        return raw, hs, refs

    def predict(self, out: Tensor, mask_fn: MaskFn | None) -> tuple[Tensor, Tensor | None]:
        """Heads on [B,T,C]: decoder_norm is applied here again (the original's double LayerNorm)."""
        x = self.decoder_norm(out)
        with torch.autocast(x.device.type, enabled=False):
            # fp32 even under autocast: logits of ~±30 in bf16 would be rounded to steps of 0.125 (free: 3 outputs)
            logits = self.class_embed(x.float())  # B x T x 3
        return logits, (mask_fn(self.mask_embed(x)) if mask_fn is not None else None)

    # ------------------------------------------------------------------------------ forward
    def _initial(self, queries: Tensor | None, b: int) -> tuple[Tensor, Tensor]:
        """Content queries (DQS features or learned `query_feat`) and unsigmoided anchors, [B,Q,C], [B,Q,4]."""
        if queries is None:
            if self.query_feat is None:
                raise ValueError("this decoder takes its content queries from DQS: pass them")
            queries = self.query_feat.weight[None].expand(b, -1, -1)
        return queries, self.query_embed.weight[None].expand(b, -1, -1)

    def predict_last(
        self, queries: Tensor | None, memory: Tensor, shapes: list[tuple[int, int]], mask_fn: MaskFn
    ) -> tuple[Tensor, Tensor]:
        """Inference shortcut for semantic maps: the last layer's class logits [B,Q,3] and masks only
        (what `forward` returns as pred_logits/pred_masks in eval mode, without boxes or aux outputs)."""
        tgt, anchors = self._initial(queries, memory.shape[0])
        _, hs, _ = self.run_layers(tgt, anchors, memory, shapes)
        logits, masks = self.predict(hs[-1], mask_fn)
        assert masks is not None  # mask_fn is given
        return logits, masks

    def forward(
        self,
        queries: Tensor | None,
        memory: Tensor,
        shapes: list[tuple[int, int]],
        mask_fn: MaskFn,
        targets: list[dict[str, Tensor]] | None = None,
        internals: bool = False,
        generators: list[torch.Generator] | None = None,
    ) -> dict:
        """queries [B,K,C] from DQS (None: learned `query_feat`), memory [B,S,C] -> output dict (see gem.py).

        Eval mode predicts masks for the last layer only (as the original); training for all.
        `internals` adds "references" (for inspection, see gem.py).
        """
        tgt, anchors = self._initial(queries, memory.shape[0])
        dn = None
        if self.training and targets is not None and self.cfg.dn != "none":
            dn = build_dn_queries(
                targets,
                self.label_enc,
                self.cfg.dn_num,
                self.cfg.dn_noise_scale,
                self.cfg.num_classes,
                self.num_queries,
                generators,
            )
        attn_mask = None
        if dn is not None:
            tgt = torch.cat([dn.content.to(tgt.dtype), tgt], dim=1)
            anchors = torch.cat([dn.anchors, anchors], dim=1)
            attn_mask = dn.attn_mask
        train = self.training
        logits, masks = [], []
        lg, mk = self.predict(tgt, mask_fn if train else None)
        logits.append(lg)
        masks.append(mk)
        raw, hs, refs = self.run_layers(tgt, anchors, memory, shapes, attn_mask)
        for i, h in enumerate(hs):
            lg, mk = self.predict(h, mask_fn if train or i == len(hs) - 1 else None)
            logits.append(lg)
            masks.append(mk)
        boxes = [refs[0]] + [(self.bbox_embed(h) + inverse_sigmoid(r)).sigmoid() for h, r in zip(hs, refs[:-1])]
        if dn is None and train:
            # keeps label_enc in the graph (DDP needs every parameter to get a gradient)
            logits[-1] = logits[-1] + 0.0 * self.label_enc.weight.sum()
        out: dict = {"dn_outputs": None}
        if dn is not None:
            p = dn.content.shape[1]
            out["dn_outputs"] = _bundle(
                [x[:, :p] for x in logits],
                [x[:, :p] if x is not None else None for x in masks],
                [x[:, :p] for x in boxes],
            )
            out["dn_outputs"].update(scalar=dn.scalar, single_pad=dn.single_pad)
            logits = [x[:, p:] for x in logits]
            masks = [x[:, p:] if x is not None else None for x in masks]
            boxes = [x[:, p:] for x in boxes]
            refs = [x[:, p:] for x in refs]
        out.update(_bundle(logits, masks, boxes))
        if internals:  # [0] = sigmoid(anchors), [l] = the boxes refined by layer l
            out["references"] = torch.stack([r.detach() for r in refs], dim=1)  # B x (L+1) x Q x 4
        return out


def _bundle(logits: list[Tensor], masks: list[Tensor | None], boxes: list[Tensor]) -> dict:
    """Last prediction as the main output, the others (initial + layers 1..L-1) as aux_outputs."""
    aux = [{"pred_logits": a, "pred_masks": m, "pred_boxes": c} for a, m, c in zip(logits[:-1], masks[:-1], boxes[:-1])]
    return {"pred_logits": logits[-1], "pred_masks": masks[-1], "pred_boxes": boxes[-1], "aux_outputs": aux}


__all__ = [
    "DNQueries",
    "DecoderLayer",
    "GEMDecoder",
    "MLP",
    "build_dn_queries",
    "dn_attn_mask",
    "inverse_sigmoid",
    "sine_embed",
]
