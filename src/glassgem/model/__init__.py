"""glassgem.model: GEM (encoder + simple feature pyramid + DQS + MaskDINO-style decoder) and its parts.

`from glassgem.model import GEM` is the entry point; submodules are imported lazily so that importing a
small helper (e.g. `glassgem.model.box_ops`) does not build the whole model stack.
"""
from __future__ import annotations

from typing import Any

__all__ = ["GEM", "semantic_map"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import gem

        return getattr(gem, name)
    raise AttributeError(f"module 'glassgem.model' has no attribute {name!r}")
