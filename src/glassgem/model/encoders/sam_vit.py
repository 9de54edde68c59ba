"""SAM ViT-B image encoder (GEM-Base), from timm's `VisionTransformerSAM`.

Built like GEM-Base's original backbone (docs/original.md#gem-base-backbone): img_size 384 → `pos_embed` [1,24,24,768],
windowed blocks' rel-pos tables [27,64], global blocks' (2, 5, 8, 11) [47,64], LayerNorm eps 1e-6, SAM neck to
256 channels. Any input whose sides are multiples of 32 works: timm resamples `pos_embed` to the token grid
(bicubic) and linearly resizes the global rel-pos tables to 2·max(h,w)−1 rows at run time.

The parameter names equal the original's except SAM's `mlp.lin1/lin2`, which timm calls `mlp.fc1/fc2`;
`sam_to_timm_key` / `timm_to_sam_key` convert. The converters `from_sam` (SAM's `sam_vit_b_01ec64.pth`)
and `from_timm_imagenet` (timm `vit_base_patch16_*`) fit a file's position tensors to the encoder's size.
"""

from __future__ import annotations

from functools import partial
from typing import TypedDict

import torch
import torch.nn.functional as F
from timm.models.vision_transformer_sam import VisionTransformerSAM
from torch import Tensor, nn

from ...errors import CheckpointError
from .convert import Converted, StateDict, WeightSource, rename_and_fit
from .registry import register_encoder


class SamViTArgs(TypedDict):
    """The VisionTransformerSAM arguments that make it SAM's ViT-B."""

    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    qkv_bias: bool
    use_abs_pos: bool
    use_rel_pos: bool
    window_size: int
    global_attn_indexes: tuple[int, ...]
    neck_chans: int


# SAM ViT-B (segment-anything build_sam_vit_b) at GEM's 384² input.
SAM_VIT_B_ARGS: SamViTArgs = {
    "patch_size": 16,
    "embed_dim": 768,
    "depth": 12,
    "num_heads": 12,
    "mlp_ratio": 4.0,
    "qkv_bias": True,
    "use_abs_pos": True,
    "use_rel_pos": True,
    "window_size": 14,
    "global_attn_indexes": (2, 5, 8, 11),
    "neck_chans": 256,
}
SAM_VIT_B_IMG_SIZE = 384

# SAM ↔ timm parameter-name differences (everything else is identical).
_SAM_TO_TIMM = (("mlp.lin1.", "mlp.fc1."), ("mlp.lin2.", "mlp.fc2."))


def sam_to_timm_key(key: str) -> str:
    """`blocks.3.mlp.lin1.weight` (SAM / original GEM) → `blocks.3.mlp.fc1.weight` (this module)."""
    for sam, timm_name in _SAM_TO_TIMM:
        key = key.replace(sam, timm_name)
    return key


def timm_to_sam_key(key: str) -> str:
    """Inverse of `sam_to_timm_key`."""
    for sam, timm_name in _SAM_TO_TIMM:
        key = key.replace(timm_name, sam)
    return key


class SamViTEncoder(VisionTransformerSAM):
    """SAM ViT-B: normalised B×3×H×W (H, W multiples of 32) → B×256×H/16×W/16 (the neck output)."""

    encoder_name = "sam_vit_b"

    def __init__(self, img_size: int = SAM_VIT_B_IMG_SIZE, drop_path_rate: float = 0.0) -> None:
        super().__init__(
            img_size=img_size,
            num_classes=0,  # no classifier head: no head parameters in the state dict
            drop_path_rate=drop_path_rate,
            # SAM's eps (timm's class default is 1e-5). timm annotates norm_layer as a class but calls it, and
            # passes partials itself (its own embed_layer default is one).
            norm_layer=partial(nn.LayerNorm, eps=1e-6),  # type: ignore[arg-type]
            **SAM_VIT_B_ARGS,
        )
        self.out_channels = SAM_VIT_B_ARGS["neck_chans"]

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % 32 or x.shape[3] % 32:
            raise ValueError(f"SAM ViT-B expects B×3×H×W with H, W multiples of 32, got {tuple(x.shape)}")
        return self.forward_features(x)  # B×256×H/16×W/16


def build_sam_vit_b(drop_path_rate: float = 0.0, img_size: int = SAM_VIT_B_IMG_SIZE) -> SamViTEncoder:
    return SamViTEncoder(img_size=img_size, drop_path_rate=drop_path_rate)


# ------------------------------------------------------------------ converters (pure: tensors in, tensors out)
VIT_POS_INITS = ("interpolate", "drop")
_CLASSIFIER = ("head.", "norm.", "fc_norm.", "cls_token", "reg_token", "head_drop.")  # timm ImageNet ViT


def resize_rel_pos(table: Tensor, rows: int) -> Tensor:
    """(L, C) relative-position table → (rows, C), linear as SAM's own `get_rel_pos` resizes it."""
    return F.interpolate(table.float().T[None], size=rows, mode="linear")[0].T.to(table.dtype)


def resize_pos_embed(pos: Tensor, grid: tuple[int, int]) -> Tensor:
    """(1, h, w, C) absolute position embedding → (1, *grid, C), bicubic (antialiased when shrinking)."""
    x = pos.float().permute(0, 3, 1, 2)
    x = F.interpolate(x, size=grid, mode="bicubic", align_corners=False, antialias=True)
    return x.permute(0, 2, 3, 1).to(pos.dtype)


def _is_position_key(key: str) -> bool:
    return key == "pos_embed" or key.endswith((".rel_pos_h", ".rel_pos_w"))


def from_sam(sd: StateDict, own: StateDict, vit_pos_init: str = "interpolate") -> Converted:
    """SAM `image_encoder.*` tensors (prefix removed) -> this encoder: SAM names renamed, and position
    tensors of another size fitted: `pos_embed` resized (bicubic) and the rel-pos tables (linear) with
    "interpolate", left at zero (`zeroed`) with "drop" (what the original GEM-Base training did)."""
    if vit_pos_init not in VIT_POS_INITS:
        raise CheckpointError(f"vit_pos_init must be one of {', '.join(VIT_POS_INITS)}, got {vit_pos_init!r}")

    def fit(name: str, value: Tensor, mine: Tensor) -> Tensor | None:
        if not _is_position_key(name):
            return None
        if vit_pos_init == "drop":
            return torch.zeros(mine.shape, dtype=mine.dtype)
        want = tuple(mine.shape)
        return resize_pos_embed(value, (want[1], want[2])) if name == "pos_embed" else resize_rel_pos(value, want[0])

    out = rename_and_fit(sd, own, sam_to_timm_key, fit)
    if vit_pos_init == "drop":
        out.zeroed = sorted(out.resized)
        out.resized = {}
    return out


def _fit_imagenet_pos_embed(name: str, value: Tensor, mine: Tensor) -> Tensor | None:
    """timm ViT (1, [1+]N, C) position tokens -> the encoder's (1, h, w, C) grid."""
    if name != "pos_embed":
        return None
    tokens = value.shape[1]
    side = int(round((tokens - 1) ** 0.5))
    if side * side == tokens - 1:
        value = value[:, 1:]  # the class token's position
    else:
        side = int(round(tokens**0.5))
        if side * side != tokens:
            raise CheckpointError(f"pos_embed has {tokens} tokens, not a square grid")
    grid = value.reshape(1, side, side, value.shape[-1])
    return grid if grid.shape == mine.shape else resize_pos_embed(grid, (mine.shape[1], mine.shape[2]))


def from_timm_imagenet(sd: StateDict, own: StateDict) -> Converted:
    """timm `vit_base_patch16_*` ImageNet tensors -> this encoder: the classifier and class token
    dropped, the position grid resized; the rel-pos tables and the neck have no ImageNet counterpart."""
    return rename_and_fit(sd, own, lambda k: None if k.startswith(_CLASSIFIER) else k, _fit_imagenet_pos_embed)


def _vit_b_width(sd: StateDict) -> bool:
    w = sd.get("patch_embed.proj.weight")
    return w is not None and w.shape[0] == SAM_VIT_B_ARGS["embed_dim"]


@register_encoder(
    "sam_vit_b",
    weights=(
        WeightSource("sam", from_sam, "SAM's sam_vit_b_01ec64.pth", _vit_b_width),
        WeightSource(
            "imagenet",
            from_timm_imagenet,
            "timm's vit_base_patch16 ImageNet weights (e.g. timm/vit_base_patch16_224.augreg2_in21k_ft_in1k, "
            "its model.safetensors)",
            lambda sd: _vit_b_width(sd) and "pos_embed" in sd and sd["pos_embed"].dim() == 3,
        ),
    ),
    from_sam_key=sam_to_timm_key,
    to_sam_key=timm_to_sam_key,
)
def build_sam_vit_b_encoder(drop_path_rate: float = 0.0, image_size: int = SAM_VIT_B_IMG_SIZE) -> SamViTEncoder:
    """SAM ViT-B (GEM-Base), random weights. The stored pos-embed grid is image_size/16 (24×24 at the
    original 384; 64×64 at 1024 matches SAM's own); other input sizes resample it at run time."""
    if image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32, got {image_size}")
    return build_sam_vit_b(drop_path_rate, img_size=image_size)


__all__ = [
    "SAM_VIT_B_IMG_SIZE",
    "VIT_POS_INITS",
    "SamViTEncoder",
    "build_sam_vit_b",
    "from_sam",
    "from_timm_imagenet",
    "resize_pos_embed",
    "resize_rel_pos",
    "sam_to_timm_key",
    "timm_to_sam_key",
]
