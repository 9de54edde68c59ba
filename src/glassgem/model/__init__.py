"""glassgem.model: GEM (encoder + simple feature pyramid + DQS + MaskDINO-style decoder) and its parts,
as pure nn.Modules: no weight files, devices or image files here (glassgem.hub, glassgem.inference).

`from glassgem.model import GEM` is the bare network; `from glassgem import GEM` adds from_pretrained.
Submodules are imported on first use so that a small helper (e.g. `glassgem.model.box_ops`) does not
build the whole model stack.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GEM", "semantic_map"]


def __getattr__(name: str) -> Any:
    if name == "GEM":
        from .gem import GEM

        return GEM
    if name == "semantic_map":
        from .postprocess import semantic_map

        return semantic_map
    raise AttributeError(f"module 'glassgem.model' has no attribute {name!r}")
