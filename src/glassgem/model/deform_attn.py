"""Multi-scale deformable attention (Deformable-DETR), pure PyTorch.

Each query looks at `n_points` locations per head and per feature level around its reference box and
takes a softmax-weighted sum of the bilinearly sampled values there. Two exact implementations:

- `sample_grid` follows the original pure-PyTorch path literally: `value_proj` on every memory token,
  one `grid_sample` (align_corners=False, zero padding, grid = 2·loc − 1) per level, weighted sum.
  Export-friendly and the reference the tests compare against.
- `sample_bag` (the default) is the same sum written as one `embedding_bag`: every (query, head) is a
  bag of L·P·4 memory rows (the 4 bilinear corners of every sample) weighted by
  attention × bilinear weight. Because bilinear sampling and the weighted sum are linear, the per-head
  value projection is applied *after* sampling (on 100 queries instead of on all 3,024 memory tokens):
  W_h·Σ w_i m_i + b_h·Σ w_i. That removes ~90% of the layer's FLOPs; the result differs from the
  literal order only by float rounding (~1e-6).

Corner weights and coordinates are always computed in fp32 (a bf16 coordinate cannot address a 96-px
grid to better than a pixel); the gathered values stay in the memory's dtype. Memory padding masks are
not supported: GEM never pads the feature maps (valid ratios are all 1).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMPLS = ("bag", "grid_sample")


def level_starts(shapes: list[tuple[int, int]]) -> list[int]:
    """Offsets of each level in the flattened memory: [0, H0·W0, H0·W0 + H1·W1, ...]."""
    starts, total = [], 0
    for h, w in shapes:
        starts.append(total)
        total += h * w
    return starts


def sample_grid(value: Tensor, shapes: list[tuple[int, int]], loc: Tensor, attn: Tensor) -> Tensor:
    """The original's computation. value [B,S,M,D], loc [B,Q,M,L,P,2] in [0,1] (x, y),
    attn [B,Q,M,L,P] (softmaxed) -> [B,Q,M·D]."""
    b, _, m, d = value.shape
    _, q, _, n_levels, p, _ = loc.shape
    grids = (2 * loc - 1).to(value.dtype)
    sampled = []
    for lvl, (value_l, (h, w)) in enumerate(zip(value.split([h * w for h, w in shapes], dim=1), shapes)):
        value_l = value_l.flatten(2).transpose(1, 2).reshape(b * m, d, h, w)  # B·M x D x H x W
        grid_l = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # B·M x Q x P x 2
        sampled.append(F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = attn.transpose(1, 2).reshape(b * m, 1, q, n_levels * p).to(value.dtype)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)  # B·M x D x Q
    return out.view(b, m * d, q).transpose(1, 2)


@functools.lru_cache(maxsize=8)
def _bag_constants(
    shapes: tuple[tuple[int, int], ...], loc_shape: tuple[int, ...], rows_per_batch: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample map sizes, first memory rows and widths, materialised at full size and cached.

    Element-wise ops that broadcast a per-level constant over tiny inner dims (P = 4, xy = 2) run
    ~50x slower on CPU than same-shape ones, and every decoder layer asks for the same shapes.
    -> (size [2(w, h), B,Q,M,L,P] float, size - 1, start row [B,Q,M,L,P] int64, width [B,Q,M,L,P] int64).
    """
    b, q, m, n_levels, p, _ = loc_shape
    per_level, full = (1, 1, 1, n_levels, 1), (b, q, m, n_levels, p)
    w = torch.tensor([w for _, w in shapes], dtype=torch.float32, device=device).view(per_level).expand(full)
    h = torch.tensor([h for h, _ in shapes], dtype=torch.float32, device=device).view(per_level).expand(full)
    size = torch.stack([w, h]).contiguous()
    start = torch.tensor(level_starts(list(shapes)), device=device).view(per_level)
    start = start + torch.arange(b, device=device).view(b, 1, 1, 1, 1) * rows_per_batch
    return size, size - 1, start.expand(full).contiguous(), w.long().contiguous()


def bilinear_bags(
    shapes: list[tuple[int, int]], loc: Tensor, attn: Tensor, rows_per_batch: int
) -> tuple[Tensor, Tensor]:
    """Memory-row indices and weights of every (batch, query, head) bag.

    loc [B,Q,M,L,P,2] (x, y) in [0,1], attn [B,Q,M,L,P] -> (index [B·Q·M, 4·L·P] int64 into the
    flattened B·S memory, weight [B·Q·M, 4·L·P] fp32 = attention × bilinear weight, 0 outside the map).
    """
    b, q, m = loc.shape[:3]
    key = tuple((int(h), int(w)) for h, w in shapes)
    size, last, start, width = _bag_constants(key, tuple(loc.shape), rows_per_batch, loc.device)
    # align_corners=False: pixel centres sit at (i + 0.5) / size; x and y handled together as dim 0
    pix = loc.float().permute(5, 0, 1, 2, 3, 4) * size - 0.5  # 2(x, y) x B x Q x M x L x P
    lo = pix.floor()
    frac = pix - lo
    hi = lo + 1
    c_lo = torch.minimum(lo.clamp(min=0), last)
    c_hi = torch.minimum(hi.clamp(min=0), last)
    # zero padding: a corner outside the map weighs nothing (its clamped index is just some valid row)
    w_lo = (1 - frac) * (c_lo == lo)
    w_hi = frac * (c_hi == hi)
    c_lo, c_hi = c_lo.long(), c_hi.long()
    row_lo = start + c_lo[1] * width  # memory row of (y, x=0)
    row_hi = start + c_hi[1] * width
    index = torch.stack([row_lo + c_lo[0], row_lo + c_hi[0], row_hi + c_lo[0], row_hi + c_hi[0]], dim=3)
    a = attn.float()
    wy_lo, wy_hi = w_lo[1] * a, w_hi[1] * a
    weight = torch.stack([wy_lo * w_lo[0], wy_lo * w_hi[0], wy_hi * w_lo[0], wy_hi * w_hi[0]], dim=3)
    return index.reshape(b * q * m, -1), weight.reshape(b * q * m, -1)  # corners x L x P per bag


def sample_bag(
    memory: Tensor, shapes: list[tuple[int, int]], loc: Tensor, attn: Tensor, value_proj: nn.Linear
) -> Tensor:
    """Same result as value_proj + sample_grid, computed as sample-then-project.

    memory [B,S,C], loc [B,Q,M,L,P,2], attn [B,Q,M,L,P] -> [B,Q,M·D] with D = value_proj.out_features / M.
    """
    b, s, c = memory.shape
    _, q, m, _, _, _ = loc.shape
    index, weight = bilinear_bags(shapes, loc, attn, rows_per_batch=s)
    table = memory.reshape(b * s, c).contiguous()  # a strided table is ~20x slower to gather from
    pooled = F.embedding_bag(index, table, per_sample_weights=weight.to(table.dtype), mode="sum")  # B·Q·M x C
    pooled = pooled.view(b * q, m, c).transpose(0, 1)  # M x B·Q x C
    d = value_proj.out_features // m
    w_heads = value_proj.weight.view(m, d, value_proj.in_features)  # M x D x C
    out = torch.bmm(pooled.to(w_heads.dtype), w_heads.transpose(1, 2))  # M x B·Q x D
    if value_proj.bias is not None:
        # each sample carries the bias once per unit of weight that landed inside the map
        mass = weight.view(b * q, m, -1).sum(-1).transpose(0, 1)[..., None]  # M x B·Q x 1
        out = out + mass.to(out.dtype) * value_proj.bias.view(m, 1, d)
    return out.transpose(0, 1).reshape(b, q, m * d)


class MSDeformAttn(nn.Module):
    """Deformable cross-attention of queries over a flattened multi-level memory.

    Parameter names are the original's (`sampling_offsets`, `attention_weights`, `value_proj`,
    `output_proj`) so checkpoints map one to one.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 3, n_heads: int = 8, n_points: int = 4) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.impl = "bag"
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable-DETR init: head h starts looking along direction 2πh/M, point i at distance i+1
        (in units of the reference box half-size), uniform attention, xavier projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        dirs = torch.stack([angles.cos(), angles.sin()], -1)
        dirs = dirs / dirs.abs().max(-1, keepdim=True).values  # on the unit square's border
        grid = dirs.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, query: Tensor, ref_boxes: Tensor, memory: Tensor, shapes: list[tuple[int, int]]) -> Tensor:
        """query [B,Q,C], ref_boxes [B,Q,L,4] or [B,Q,4] (cx, cy, w, h in [0,1]), memory [B,S,C] with
        S = Σ h·w over `shapes` (list of (h, w) per level) -> [B,Q,C]."""
        b, q, _ = query.shape
        m, n_levels, p = self.n_heads, self.n_levels, self.n_points
        if len(shapes) != n_levels:
            raise ValueError(f"memory has {len(shapes)} levels, attention was built for {n_levels}")
        offsets = self.sampling_offsets(query).float()  # B x Q x M·L·P·2
        logits = self.attention_weights(query).view(b, q, m, n_levels * p)
        attn = F.softmax(logits.float(), -1).view(b, q, m, n_levels, p)  # fp32: 12-way softmax is cheap
        # Locations are computed with (x, y) as the leading dim: broadcasting a box over the tiny trailing
        # dims of the original layout is an order of magnitude slower on CPU. Same operation order as the
        # original: ref_xy + off / P · ref_wh · 0.5.
        off = offsets.view(b, q, m, n_levels, p, 2).permute(5, 0, 1, 2, 3, 4)  # 2 x B x Q x M x L x P
        if ref_boxes.dim() == 3:  # one box for all levels (GEM: valid ratios are all 1)
            ref = ref_boxes.float().permute(2, 0, 1)[..., None, None, None]  # 4 x B x Q x 1 x 1 x 1
        else:
            ref = ref_boxes.float().permute(3, 0, 1, 2)[:, :, :, None, :, None]  # 4 x B x Q x 1 x L x 1
        loc = (ref[:2] + off / p * ref[2:] * 0.5).permute(1, 2, 3, 4, 5, 0)  # B x Q x M x L x P x 2 (view)
        if self.impl == "grid_sample":
            value = self.value_proj(memory).view(b, memory.shape[1], m, self.d_model // m)
            out = sample_grid(value, shapes, loc, attn)
        else:
            out = sample_bag(memory, shapes, loc, attn, self.value_proj)
        return self.output_proj(out)


__all__ = ["IMPLS", "MSDeformAttn", "bilinear_bags", "level_starts", "sample_bag", "sample_grid"]
