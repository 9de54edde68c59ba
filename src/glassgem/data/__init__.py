"""glassgem.data: dataset layouts, the torch dataset, the paper's transforms, and dataset checks.

Names are resolved lazily so that the torch-free parts (layouts, checks) load without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Pair": "layouts",
    "find_pairs": "layouts",
    "resolve_split": "layouts",
    "available_splits": "layouts",
    "LAYOUTS": "layouts",
    "GlassDataset": "datasets",
    "TrainTransform": "transforms",
    "TestTransform": "transforms",
    "collate": "transforms",
    "CheckReport": "checks",
    "check_dataset": "checks",
    "require_valid": "checks",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'glassgem.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
