"""What a model reference names: a local path or a Hugging Face Hub id, read by one parser.

`parse_hub_ref` is the one place that decides whether text is a Hub reference: `owner/name`, `owner/name@revision`
(when no such local path exists and the name does not end like a weights file) or `hf://owner/name[@revision][/file]`.
glassgem's own weights (hub/pretrained.py, hub/remote.py) and the third-party models other stages load by a folder
or a Hub id (Stable Diffusion, ControlNet, CLIP: `check_ref`, `load_or_raise`) all ask it.
No network and no heavy import here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import CheckpointError

HUB_PREFIX = "hf://"
# A name that ends like a weights file stays a local path (its error says "file not found"), never a Hub id.
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".pkl", ".ckpt")
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REPO = re.compile(rf"^({_PART}/{_PART})(?:@([A-Za-z0-9._/-]+?))?$")
_HF_URL = re.compile(rf"^({_PART}/{_PART})(?:@([A-Za-z0-9._-]+))?(?:/(.+))?$")

T = TypeVar("T")


def parse_hub_ref(name: str | os.PathLike | None) -> tuple[str, str | None, str | None] | None:
    """(repo_id, filename or None, revision or None) if `name` is a Hub reference, else None.
    A path that exists locally is never a Hub id; `hf://...` always is (CheckpointError when malformed)."""
    if not isinstance(name, str):
        return None
    if name.startswith(HUB_PREFIX):
        m = _HF_URL.match(name[len(HUB_PREFIX) :])
        if not m:
            raise CheckpointError(f"{name}: not a Hugging Face Hub reference (hf://owner/name[@revision][/file])")
        return m.group(1), m.group(3), m.group(2)
    if name.lower().endswith(WEIGHT_SUFFIXES) or Path(name).exists():
        return None
    m = _REPO.match(name)
    return (m.group(1), None, m.group(2)) if m else None


def check_ref(ref: str | os.PathLike, what: str) -> None:
    """A third-party model (diffusers / transformers) given as an existing folder or a plain `owner/name` Hub id;
    anything else is a mistyped path: CheckpointError naming it."""
    text = str(ref)
    if Path(text).exists():
        return
    hub = parse_hub_ref(text) if not text.startswith(HUB_PREFIX) else None
    if hub is None or hub[1] is not None or hub[2] is not None:
        raise CheckpointError(f"{text}: {what} not found (give a local folder or a hub id like owner/name)")


def load_or_raise(what: str, ref: str | os.PathLike, loader: Callable[..., T], **kwargs: Any) -> T:
    """loader(str(ref), **kwargs) (a library's from_pretrained), whatever it raises turned into one CheckpointError
    line naming the model (and its subfolder)."""
    try:
        return loader(str(ref), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        where = f"{ref}/{kwargs['subfolder']}" if "subfolder" in kwargs else str(ref)
        local = Path(ref).exists()
        hint = "" if local else " (a hub id needs network or a filled cache; a local folder always works)"
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{where}: cannot load the {what}: {first_line}{hint}") from None


__all__ = ["HUB_PREFIX", "WEIGHT_SUFFIXES", "check_ref", "load_or_raise", "parse_hub_ref"]
