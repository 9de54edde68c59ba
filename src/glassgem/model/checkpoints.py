"""Reading weight files safely, and the key map between original GEM checkpoints and glassgem.

Original (detectron2 + MaskDINO) layout -> glassgem `GEM` module names:

    backbone.transpose{1,2}.*                      pyramid.transpose{1,2}.*
    backbone.*                                     encoder.*   (ViT-B: SAM -> timm names)
    sem_seg_head.pixel_decoder.*                   pixel_decoder.*
    sem_seg_head.predictor.query_proposal.*        query_selection.*
    sem_seg_head.predictor.decoder.norm.*          decoder.decoder_norm.*   (alias of decoder_norm)
    sem_seg_head.predictor.{decoder.bbox_embed.N, bbox_embed.N, _bbox_embed}.*
                                                   decoder.bbox_embed.*     (one shared MLP)
    sem_seg_head.predictor.decoder.*               decoder.*
    sem_seg_head.predictor.*                       decoder.*
    criterion.empty_weight                         (ignored: a loss constant)

Files are never unpickled freely: torch files go through `torch.load(weights_only=True)`, detectron2
`.pkl` files through an unpickler that can only rebuild numpy arrays and plain containers.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointError

# --------------------------------------------------------------------------------- reading files

# The only globals a detectron2 weights pickle needs: numpy array reconstruction (numpy 1 and 2 paths).
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLE_ALLOWED or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")


def _to_tensor(v: Any) -> Any:
    if isinstance(v, (np.ndarray, np.generic)):
        arr = np.array(v, copy=True, order="C")  # keeps 0-d arrays 0-d (ascontiguousarray would not)
        return torch.from_numpy(arr)
    return v


def _load_pickle(path: Path) -> Any:
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(f, encoding="latin1").load()


def read_weights(path: str | Path) -> dict[str, Tensor]:
    """A flat {name: tensor} from a .safetensors, torch (.pth/.pt/.bin) or detectron2 (.pkl) file.

    `{"model": ...}` and `{"state_dict": ...}` wrappers are unwrapped. Raises CheckpointError naming the
    file when it is missing, unreadable, or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    with open(path, "rb") as f:
        head = f.read(16)
    is_zip, is_pickle = head.startswith(b"PK"), head[:1] == b"\x80"
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        elif not (is_zip or is_pickle):
            raise CheckpointError(f"{path}: not a checkpoint (neither a torch/zip, pickle nor safetensors file)")
        elif is_pickle and path.suffix == ".pkl":
            obj = _load_pickle(path)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        # torch's weights_only refusal is a long essay; its last line names the offending global
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "GLOBAL" in ln or "refusing" in ln), lines[0] if lines else "")
        raise CheckpointError(f"{path}: refused to unpickle (only plain tensors/arrays are loaded safely): "
                              f"{why.strip()[:300]}") from None
    except Exception as e:  # corrupt zip, truncated file, ...
        msg = str(e).splitlines()[0][:300] if str(e) else ""
        raise CheckpointError(f"{path}: cannot read weights, file corrupt or truncated ({type(e).__name__}: {msg})") from None
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a weights file (found a {type(obj).__name__}, expected a dict of tensors)")
    sd = {k: _to_tensor(v) for k, v in obj.items() if isinstance(k, str)}
    sd = {k: v for k, v in sd.items() if isinstance(v, Tensor)}
    if not sd:
        raise CheckpointError(f"{path}: holds no tensors")
    return sd


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
    """(original -> glassgem, glassgem -> original) renames of a key inside the encoder."""
    if encoder == "sam_vit_b":
        from .encoders.sam_vit import sam_to_timm_key, timm_to_sam_key  # SAM lin1/lin2 = timm fc1/fc2

        return sam_to_timm_key, timm_to_sam_key
    return (lambda k: k), (lambda k: k)


def original_key_to_glassgem(key: str, encoder: str = "tinyvit") -> str | None:
    """One original key -> its glassgem name (None for keys glassgem does not keep)."""
    if key.startswith(IGNORED_ORIGINAL):
        return None
    m = _BBOX_ALIASES.match(key)
    if m:
        return "decoder.bbox_embed." + key[m.end():]
    for old, new in _RULES:
        if key.startswith(old):
            return new + key[len(old):]
    if key.startswith("backbone."):
        return "encoder." + _encoder_renames(encoder)[0](key[len("backbone."):])
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


def glassgem_to_original(sd: dict[str, Tensor], encoder: str, dec_layers: int,
                         num_classes: int = 2, eos_coef: float = 0.1) -> dict[str, Tensor]:
    """The reverse map, writing every alias the original state dict has (and criterion.empty_weight)."""
    to_orig = _encoder_renames(encoder)[1]
    out: dict[str, Tensor] = {}
    for key, v in sd.items():
        if key.startswith("encoder."):
            out["backbone." + to_orig(key[len("encoder."):])] = v
        elif key.startswith("pyramid."):
            out["backbone." + key[len("pyramid."):]] = v
        elif key.startswith("pixel_decoder."):
            out["sem_seg_head." + key] = v
        elif key.startswith("query_selection."):
            out[_HEAD + "query_proposal." + key[len("query_selection."):]] = v
        elif key.startswith("decoder.bbox_embed."):
            rest = key[len("decoder.bbox_embed."):]
            for i in range(dec_layers):
                out[f"{_HEAD}decoder.bbox_embed.{i}.{rest}"] = v
                out[f"{_HEAD}bbox_embed.{i}.{rest}"] = v
            out[f"{_HEAD}_bbox_embed.{rest}"] = v
        elif key.startswith("decoder.decoder_norm."):
            rest = key[len("decoder.decoder_norm."):]
            out[f"{_HEAD}decoder_norm.{rest}"] = v
            out[f"{_HEAD}decoder.norm.{rest}"] = v
        elif key.startswith(("decoder.layers.", "decoder.ref_point_head.")):
            out[_HEAD + "decoder." + key[len("decoder."):]] = v
        elif key.startswith("decoder."):
            out[_HEAD + key[len("decoder."):]] = v
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


def describe_keys(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def state_dict_bytes(sd: dict[str, Tensor]) -> bytes:
    """safetensors bytes of a state dict; tensors that share storage are copied apart (safetensors
    refuses aliases) and everything is made contiguous."""
    from safetensors.torch import save

    seen: set[tuple[int, int]] = set()
    flat: dict[str, Tensor] = {}
    for k, v in sd.items():
        v = v.detach().cpu()
        ptr = (v.untyped_storage().data_ptr(), v.untyped_storage().nbytes())
        if ptr in seen or not v.is_contiguous() or v.untyped_storage().nbytes() != v.numel() * v.element_size():
            v = v.clone().contiguous()
        seen.add((v.untyped_storage().data_ptr(), v.untyped_storage().nbytes()))
        flat[k] = v
    return save(flat)


def convert(src: str | Path, dst: str | Path) -> dict[str, Any]:
    """Original GEM checkpoint file -> glassgem directory (config.json + model.safetensors)."""
    from .gem import GEM

    if not is_original_format(read_weights(src)):
        raise CheckpointError(f"{src}: not an original GEM checkpoint (no backbone.* / sem_seg_head.* keys); "
                              "glassgem directories load directly with GEM.from_pretrained")
    model = GEM.from_pretrained(src)
    model.save_pretrained(dst)
    return {"encoder": model.cfg.encoder, "tensors": len(model.state_dict()),
            "parameters": sum(p.numel() for p in model.parameters())}


__all__ = ["IGNORED_ORIGINAL", "convert", "describe_keys", "glassgem_to_original", "infer_config_overrides",
           "is_original_format", "original_encoder_kind", "original_key_to_glassgem", "original_to_glassgem",
           "read_weights", "state_dict_bytes"]
