"""Image encoders: a normalised image [B,3,H,W] (H, W multiples of 32) → features for the GEM head.

One file per encoder family (tinyvit.py, sam_vit.py, efficientnet.py, dinov2.py, debug.py) holds the
architecture, its pure state-dict converters and its registered builders (registry.py). Every encoder
returns either
- one stride-16 map Tensor [B, C, H/16, W/16] and has `out_channels: int` (256 for the SAM-style necks);
  the head builds the simple feature pyramid from it (`cfg.encoder_features == "pyramid"`), or
- a dict {"res2","res3","res4","res5"} of maps at strides 4/8/16/32 and has `out_channels: dict[str,int]`
  (`cfg.encoder_features == "native"`, CNN encoders only).

Pixel normalisation (cfg.pixel_mean/std) happens in GEM, not here. Module attribute names equal the
original GEM backbone's, so its `backbone.<name>` keys are this module's `<name>` keys (the ViT-B
`mlp.lin1/lin2` names are renamed by `sam_vit.sam_to_timm_key`).
"""

from __future__ import annotations

from .registry import (
    FEATURE_MODES,
    EncoderSpec,
    WeightSource,
    build_encoder,
    encoder_spec,
    list_encoders,
    register_encoder,
    spec_of,
)

__all__ = [
    "FEATURE_MODES",
    "EncoderSpec",
    "WeightSource",
    "build_encoder",
    "encoder_spec",
    "list_encoders",
    "register_encoder",
    "spec_of",
]
