"""ImageNet weights for the ViT encoders (GEM-Tiny's TinyViT-5M, GEM-Base's ViT-B) from timm-format files.

None ship offline, so the user passes the file (`encoder_init=imagenet encoder_weights=FILE`): timm
`tiny_vit_5m_224.*` for TinyViT, timm `vit_base_patch16_*` for ViT-B (each encoder's registry entry names
its file). This module reads the file and hands it to the family's "imagenet" converter, which renames the
tensors and fits the position grid; the SAM neck (and ViT-B's relative-position tables) are not in an
ImageNet file and stay at their random init, as in the paper's ImageNet row. Shapes are checked tensor by
tensor.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from ..model.encoders import encoder_spec, list_encoders
from ..model.encoders.convert import WeightSource
from .encoders import EncoderLoadReport, load_converted, read_state_dict, weight_source_of


def imagenet_file(encoder: str) -> str | None:
    """What ImageNet file encoder `encoder` needs (`encoder_weights`), or None when it needs none."""
    source = encoder_spec(encoder).weight_source("imagenet")
    return source.file if source else None


def _looks_like(sd: dict[str, Tensor], own: str) -> str:
    """What a file that is not `own`'s ImageNet file is, for the error message."""
    for name in list_encoders():
        source = encoder_spec(name).weight_source("imagenet")
        if name != own and source and source.recognise and source.recognise(sd):
            return f"for the {name} encoder"
    if any(k.startswith("image_encoder.") for k in sd):
        return "a SAM/MobileSAM checkpoint (use encoder_init=sam)"
    w = sd.get("patch_embed.proj.weight")
    if w is not None and "pos_embed" in sd:
        return f"a timm ViT of width {w.shape[0]}"
    return f"not a timm ImageNet ViT file (keys like {', '.join(list(sd)[:3])})"


def _short(source: WeightSource) -> str:
    return (source.file or "").split(" (")[0]


def load_imagenet_vit_weights(
    encoder: nn.Module, path_or_state_dict: str | Path | dict[str, Tensor]
) -> EncoderLoadReport:
    """Load timm ImageNet weights into a glassgem TinyViT or ViT-B encoder; the report lists what stayed at
    init (the neck, ViT-B rel-pos tables). CheckpointError names the file when it is another model."""
    name, source = weight_source_of(encoder, "imagenet", "ImageNet ViT weights")
    src, sd = read_state_dict(path_or_state_dict)
    if source.recognise is not None and not source.recognise(sd):
        raise CheckpointError(
            f"{src}: the encoder is {name}, which needs {source.file}; this file is {_looks_like(sd, name)}"
        )
    try:
        converted = source.convert(sd, encoder.state_dict())
    except CheckpointError as e:
        raise CheckpointError(f"{src}: {e}; is this {_short(source)}?") from None
    if converted.unexpected:
        raise CheckpointError(
            f"{src}: {len(converted.unexpected)} tensors have no place in the encoder "
            f"(e.g. {', '.join(converted.unexpected[:3])}); is this {_short(source)}?"
        )
    with torch.no_grad():
        return load_converted(encoder, converted, src, [])


__all__ = ["imagenet_file", "load_imagenet_vit_weights"]
