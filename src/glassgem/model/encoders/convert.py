"""What the families' pure state-dict converters share: their result (`Converted`), the description of a
weight format they read (`WeightSource`) and the shape check that fits renamed tensors into an encoder.

A converter takes tensors already read from a file (no file I/O here) and the encoder's own state dict,
and returns the tensors to load plus what happened to the others. It raises CheckpointError without a
file name; the hub module that read the file adds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from ...errors import CheckpointError

StateDict = dict[str, Tensor]
# (key in the encoder, incoming tensor, the encoder's tensor) -> a tensor of the encoder's shape, or None
# when the key has no fitting rule (then a shape mismatch is an error).
Fit = Callable[[str, Tensor, Tensor], Tensor | None]


@dataclass
class Converted:
    """A converter's result. Key names are the encoder's own, except `discarded` and `unexpected`
    (the file's)."""

    state: StateDict = field(default_factory=dict)  # tensors to load (strict=False)
    discarded: list[str] = field(default_factory=list)  # tensors of the file the encoder does not use
    unexpected: list[str] = field(default_factory=list)  # tensors the encoder has no place for
    resized: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)  # (from, to)
    zeroed: list[str] = field(default_factory=list)  # position tensors left at zero


@dataclass(frozen=True)
class WeightSource:
    """Pretrained weights an encoder can start from (`encoder_init` = `init`).

    `file` says what the user passes as `encoder_weights`; `package` names the pip package the weights
    install with instead (no file to pass). `recognise(state dict)` tells a file of this format for this
    encoder; `convert(tensors, own state dict, **options) -> Converted` renames and fits the tensors the
    hub read (from the file, or what its reader for `package` gives)."""

    init: str
    convert: Callable[..., Converted]
    file: str | None = None
    recognise: Callable[[StateDict], bool] | None = None
    package: str | None = None


def fit_state_dict(
    incoming: StateDict, own: StateDict, fit: Fit | None = None, out: Converted | None = None
) -> Converted:
    """Renamed tensors -> the encoder's (into `out`): same-shape tensors as they are, others through `fit`
    (recorded in `resized`). Names the encoder lacks go to `unexpected`; CheckpointError for a mismatch
    `fit` does not handle."""
    out = out if out is not None else Converted()
    for name, value in incoming.items():
        if name not in own:
            out.unexpected.append(name)
            continue
        want = tuple(own[name].shape)
        if tuple(value.shape) == want:
            out.state[name] = value
            continue
        fitted = fit(name, value, own[name]) if fit is not None else None
        if fitted is None:
            raise CheckpointError(f"{name} has shape {tuple(value.shape)} but the encoder expects {want}")
        out.state[name] = fitted
        out.resized[name] = (tuple(value.shape), want)
    return out


def rename_and_fit(
    sd: StateDict, own: StateDict, rename: Callable[[str], str | None], fit: Fit | None = None
) -> Converted:
    """`fit_state_dict` after renaming every key of `sd` with `rename` (None: discarded). Keys whose new
    name the encoder lacks go to `unexpected` under the file's name; the tensors to load take the
    encoder's dtype (after fitting)."""
    out, renamed = Converted(), {}
    for key, value in sd.items():
        name = rename(key)
        if name is None:
            out.discarded.append(key)
        elif name not in own:
            out.unexpected.append(key)
        else:
            renamed[name] = value
    out = fit_state_dict(renamed, own, fit, out)
    out.state = {k: v.to(own[k].dtype) for k, v in out.state.items()}
    return out


__all__ = ["Converted", "Fit", "StateDict", "WeightSource", "fit_state_dict", "rename_and_fit"]
