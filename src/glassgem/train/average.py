"""Weight averaging of checkpoints of one model ("model soup" / SWA-style averaging).

`average_checkpoints(sources, out)` reads glassgem directories, original GEM checkpoints and training
checkpoints (`RUN/checkpoints/step_NNNNNNN.pt`), checks that they are the same model (same config up to
fields that do not shape the weights: `drop_path_rate`, `score_smoothing`; same tensor names and shapes), takes the
element-wise mean of every floating-point tensor (computed in float64, stored in the original dtype;
integer buffers such as BatchNorm's `num_batches_tracked` come from the first source) and writes a
glassgem directory plus `average.json` naming the sources (and any such config difference).

BatchNorm running statistics are averaged like any other tensor, an approximation: SWA proper would
re-estimate them on training data. With a single source this simply exports a training checkpoint as a
glassgem directory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from ..config import ModelConfig
from ..errors import CheckpointError
from ..hub.pretrained import load_checked, read_pretrained, save_pretrained
from ..io import atomic_write_text
from ..model.gem import GEM
from .checkpoint import load_checkpoint

AVERAGE_RECORD = "average.json"


def _is_training_checkpoint(path: Path) -> bool:
    return path.is_file() and path.suffix == ".pt"


def load_model_weights(path: str | Path) -> tuple[ModelConfig, dict[str, Tensor]]:
    """(model config, state dict) of a glassgem directory, an original GEM checkpoint or a training checkpoint."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if _is_training_checkpoint(path):
        state = load_checkpoint(path)
        train_cfg = state.get("config")
        model_cfg = train_cfg.get("model") if isinstance(train_cfg, dict) else None
        if not isinstance(model_cfg, dict):
            raise CheckpointError(f"{path}: training checkpoint without a model config")
        return ModelConfig.from_dict(model_cfg), dict(state["model"])
    cfg, sd, _ = read_pretrained(path)
    return cfg, sd


# Model config fields that do not shape the weights: stochastic depth (acts only while training) and score
# smoothing (acts only after the network, at inference). Checkpoints that differ in them hold the same
# tensors of the same network, so they can be averaged; the result keeps the first's value.
NON_WEIGHT_FIELDS = frozenset({"drop_path_rate", "score_smoothing"})


def _config_difference(a: ModelConfig, b: ModelConfig) -> dict[str, str]:
    """{field: "field: a vs b"} for every model config field that differs."""
    da, db = a.to_dict(), b.to_dict()
    return {k: f"{k}: {da.get(k)!r} vs {db.get(k)!r}" for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k)}


def average_state_dicts(sources: Sequence[str | Path]) -> tuple[ModelConfig, dict[str, Tensor]]:
    """Element-wise mean over the sources' weights; CheckpointError naming the file that does not fit."""
    cfg, sd, _ = _average(sources)
    return cfg, sd


def _average(sources: Sequence[str | Path]) -> tuple[ModelConfig, dict[str, Tensor], list[str]]:
    """`average_state_dicts`, plus the non-weight config differences it let through."""
    if not sources:
        raise CheckpointError("average: give at least one checkpoint")
    first = Path(sources[0])
    cfg, first_sd = load_model_weights(first)
    sums = {k: v.double().clone() if v.is_floating_point() else v.clone() for k, v in first_sd.items()}
    kept: list[str] = []  # non-weight differences: the result keeps the first source's values
    for src in sources[1:]:
        other_cfg, sd = load_model_weights(src)
        diff = _config_difference(cfg, other_cfg)
        blocking = [text for k, text in diff.items() if k not in NON_WEIGHT_FIELDS]
        if blocking:
            raise CheckpointError(f"{src}: not the same model as {first} ({'; '.join(blocking[:4])})")
        kept += [text for text in diff.values() if text not in kept]
        missing, extra = sorted(set(sums) - set(sd)), sorted(set(sd) - set(sums))
        if missing or extra:
            raise CheckpointError(f"{src}: different tensors than {first} (missing {missing[:3]}, extra {extra[:3]})")
        for k, v in sd.items():
            if v.shape != sums[k].shape:
                raise CheckpointError(f"{src}: {k} has shape {tuple(v.shape)}, {first} has {tuple(sums[k].shape)}")
            if v.is_floating_point():
                sums[k] += v.double()
    n = len(sources)
    return cfg, {k: (v / n).to(first_sd[k].dtype) if v.is_floating_point() else v for k, v in sums.items()}, kept


def average_checkpoints(sources: Sequence[str | Path], out: str | Path) -> Path:
    """Average `sources` (see module doc) into the glassgem directory `out`; returns it."""
    cfg, sd, kept = _average(sources)
    model = GEM(cfg)
    load_checked(model, sd, ", ".join(str(s) for s in sources))
    out = save_pretrained(model, out)
    record = {"sources": [str(Path(s).resolve()) for s in sources], "method": "uniform mean of the weights"}
    if kept:
        record["config_differences_kept_from_first"] = kept
    atomic_write_text(out / AVERAGE_RECORD, json.dumps(record, indent=2) + "\n")
    return out


__all__ = ["AVERAGE_RECORD", "NON_WEIGHT_FIELDS", "average_checkpoints", "average_state_dicts", "load_model_weights"]
