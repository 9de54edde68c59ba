"""Reading weight files safely, and writing state dicts as safetensors.

Files are never unpickled freely: torch files go through `torch.load(weights_only=True)`, detectron2
`.pkl` files through an unpickler that can only rebuild numpy arrays and plain containers.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save
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
        # torch's weights_only refusal is a long essay: only the line naming the offending global is kept, not
        # its advice to load unsafely (weights_only=False, allow-listing globals), which glassgem never does
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "GLOBAL" in ln or "refusing" in ln), "")
        why = why.split(" Please", 1)[0].strip()[:300] or "the file is damaged or holds more than plain tensors"
        raise CheckpointError(
            f"{path}: refused to unpickle (only plain tensors/arrays are loaded safely): {why}"
        ) from None
    except Exception as e:  # corrupt zip, truncated file, ...
        msg = str(e).splitlines()[0][:300] if str(e) else ""
        raise CheckpointError(
            f"{path}: cannot read weights, file corrupt or truncated ({type(e).__name__}: {msg})"
        ) from None
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


def describe_keys(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def state_dict_bytes(sd: dict[str, Tensor]) -> bytes:
    """safetensors bytes of a state dict; tensors that share storage are copied apart (safetensors
    refuses aliases) and everything is made contiguous."""
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


__all__ = ["describe_keys", "read_weights", "state_dict_bytes"]
