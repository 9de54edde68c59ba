"""Training checkpoints: one file per save, written atomically, the last K kept.

A checkpoint holds only tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(weights_only=True)` like any other file glassgem reads.
"""

from __future__ import annotations

import io
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..io import atomic_write_bytes
from ..io import remove_stale_temps as _remove_stale_temps

_NAME = re.compile(r"^step_(\d{7})\.pt$")


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, oldest first. Temporary files never match."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(run_dir: str | Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Serialise in memory, write to a temporary file, rename; then drop all but the newest `keep_last`."""
    buf = io.BytesIO()
    torch.save(state, buf)
    path = atomic_write_bytes(checkpoint_dir(run_dir) / f"step_{step:07d}.pt", buf.getvalue())
    if keep_last > 0:
        for _, old in list_checkpoints(run_dir)[:-keep_last]:
            old.unlink(missing_ok=True)
    return path


def remove_stale_temps(folder: str | Path, min_age_s: float = 0.0) -> list[Path]:
    """Delete the temporary files (`.<name>.<random>.tmp`, glassgem.io.atomic_write) that writes killed
    mid-way left in `folder`, if at least `min_age_s` old; -> the files removed."""
    return _remove_stale_temps(folder, min_age_s)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{path}: cannot read training checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise CheckpointError(f"{path}: not a glassgem training checkpoint (no 'step'/'model' entries)")
    return state


def rng_state() -> dict[str, Any]:
    """Every global RNG a step may touch, in weights_only-loadable form."""
    np_state = np.random.get_state(legacy=True)  # the default (numpy's stubs say otherwise)
    assert isinstance(np_state, tuple)  # numpy's global generator is an MT19937: its state is the legacy tuple
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x
