"""Image encoders: a normalised image [B,3,H,W] (H, W multiples of 32) → features for the GEM head.

Every encoder returns either
- one stride-16 map Tensor [B, C, H/16, W/16] and has `out_channels: int` (256 for the SAM-family necks);
  the head builds the simple feature pyramid from it (`cfg.encoder_features == "pyramid"`), or
- a dict {"res2","res3","res4","res5"} of maps at strides 4/8/16/32 and has `out_channels: dict[str,int]`
  (`cfg.encoder_features == "native"`, CNN encoders only).

Pixel normalisation (cfg.pixel_mean/std) happens in GEM, not here. Module attribute names equal the
original GEM backbone's, so its `backbone.<name>` keys are this module's `<name>` keys (the ViT-B
`mlp.lin1/lin2` names are renamed by `sam_vit.sam_to_timm_key`).
"""

from __future__ import annotations

from torch import nn

from ...config import ModelConfig
from ...errors import ConfigError

ENCODERS = ("tinyvit", "sam_vit_b", "efficientnet_lite0", "dinov2_vits14", "debug")
# Encoders that can only give the one stride-16 map (ViTs have no native multi-scale features).
_PYRAMID_ONLY = ("tinyvit", "sam_vit_b", "dinov2_vits14")
FEATURE_MODES = ("pyramid", "native")


def build_encoder(cfg: ModelConfig) -> nn.Module:
    """Build the encoder named by `cfg.encoder`, with random weights (pretrained ones: glassgem.hub.encoders)."""
    if cfg.encoder not in ENCODERS:
        raise ConfigError(f"unknown encoder {cfg.encoder!r}; choose one of {', '.join(ENCODERS)}")
    if cfg.encoder_features not in FEATURE_MODES:
        raise ConfigError(
            f"unknown encoder_features {cfg.encoder_features!r}; choose one of {', '.join(FEATURE_MODES)}"
        )
    native = cfg.encoder_features == "native"
    if native and cfg.encoder in _PYRAMID_ONLY:
        raise ConfigError(
            f"encoder_features='native' needs a CNN encoder; {cfg.encoder!r} only gives a stride-16 map "
            "(use encoder_features='pyramid')"
        )
    # Lazy imports: the debug encoder (fast tests) must not pay for importing timm.
    if cfg.encoder == "tinyvit":
        from .tinyvit import TinyViT

        return TinyViT(drop_path_rate=cfg.drop_path_rate)
    if cfg.encoder == "sam_vit_b":
        from .sam_vit import build_sam_vit_b

        if cfg.image_size % 32:
            raise ConfigError(f"image_size must be a multiple of 32, got {cfg.image_size}")
        # The stored pos-embed grid is image_size/16 (24×24 at the original 384; 64×64 at 1024 matches
        # SAM's own); other input sizes resample it at run time.
        return build_sam_vit_b(drop_path_rate=cfg.drop_path_rate, img_size=cfg.image_size)
    if cfg.encoder == "dinov2_vits14":
        from .dinov2 import DinoV2Encoder

        try:
            return DinoV2Encoder(grid_fit=cfg.vit_grid_fit, drop_path_rate=cfg.drop_path_rate)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if cfg.encoder == "efficientnet_lite0":
        from .efficientnet import EfficientNetLite0Encoder

        return EfficientNetLite0Encoder(native=native, drop_path_rate=cfg.drop_path_rate)
    from .debug import DebugEncoder

    return DebugEncoder(cfg.hidden_dim, native=native)


__all__ = ["ENCODERS", "FEATURE_MODES", "build_encoder"]
