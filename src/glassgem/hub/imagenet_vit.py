"""ImageNet weights for the ViT encoders (GEM-Tiny's TinyViT-5M, GEM-Base's ViT-B) from timm-format files.

None ship offline, so the user passes the file (`encoder_init=imagenet encoder_weights=FILE`):
- TinyViT: timm `tiny_vit_5m_224.*` (e.g. `timm/tiny_vit_5m_224.dist_in22k_ft_in1k`, model.safetensors).
  timm's `stages.{i}` with the downsample at the start of stages 1-3 become MobileSAM's `layers.{i}` with the
  downsample at the end of layers 0-2; `ConvNorm.conv` becomes `Conv2d_BN.c`; the classifier is dropped.
- ViT-B: timm `vit_base_patch16_*` (ImageNet-1k/21k ViT-B/16). Same block names as timm's SAM ViT-B; the
  class token is dropped and the 14x14 (or other) position grid is resized (bicubic) to the encoder's.
  The windowed/global relative-position tables have no ImageNet counterpart and stay at their init.
Either way the SAM neck (Conv1x1-LN-Conv3x3-LN to 256 channels) is not in an ImageNet file and starts at
random, as in the paper's ImageNet row. Shapes are checked tensor by tensor.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from ..model.encoders.sam_vit import SamViTEncoder
from ..model.encoders.tinyvit import TinyViT
from .encoders import EncoderLoadReport, _resize_pos_embed
from .files import read_weights
from .encoders import EncoderLoadReport, _resize_pos_embed

TIMM_NAMES = {
    "tinyvit": "timm's tiny_vit_5m_224 ImageNet weights (e.g. timm/tiny_vit_5m_224.dist_in22k_ft_in1k, "
    "its model.safetensors)",
    "sam_vit_b": "timm's vit_base_patch16 ImageNet weights (e.g. timm/vit_base_patch16_224.augreg2_in21k_ft_in1k, "
    "its model.safetensors)",
}
_CLASSIFIER = ("head.", "norm.", "fc_norm.", "cls_token", "reg_token", "head_drop.")


def _tinyvit_key(key: str) -> str | None:
    """timm TinyViT name -> MobileSAM/glassgem TinyViT name (None: the classifier, dropped)."""
    if key.startswith("head."):
        return None
    key = key.replace(".conv.", ".c.")  # timm ConvNorm(conv, bn) -> Conv2d_BN(c, bn)
    key = re.sub(r"^patch_embed\.conv1\.", "patch_embed.seq.0.", key)
    key = re.sub(r"^patch_embed\.conv2\.", "patch_embed.seq.2.", key)
    m = re.match(r"^stages\.(\d+)\.downsample\.(.*)$", key)
    if m:
        return f"layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}"
    return re.sub(r"^stages\.", "layers.", key)


def _vit_b_key(key: str) -> str | None:
    return None if key.startswith(_CLASSIFIER) else key


def _fit_pos_embed(value: Tensor, want: tuple[int, ...], source: str) -> Tensor:
    """timm ViT (1, [1+]N, C) tokens -> (1, h, w, C) grid at the encoder's size."""
    tokens = value.shape[1]
    side = int(round((tokens - 1) ** 0.5))
    if side * side == tokens - 1:
        value = value[:, 1:]  # the class token's position
    else:
        side = int(round(tokens**0.5))
        if side * side != tokens:
            raise CheckpointError(f"{source}: pos_embed has {tokens} tokens, not a square grid")
    grid = value.reshape(1, side, side, value.shape[-1])
    return grid if tuple(grid.shape) == want else _resize_pos_embed(grid, want[1:3])


def _kind(encoder: nn.Module) -> str:
    if isinstance(encoder, TinyViT):
        return "tinyvit"
    if isinstance(encoder, SamViTEncoder):
        return "sam_vit_b"
    raise CheckpointError(f"ImageNet ViT weights need a TinyViT or ViT-B encoder, got {type(encoder).__name__}")


def _looks_like(sd: dict[str, Tensor]) -> str:
    if "patch_embed.conv1.conv.weight" in sd:
        return "tinyvit"
    w = sd.get("patch_embed.proj.weight")
    if w is not None and "pos_embed" in sd and sd["pos_embed"].dim() == 3:
        return "sam_vit_b" if w.shape[0] == 768 else f"a timm ViT of width {w.shape[0]}"
    if any(k.startswith("image_encoder.") for k in sd):
        return "a SAM/MobileSAM checkpoint (use encoder_init=sam)"
    return f"not a timm ImageNet ViT file (keys like {', '.join(list(sd)[:3])})"


def load_imagenet_vit_weights(
    encoder: nn.Module, path_or_state_dict: str | Path | dict[str, Tensor]
) -> EncoderLoadReport:
    """Load timm ImageNet weights into a glassgem TinyViT or ViT-B encoder; the report lists what stayed at
    init (the neck, ViT-B rel-pos tables). CheckpointError names the file when it is another model."""
    kind = _kind(encoder)
    if isinstance(path_or_state_dict, dict):
        source, sd = "state dict", path_or_state_dict
    else:
        source, sd = str(path_or_state_dict), read_weights(path_or_state_dict)
    found = _looks_like(sd)
    if found != kind:
        want = "TinyViT-5M" if kind == "tinyvit" else "ViT-B/16"
        raise CheckpointError(
            f"{source}: the encoder is {want}, which needs {TIMM_NAMES[kind]}; this file is "
            f"{found if found not in TIMM_NAMES else 'for the other encoder'}"
        )
    rename = _tinyvit_key if kind == "tinyvit" else _vit_b_key
    own = encoder.state_dict()
    report = EncoderLoadReport(source=source)
    to_load: dict[str, Tensor] = {}
    for key, value in sd.items():
        name = rename(key)
        if name is None:
            report.discarded.append(key)
            continue
        if name not in own:
            report.unexpected.append(key)
            continue
        want = tuple(own[name].shape)
        if name == "pos_embed" and tuple(value.shape) != want:
            fitted = _fit_pos_embed(value, want, source)
            report.resized[name] = (tuple(value.shape), want)
            value = fitted
        if tuple(value.shape) != want:
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(value.shape)} but the encoder's {name} "
                f"expects {want}; is this {TIMM_NAMES[kind].split(' (')[0]}?"
            )
        to_load[name] = value.to(own[name].dtype)
    if report.unexpected:
        raise CheckpointError(
            f"{source}: {len(report.unexpected)} tensors have no place in the encoder "
            f"(e.g. {', '.join(report.unexpected[:3])}); is this {TIMM_NAMES[kind].split(' (')[0]}?"
        )
    with torch.no_grad():
        encoder.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    report.missing = sorted(k for k in own if k not in to_load and not k.endswith("num_batches_tracked"))
    return report


__all__ = ["TIMM_NAMES", "load_imagenet_vit_weights"]
