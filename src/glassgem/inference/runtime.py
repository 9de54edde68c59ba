"""Where and how a model runs: device, autocast dtype, denormal floats, and the inference-only speed-ups
(BatchNorm folding, TorchScript graphs) with their defaults. Threads and other process-level settings
that must be made before torch starts are in threads.py (which imports no torch)."""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch import nn

from ..errors import ConfigError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# Encoders whose scores run faster through TorchScript graphs (graphs.py) than eagerly on CPU: the default of
# `fuse_for_inference(graphs=None)`. From `glassgem bench` (benchmarks/bench_predict.py) at 384² on a 2-core
# CPU: GEM-Lite (EfficientNet-Lite0) eager 70-73 ms vs graph 53-55 ms; GEM-Tiny's ViT the other way (258 vs
# 275 ms), so the ViT encoders stay eager. Re-measure before adding an encoder here.
GRAPHS_FASTER = frozenset({"efficientnet_lite0"})


def graphs_by_default(encoder: str) -> bool:
    return encoder in GRAPHS_FASTER


def resolve_device(device: Optional[str]) -> torch.device:
    """--device: None (CUDA when available, else CPU), cpu, cuda, cuda:N or mps; ConfigError otherwise."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"--device {device}: not a device; use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {device}: glassgem runs on cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine")
    return dev


def resolve_dtype(name: str) -> Optional[torch.dtype]:
    """--dtype fp32 | bf16 | fp16 -> the autocast dtype (None for fp32: no autocast)."""
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return None if name == "fp32" else DTYPES[name]


def autocast(device: torch.device | str, dtype: torch.dtype | str | None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` (a torch dtype or a DTYPES name) on `device`'s type; None or fp32: autocast off."""
    device_type = device if isinstance(device, str) else device.type
    if isinstance(dtype, str):
        dtype = DTYPES[dtype]
    if dtype is None or dtype == torch.float32:
        return torch.autocast(device_type, enabled=False)
    return torch.autocast(device_type, dtype=dtype)


@contextlib.contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[None]:
    """Flush denormal floats to zero on the CPU for the duration (then back to the default, off).
    Sigmoids and exponentials of large negative logits produce denormals, which x86 CPUs process ~100x
    slower; flushing them made GEM-Lite inference ~20% faster and changes no value above 1.2e-38."""
    if not enabled:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def fuse_batchnorms(model: nn.Module) -> bool:
    """Fold the encoder's BatchNorms into its convs, in place (EfficientNet-Lite0; the ViT encoders have
    none). -> True if anything was folded (the model can then no longer be trained or saved)."""
    fuse = getattr(model.encoder, "fuse_batchnorm_", None)
    return bool(fuse is not None and fuse())


__all__ = [
    "DTYPES",
    "GRAPHS_FASTER",
    "autocast",
    "flush_denormals",
    "fuse_batchnorms",
    "graphs_by_default",
    "resolve_device",
    "resolve_dtype",
]
