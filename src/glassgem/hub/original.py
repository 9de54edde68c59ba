"""The key map between original GEM (detectron2 + MaskDINO) checkpoints and glassgem.

Original (detectron2 + MaskDINO) layout -> glassgem `GEM` module names:

    backbone.transpose{1,2}.*                      pyramid.transpose{1,2}.*
    backbone.*                                     encoder.*   (renamed by the encoder family: ViT-B SAM -> timm)
    sem_seg_head.pixel_decoder.*                   pixel_decoder.*
    sem_seg_head.predictor.query_proposal.*        query_selection.*
    sem_seg_head.predictor.decoder.norm.*          decoder.decoder_norm.*   (alias of decoder_norm)
    sem_seg_head.predictor.{decoder.bbox_embed.N, bbox_embed.N, _bbox_embed}.*
                                                   decoder.bbox_embed.*     (one shared MLP)
    sem_seg_head.predictor.decoder.*               decoder.*
    sem_seg_head.predictor.*                       decoder.*
    criterion.empty_weight                         (ignored: a loss constant)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..errors import CheckpointError
from ..model.encoders import encoder_spec

# --------------------------------------------------------------------------------- key map

_HEAD = "sem_seg_head.predictor."
_BBOX_ALIASES = re.compile(r"^sem_seg_head\.predictor\.(?:decoder\.bbox_embed\.\d+|bbox_embed\.\d+|_bbox_embed)\.")
_RULES: list[tuple[str, str]] = [  # (original prefix, glassgem prefix), first match wins
    ("backbone.transpose", "pyramid.transpose"),
    ("sem_seg_head.pixel_decoder.", "pixel_decoder."),
    (_HEAD + "query_proposal.", "query_selection."),
    (_HEAD + "decoder.norm.", "decoder.decoder_norm."),
    (_HEAD + "decoder.", "decoder."),
    (_HEAD, "decoder."),
]
IGNORED_ORIGINAL = ("criterion.",)


def is_original_format(sd: dict[str, Tensor]) -> bool:
    return any(k.startswith(("sem_seg_head.", "backbone.")) for k in sd)


def original_encoder_kind(sd: dict[str, Tensor]) -> str | None:
    """'tinyvit' (MobileSAM TinyViT keys), 'sam_vit_b' (SAM ViT keys) or None."""
    if any(k.startswith("backbone.layers.") for k in sd):
        return "tinyvit"
    if any(k.startswith("backbone.blocks.") for k in sd):
        return "sam_vit_b"
    return None


def _encoder_renames(encoder: str) -> tuple[Callable[[str], str], Callable[[str], str]]:
    """(original -> glassgem, glassgem -> original) renames of a key inside the encoder: the original
    backbones keep SAM's names, which the encoder's family renames (ViT-B: SAM lin1/lin2 = timm fc1/fc2).
    The family file is imported on first use, so only a SAM checkpoint imports the ViT-B's (and timm)."""
    spec = encoder_spec(encoder)
    return spec.from_sam_key, spec.to_sam_key


def original_key_to_glassgem(key: str, encoder: str = "tinyvit") -> str | None:
    """One original key -> its glassgem name (None for keys glassgem does not keep)."""
    if key.startswith(IGNORED_ORIGINAL):
        return None
    m = _BBOX_ALIASES.match(key)
    if m:
        return "decoder.bbox_embed." + key[m.end() :]
    for old, new in _RULES:
        if key.startswith(old):
            return new + key[len(old) :]
    if key.startswith("backbone."):
        return "encoder." + _encoder_renames(encoder)[0](key[len("backbone.") :])
    return None


def original_to_glassgem(sd: dict[str, Tensor], encoder: str | None = None) -> tuple[dict[str, Tensor], list[str]]:
    """Rename an original state dict. -> (glassgem state dict, original keys that were dropped).

    Aliases of one module (the shared box MLP, decoder.norm) collapse into one key; if a checkpoint
    holds different values under two aliases, the canonical `decoder.bbox_embed.0` / `decoder_norm` wins.
    """
    encoder = encoder or original_encoder_kind(sd) or "tinyvit"
    out: dict[str, Tensor] = {}
    dropped: list[str] = []
    canonical = (_HEAD + "decoder.bbox_embed.0.", _HEAD + "decoder_norm.")
    for key in sorted(sd, key=lambda k: not k.startswith(canonical)):  # canonical names first
        new = original_key_to_glassgem(key, encoder)
        if new is None:
            dropped.append(key)
        elif new not in out:
            out[new] = sd[key]
    return out, dropped


def glassgem_to_original(
    sd: dict[str, Tensor], encoder: str, dec_layers: int, num_classes: int = 2, eos_coef: float = 0.1
) -> dict[str, Tensor]:
    """The reverse map, writing every alias the original state dict has (and criterion.empty_weight)."""
    to_orig = _encoder_renames(encoder)[1]
    out: dict[str, Tensor] = {}
    for key, v in sd.items():
        if key.startswith("encoder."):
            out["backbone." + to_orig(key[len("encoder.") :])] = v
        elif key.startswith("pyramid."):
            out["backbone." + key[len("pyramid.") :]] = v
        elif key.startswith("pixel_decoder."):
            out["sem_seg_head." + key] = v
        elif key.startswith("query_selection."):
            out[_HEAD + "query_proposal." + key[len("query_selection.") :]] = v
        elif key.startswith("decoder.bbox_embed."):
            rest = key[len("decoder.bbox_embed.") :]
            for i in range(dec_layers):
                out[f"{_HEAD}decoder.bbox_embed.{i}.{rest}"] = v
                out[f"{_HEAD}bbox_embed.{i}.{rest}"] = v
            out[f"{_HEAD}_bbox_embed.{rest}"] = v
        elif key.startswith("decoder.decoder_norm."):
            rest = key[len("decoder.decoder_norm.") :]
            out[f"{_HEAD}decoder_norm.{rest}"] = v
            out[f"{_HEAD}decoder.norm.{rest}"] = v
        elif key.startswith(("decoder.layers.", "decoder.ref_point_head.")):
            out[_HEAD + "decoder." + key[len("decoder.") :]] = v
        elif key.startswith("decoder."):
            out[_HEAD + key[len("decoder.") :]] = v
        else:
            raise KeyError(f"no original name for glassgem key {key!r}")
    weight = torch.ones(num_classes + 1)
    weight[-1] = eos_coef
    out["criterion.empty_weight"] = weight
    return out


def infer_config_overrides(sd: dict[str, Tensor]) -> dict[str, Any]:
    """Model-config fields read off an original state dict (encoder, queries, layers, widths)."""
    enc = original_encoder_kind(sd)
    if enc is None:
        raise CheckpointError("no backbone.layers.* (TinyViT) or backbone.blocks.* (SAM ViT-B) keys")
    layer_ids = {int(m.group(1)) for k in sd if (m := re.match(_HEAD + r"decoder\.layers\.(\d+)\.", k))}
    fields: dict[str, Any] = {"encoder": enc, "name": "gem-tiny" if enc == "tinyvit" else "gem-base"}
    if layer_ids:
        fields["dec_layers"] = max(layer_ids) + 1
    if (q := sd.get(_HEAD + "query_embed.weight")) is not None:
        fields["num_queries"] = int(q.shape[0])
    if (c := sd.get(_HEAD + "class_embed.weight")) is not None:
        fields["num_classes"] = int(c.shape[0]) - 1
        fields["hidden_dim"] = int(c.shape[1])
    if (f := sd.get(_HEAD + "decoder.layers.0.linear1.weight")) is not None:
        fields["dim_feedforward"] = int(f.shape[0])
    fields["use_dqs"] = any(k.startswith(_HEAD + "query_proposal.") for k in sd)
    return fields


__all__ = [
    "IGNORED_ORIGINAL",
    "glassgem_to_original",
    "infer_config_overrides",
    "is_original_format",
    "original_encoder_kind",
    "original_key_to_glassgem",
    "original_to_glassgem",
]
