"""Where and how a model runs: device, autocast dtype, denormal floats, intra-op threads, and the inference-only
speed-ups (BatchNorm folding, TorchScript graphs) with their defaults. The process-level settings that must be
made before torch starts are in threads.py (which imports no torch)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TypeVar

import torch
from torch import nn

from ..errors import ConfigError
from ..model.encoders.registry import encoder_spec
from .threads import cpu_cores, library_thread_policy

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def graphs_by_default(encoder: str) -> bool:
    """Whether `fuse_for_inference(graphs=None)` runs a model of this encoder through TorchScript graphs
    (graphs.py): where its registry entry says they measured faster on a CPU (`graphs_faster`)."""
    try:
        return encoder_spec(encoder).graphs_faster
    except ConfigError:  # an encoder glassgem does not know: eager
        return False


def resolve_device(device: str | None) -> torch.device:
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


def resolve_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    """--dtype fp32 | bf16 | fp16 (or a torch dtype, or None) -> the autocast dtype (None for fp32: no autocast)."""
    if name is None or name == torch.float32:
        return None
    if isinstance(name, torch.dtype):
        if name not in DTYPES.values():
            raise ConfigError(f"dtype {name}: choose one of {', '.join(DTYPES)}")
        return name
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


_flushing = 0  # flush_denormals blocks open now: only the outermost one switches the setting


@contextlib.contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[None]:
    """Flush denormal floats to zero on the CPU for the duration (then back to the default, off).
    Sigmoids and exponentials of large negative logits produce denormals, which x86 CPUs process ~100x
    slower; flushing them made GEM-Lite inference ~20% faster and changes no value above 1.2e-38.
    Nested blocks (a Predictor call inside the `glassgem` command's block) leave the setting to the outermost."""
    global _flushing
    if not enabled:
        yield
        return
    if _flushing == 0:
        torch.set_flush_denormal(True)
    _flushing += 1
    try:
        yield
    finally:
        _flushing -= 1
        if _flushing == 0:
            torch.set_flush_denormal(False)


def fuse_batchnorms(model: nn.Module) -> bool:
    """Fold the encoder's BatchNorms into its convs, in place (EfficientNet-Lite0; the ViT encoders have
    none). -> True if anything was folded (the model can then no longer be trained or saved)."""
    fuse = getattr(model.encoder, "fuse_batchnorm_", None)
    return bool(fuse is not None and fuse())


M = TypeVar("M", bound=nn.Module)


def fuse_for_inference(model: M) -> M:
    """Eval mode and BatchNorms folded (fuse_batchnorms), in place and one-way. A model that lost weights to the
    folding is marked `_fused`: glassgem.hub refuses to save it, glassgem.GEM to train it, and a Predictor runs it
    through TorchScript graphs where those are faster (graphs_by_default), its weights being frozen from now on."""
    model.eval()
    if not getattr(model, "_fused", False) and fuse_batchnorms(model):
        setattr(model, "_fused", True)  # a plain attribute (nn.Module's typing knows only tensors and modules)
    return model


def inference_only(model: nn.Module) -> bool:
    """Whether `model` was fused for inference (fuse_for_inference folded weights away): its weights stay put."""
    return bool(getattr(model, "_fused", False))


_threads_set = False


def apply_thread_policy(threads: int | None = None) -> None:
    """The `glassgem` command's CPU thread policy for this process (threads.py), once: library users get the
    command's speed. `threads`: that many intra-op threads (torch.set_num_threads), now. Otherwise, the first
    time: the OpenMP settings go into the environment (they take effect if torch is not imported yet: import
    glassgem first, or set them yourself); the thread count, one per CPU this process may run on, is given to
    a torch that started before it (unless OMP_NUM_THREADS was the user's own). GLASSGEM_THREAD_POLICY=0
    leaves everything to the user."""
    global _threads_set
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= cpu_cores():
            raise ConfigError(f"threads={threads!r}: expected 1 to {cpu_cores()} (the CPUs this process may use)")
        torch.set_num_threads(threads)
        return
    if _threads_set:
        return
    _threads_set = True
    late = library_thread_policy()  # glassgem's values that torch, imported before them, has not read
    if "OMP_NUM_THREADS" in late and torch.get_num_threads() != int(late["OMP_NUM_THREADS"]):
        torch.set_num_threads(int(late["OMP_NUM_THREADS"]))


__all__ = [
    "DTYPES",
    "apply_thread_policy",
    "autocast",
    "flush_denormals",
    "fuse_batchnorms",
    "fuse_for_inference",
    "graphs_by_default",
    "inference_only",
    "resolve_device",
    "resolve_dtype",
]
