"""Run an exported glassgem ONNX file with onnxruntime: no model code, no torch-side weights.

    scorer = load_onnx_scorer("gem-tiny.onnx")       # CPUExecutionProvider
    scores = scorer(images)                          # float32 [B,3,H,W] RGB 0..255 -> torch [B,2,H,W]
    glass = scores.argmax(1)

`scorer.input_size` is (H, W) (None if the graph's spatial size is symbolic), `scorer.batch_dynamic`
says whether any batch size runs in one call (a graph exported for batch 1 is run image by image),
`scorer.config` is the model config stored in the file's metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, DataError, GlassgemError
from ..hub.cache import cached_bytes
from .quantize import PRECISIONS, quantize_int8, quantizer_version

DEVICES = ("cpu", "cuda", "auto")


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise GlassgemError(
            "onnxruntime is not installed: pip install -e . in your glassgem clone (or pip install onnxruntime)"
        ) from None
    return onnxruntime


def _providers(device: str) -> list:
    """ "cpu", "cuda", "cuda:N" or "auto" (CUDA if this onnxruntime build has it) -> session providers."""
    ort = _ort()
    kind, _, index = device.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(f"device {device!r}: choose one of cpu, cuda, cuda:N, auto")
    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if kind == "cuda" and not cuda:
        raise ConfigError(
            f"device {device!r}: this onnxruntime build has no CUDAExecutionProvider "
            "(install onnxruntime-gpu, or use the CPU)"
        )
    if kind == "cuda" or (kind == "auto" and cuda):
        return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxScorer:
    """A glassgem ONNX graph as a scorer: images [B,3,H,W] 0..255 -> scores [B,2,H,W] (torch fp32, CPU)."""

    def __init__(self, session: Any, source: str) -> None:
        self.session, self.source = session, source
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if (
            len(inputs) != 1
            or len(outputs) != 1
            or len(inputs[0].shape) != 4
            or len(outputs[0].shape) != 4
            or inputs[0].shape[1] != 3
            or outputs[0].shape[1] != 2
        ):
            sig = (
                ", ".join(f"{a.name} {a.shape}" for a in inputs)
                + " -> "
                + ", ".join(f"{a.name} {a.shape}" for a in outputs)
            )
            raise CheckpointError(
                f"{source}: not a glassgem export (expected images [B,3,H,W] -> scores [B,2,H,W], the graph has {sig})"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        b, _, h, w = inputs[0].shape
        self.batch_dynamic = not isinstance(b, int)
        self.batch_size: int | None = None if self.batch_dynamic else int(b)
        self.input_size: tuple[int, int] | None = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        self.metadata: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map)
        try:
            self.config: dict[str, Any] = json.loads(self.metadata.get("glassgem.config", "{}"))
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{source}: the glassgem.config metadata is not valid JSON ({e})") from None
        self.providers: list[str] = list(session.get_providers())
        self.precision: str = self.metadata.get("glassgem.precision", "fp32")  # "int8": quantize.py made it

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        source: str = "<bytes>",
        device: str = "cpu",
        threads: int | None = None,
        spinning: bool = True,
    ) -> OnnxScorer:
        ort = _ort()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        if not spinning:  # idle workers sleep instead of spinning: much faster when other processes share the cores
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: unused-initializer notes are not the user's concern
        try:
            session = ort.InferenceSession(data, options, providers=_providers(device))
        except GlassgemError:
            raise
        except Exception as e:  # onnxruntime raises its own exception types for bad or unsupported files
            first = str(e).strip().splitlines()[0][:400] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{source}: onnxruntime cannot load it ({first})") from None
        return cls(session, source)

    def square_size(self, requested: int | None = None) -> int:
        """The square size to squash photos to for this graph (glassgem predict): `requested` if given,
        else the graph's. ConfigError if the graph is fixed at a non-square or another size."""
        if self.input_size is None:
            return int(requested or self.config.get("image_size", 384))
        h, w = self.input_size
        if h != w:
            raise ConfigError(
                f"{self.source}: exported for {h}x{w} (HxW) inputs, but photos are squashed to a "
                "square; export again with --size N"
            )
        if requested and int(requested) != h:
            raise ConfigError(
                f"--size {requested}: {self.source} was exported for {h}x{w} inputs "
                f"(export again with --size {requested}, or leave --size out)"
            )
        return h

    def __call__(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = self._as_array(images)
        if self.batch_dynamic or x.shape[0] == self.batch_size:
            out = self._run(x)
        elif self.batch_size == 1:
            out = np.concatenate([self._run(x[i : i + 1]) for i in range(x.shape[0])])
        else:
            raise DataError(f"{self.source}: exported for batches of {self.batch_size}, got {x.shape[0]} images")
        return torch.from_numpy(out)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([self.output_name], {self.input_name: x})[0], dtype=np.float32)

    def _as_array(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(images, torch.Tensor):
            images = images.detach().to("cpu", torch.float32).numpy()
        if not isinstance(images, np.ndarray):
            raise DataError(f"images must be a numpy array or torch tensor, got {type(images).__name__}")
        x = np.ascontiguousarray(images, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 3 or 0 in x.shape:
            raise DataError(f"images must be [B, 3, H, W] RGB 0..255, got shape {tuple(x.shape)}")
        if self.input_size is not None and tuple(x.shape[2:]) != self.input_size:
            h, w = self.input_size
            raise DataError(
                f"{self.source}: exported for {h}x{w} (HxW) inputs, got {x.shape[2]}x{x.shape[3]}; "
                "resize the images or export again with --size"
            )
        return x

    def __repr__(self) -> str:
        size = "x".join(map(str, self.input_size)) if self.input_size else "any size"
        batch = "dynamic batch" if self.batch_dynamic else f"batch {self.batch_size}"
        return f"OnnxScorer({self.source!r}, {size}, {batch}, {self.config.get('name', '?')}, {self.providers[0]})"


def load_onnx_scorer(
    path: str | os.PathLike,
    device: str = "cpu",
    threads: int | None = None,
    spinning: bool = True,
    precision: str = "fp32",
) -> OnnxScorer:
    """Open an exported glassgem ONNX file. device: "cpu", "cuda"/"cuda:N" (onnxruntime-gpu) or "auto";
    threads: onnxruntime intra-op threads (default: onnxruntime's choice, all cores); spinning=False lets
    idle worker threads sleep (measured at load 3.5 on 2 cores: 450 instead of 720 ms for GEM-Tiny);
    precision="int8": an fp32 file is quantized first (quantize.py: seconds for GEM-S; the result is kept in
    the user cache, keyed by the file's SHA-256), a file that is int8 already runs as it is (as with "fp32")."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX file not found")

    def read() -> bytes:
        try:
            return path.read_bytes()
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read it ({e.strerror or e})") from None

    if precision == "int8":  # quantized once per file content, then read from the user cache (hub/cache.py)
        data = cached_bytes("onnx-int8", quantizer_version(), path, lambda: quantize_int8(read(), str(path)))
    else:
        data = read()
    return OnnxScorer.from_bytes(data, source=str(path), device=device, threads=threads, spinning=spinning)


__all__ = ["OnnxScorer", "load_onnx_scorer"]
