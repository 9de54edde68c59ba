"""SAM ViT-B image encoder (GEM-Base), from timm's `VisionTransformerSAM`.

Built like GEM-Base's original backbone (docs/original.md#gem-base-backbone): img_size 384 → `pos_embed` [1,24,24,768],
windowed blocks' rel-pos tables [27,64], global blocks' (2, 5, 8, 11) [47,64], LayerNorm eps 1e-6, SAM neck to
256 channels. Any input whose sides are multiples of 32 works: timm resamples `pos_embed` to the token grid
(bicubic) and linearly resizes the global rel-pos tables to 2·max(h,w)−1 rows at run time.

The parameter names equal the original's except SAM's `mlp.lin1/lin2`, which timm calls `mlp.fc1/fc2`;
`sam_to_timm_key` / `timm_to_sam_key` convert (checkpoint loaders use them).
"""

from __future__ import annotations

from functools import partial

from timm.models.vision_transformer_sam import VisionTransformerSAM
from torch import Tensor, nn

# SAM ViT-B (segment-anything build_sam_vit_b) at GEM's 384² input.
SAM_VIT_B_ARGS = dict(
    patch_size=16,
    embed_dim=768,
    depth=12,
    num_heads=12,
    mlp_ratio=4.0,
    qkv_bias=True,
    use_abs_pos=True,
    use_rel_pos=True,
    window_size=14,
    global_attn_indexes=(2, 5, 8, 11),
    neck_chans=256,
)
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

    def __init__(self, img_size: int = SAM_VIT_B_IMG_SIZE, drop_path_rate: float = 0.0) -> None:
        super().__init__(
            img_size=img_size,
            num_classes=0,  # no classifier head: no head parameters in the state dict
            drop_path_rate=drop_path_rate,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),  # SAM's eps (timm's class default is 1e-5)
            **SAM_VIT_B_ARGS,
        )
        self.out_channels = SAM_VIT_B_ARGS["neck_chans"]

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % 32 or x.shape[3] % 32:
            raise ValueError(f"SAM ViT-B expects B×3×H×W with H, W multiples of 32, got {tuple(x.shape)}")
        return self.forward_features(x)  # B×256×H/16×W/16


def build_sam_vit_b(drop_path_rate: float = 0.0, img_size: int = SAM_VIT_B_IMG_SIZE) -> SamViTEncoder:
    return SamViTEncoder(img_size=img_size, drop_path_rate=drop_path_rate)


__all__ = ["SamViTEncoder", "build_sam_vit_b", "sam_to_timm_key", "timm_to_sam_key", "SAM_VIT_B_IMG_SIZE"]
