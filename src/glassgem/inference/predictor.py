"""glassgem.Predictor: the one way from photos to glass masks.

    from glassgem import Predictor
    predictor = Predictor()                        # the shipped GEM-S; or "gem-lite", a folder, a Hub id, an
    mask = predictor.predict("photo.jpg")          # .onnx file, a GEM model; bool [H, W] at the photo's size
    masks = predictor.predict([img1, img2])        # a list (or an N x H x W x 3 uint8 array): a list of masks
    prob = predictor.probabilities("photo.jpg")    # float32 [H, W], the glass probability

Every prediction of glassgem runs through a Predictor: `GEM.predict`, `glassgem predict` on photos, videos,
live streams and ROS bags, and `glassgem evaluate`. It holds the test protocol (protocol.py) in one place:
squash to `size` x `size` (Preparer, also run in decoding threads and data-loading workers), score a batch
(with flip test-time augmentation if asked), resize the scores back to each photo's size and threshold them.
Its options are checked once, when it is made (ConfigError naming the option).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..config import check_smoothing
from ..errors import ConfigError, DataError
from ..model.gem import GEM
from .onnx_runner import OnnxScorer, load_onnx_scorer
from .protocol import (
    ImageLike,
    as_rgb_array,
    check_threshold,
    flip_averaged,
    glass_mask,
    glass_probability,
    squash,
    unsquash,
)
from .runtime import apply_thread_policy, resolve_device, resolve_dtype
from .scorers import ModelScorer, build_scorer
from .weight_graphs import AUTO, auto_precision, check_precision, weights_graph

Images = ImageLike | Sequence[ImageLike] | np.ndarray
PROTOCOL_THRESHOLD = 0.5  # glass where the glass score beats the background score: the paper's rule


@dataclass(frozen=True)
class Preparer:
    """image -> (uint8 RGB H x W x 3, float32 [3, size, size] squashed): the decoding half of a prediction. Small
    and picklable, so decoding threads and data-loading worker processes run it beside the network."""

    size: int
    bgr: bool = False

    def __call__(self, image: ImageLike) -> tuple[np.ndarray, Tensor]:
        rgb = as_rgb_array(image, self.bgr)
        return rgb, squash(rgb, self.size)

    def squash(self, rgb: np.ndarray) -> Tensor:
        """A decoded uint8 RGB frame (a video's, a bag's) -> float32 [3, size, size]."""
        return squash(rgb, self.size)


@dataclass
class Output:
    """One photo's result at its own size: the glass mask and, when asked for, the glass probability."""

    mask: np.ndarray  # bool [H, W]
    probability: np.ndarray | None = None  # float32 [H, W] in [0, 1]


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name}={value!r}: expected True or False")
    return bool(value)


def _threshold(value: Any) -> float:
    if value is None:
        return PROTOCOL_THRESHOLD
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(value)
        return float(check_threshold(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"threshold={value!r}: expected a glass probability between 0 and 1 (exclusive)") from None


def _batch_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"batch_size={value!r}: expected a whole number of at least 1")
    return int(value)


def _is_onnx_path(model: Any) -> bool:
    return isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx")


def _scorer(model: Any, device: Any, dtype: Any, smoothing: Any, precision: str, size: Any) -> Any:
    """What `model` names -> a scorer (scorers.py, onnx_runner.py, weight_graphs.py), each option checked
    against it."""
    precision = check_precision(precision)
    onnx = isinstance(model, OnnxScorer) or _is_onnx_path(model)
    weights = model is None or (isinstance(model, (str, os.PathLike)) and not onnx)
    if precision == AUTO:  # an .onnx file runs as it is; weights: int8 where it is the better default
        precision = auto_precision(model, device, dtype, smoothing) if weights else "fp32"
    if onnx or not isinstance(model, (GEM, str, os.PathLike, type(None))):
        if resolve_dtype(dtype) is not None or smoothing is not None:
            raise ConfigError("dtype= and smoothing= are a PyTorch model's: an ONNX graph or a scorer has its own")
    if precision != "fp32" and not onnx:
        if not weights:
            raise ConfigError(
                f"precision={precision!r} runs weights (a name or folder) or an .onnx file, not a "
                f"{type(model).__name__}"
            )
        if resolve_dtype(dtype) is not None or smoothing is not None:
            raise ConfigError(f"precision={precision!r} runs a graph of the weights: leave out dtype= and smoothing=")
        if device is not None and str(device) != "cpu":
            raise ConfigError(f"precision={precision!r} runs on the CPU (onnxruntime): device={device!r}")
        return weights_graph(None if model is None else str(model), precision, _check_size(size) if size else None)
    if isinstance(model, GEM):
        if device is not None:
            model.to(resolve_device(device))
        if smoothing is not None:
            model.cfg.score_smoothing = check_smoothing(smoothing)
        return ModelScorer(model, dtype=resolve_dtype(dtype))
    if _is_onnx_path(model):
        onnx_device = "auto" if device is None else str(device)
        return load_onnx_scorer(model, device=onnx_device, precision=precision, spinning=False)
    if model is None or isinstance(model, (str, os.PathLike)):
        return build_scorer(None if model is None else str(model), device, dtype, smoothing)
    if callable(model):  # an OnnxScorer, or any callable float [B,3,s,s] -> [B,2,s,s] with `input_size`
        return model
    raise ConfigError(
        f"model={type(model).__name__}: pass a GEM model, a weights name, folder or Hub id, an .onnx file, or a scorer"
    )


def _size(scorer: Any, size: Any) -> int:
    if isinstance(scorer, OnnxScorer):
        if size is not None:
            _check_size(size)
        return scorer.square_size(size)
    return _check_size(size if size is not None else getattr(scorer, "input_size", None) or 384)


def _check_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0 or size % 32:
        raise ConfigError(f"size={size!r}: the test size must be a positive multiple of 32 (384 is the paper's)")
    return int(size)


class Predictor:
    """Glass masks for photos, one at a time or in batches, with one model and one set of options.

    `model`: a GEM model (glassgem.GEM or glassgem.model.GEM: used as it is, on its device unless `device` says
    otherwise; its training mode is kept), None (the shipped default), a shipped model's name ("gem-lite"), a
    glassgem folder, an original GEM checkpoint, a Hugging Face Hub id (loaded and fused for inference, as the
    `glassgem` command does), an exported `.onnx` file (onnxruntime), or any scorer: a callable float
    [B,3,s,s] RGB 0..255 -> [B,2,s,s] scores with an `input_size`.
    `size`: the square test size (default: the model's, 384). `tta`: also score the mirrored photo and average
    (2x the time). `threshold`: glass where its probability exceeds it; 0.5 (or None) is the paper's rule, glass
    where the glass score beats the background score. `device`: cpu, cuda, cuda:N (default: the model's own;
    for weights it loads, CUDA when available). `dtype`: autocast to "bf16" or "fp16" (default fp32).
    `bgr`: image arrays are in OpenCV's B, G, R order (PIL images and files are read in their own order).
    `batch_size`: photos per forward pass for lists and batches. `smoothing`: replaces the model's score smoothing.
    `precision`: "auto" (default), "fp32" or "int8". "int8" runs weights (a name or a glassgem folder) as an int8
    onnxruntime graph on the CPU, made on first use (~35 s for GEM-S) and then read from the user cache
    (weight_graphs.py), or quantizes an `.onnx` file at load; "auto" is int8 for the shipped GEM-S on a CPU
    (its int8 masks measured within 0.005 IoU of fp32's, and faster) and fp32 otherwise (docs/speed.md).

    Threads: a Predictor applies the `glassgem` command's CPU policy to the process once (inference/threads.py:
    one intra-op thread per CPU this process may use; OpenMP threads that wait passively after a short spin,
    which keeps a busy machine fast; the OpenMP part takes effect when torch is imported after glassgem, e.g.
    after `from glassgem import Predictor`). `threads=N` sets N threads instead; to keep your own settings, set
    OMP_NUM_THREADS / OMP_WAIT_POLICY yourself (glassgem never overrides them) or GLASSGEM_THREAD_POLICY=0.
    """

    def __init__(
        self,
        model: Any = None,
        size: int | None = None,
        tta: bool = False,
        threshold: float | None = PROTOCOL_THRESHOLD,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        bgr: bool = False,
        threads: int | None = None,
        *,
        batch_size: int = 4,
        smoothing: float | None = None,
        precision: str = AUTO,
    ) -> None:
        apply_thread_policy(threads)
        self.tta, self.bgr = _flag("tta", tta), _flag("bgr", bgr)
        self.threshold = _threshold(threshold)
        self.batch_size = _batch_size(batch_size)
        self.scorer = _scorer(model, device, dtype, smoothing, precision, size)
        self.size = _size(self.scorer, size)
        self.preparer = Preparer(self.size, self.bgr)

    # ------------------------------------------------------------------ the user's calls
    def predict(self, images: Images, return_probs: bool = False) -> Any:
        """Glass masks, bool [H, W] at each photo's size: one for an image (PIL, uint8 array H x W x 3 RGB,
        H x W x 4 RGBA, H x W grey, or a file path), a list for a list of them or an N x H x W x 3 uint8 array.
        `return_probs`: the glass probabilities instead (as `probabilities`)."""
        one, items = _as_items(images)
        outputs = self.outputs_of(items, probabilities=return_probs)
        results = [o.probability if return_probs else o.mask for o in outputs]
        return results[0] if one else results

    def probabilities(self, images: Images) -> Any:
        """The glass probability, float32 [H, W] in [0, 1], of each photo (shaped as `predict`'s masks)."""
        return self.predict(images, return_probs=True)

    # ------------------------------------------------------------------ the steps (pipelines call these)
    def prepare(self, image: ImageLike) -> tuple[np.ndarray, Tensor]:
        """(uint8 RGB at the photo's size, float32 [3, size, size]): safe to run in a decoding thread."""
        return self.preparer(image)

    @torch.no_grad()
    def score(self, squashed: Tensor | Sequence[Tensor]) -> Tensor:
        """Squashed photos ([B,3,s,s] or a list of [3,s,s]) -> scores float32 [B,2,s,s] on the CPU, mirrored
        views averaged in with `tta`."""
        batch = squashed if isinstance(squashed, Tensor) else torch.stack(list(squashed))
        scores = flip_averaged(self.scorer, batch) if self.tta else self.scorer(batch)
        return scores.float().cpu()

    def output(self, scores: Tensor, hw: tuple[int, int], probability: bool = False) -> Output:
        """One photo's scores [2,s,s] -> its mask (and probability) at its own size `hw`."""
        full = unsquash(scores[None].float(), hw)[0]  # 2 x H x W
        threshold = None if self.threshold == PROTOCOL_THRESHOLD else self.threshold
        mask = glass_mask(full, threshold).numpy().astype(bool)
        return Output(mask, glass_probability(full).numpy().astype(np.float32) if probability else None)

    def outputs(
        self, frames: Sequence[np.ndarray], squashed: Sequence[Tensor], probabilities: bool = False
    ) -> list[Output]:
        """Decoded photos (uint8 RGB) and their squashed tensors -> their Outputs, one scorer call."""
        if not frames:
            return []
        scores = self.score(squashed)
        return [self.output(s, f.shape[:2], probabilities) for f, s in zip(frames, scores)]

    def outputs_of(self, images: Sequence[ImageLike], probabilities: bool = False) -> list[Output]:
        """Outputs of any images, in batches of `batch_size`."""
        results: list[Output] = []
        for start in range(0, len(images), self.batch_size):
            prepared = [self.prepare(image) for image in images[start : start + self.batch_size]]
            results += self.outputs([p[0] for p in prepared], [p[1] for p in prepared], probabilities)
        return results

    @property
    def smoothing(self) -> float:
        """The score smoothing the model applies (model/postprocess.py; 0: none), as far as it is known."""
        cfg = getattr(getattr(self.scorer, "model", None), "cfg", None)
        if cfg is not None:
            return float(cfg.score_smoothing)
        return float(getattr(self.scorer, "config", {}).get("score_smoothing", 0.0) or 0.0)

    def __repr__(self) -> str:
        model = getattr(getattr(self.scorer, "model", None), "cfg", None)
        name = model.name if model is not None else type(self.scorer).__name__
        return f"Predictor({name}, size={self.size}, tta={self.tta}, threshold={self.threshold:g})"


def _as_items(images: Images) -> tuple[bool, list[ImageLike]]:
    """(whether one image was given, the images as a list)."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        if images.dtype != np.uint8 or images.shape[-1] not in (3, 4):
            raise DataError(f"an image batch must be a uint8 N x H x W x 3 array, got {images.dtype} {images.shape}")
        return False, list(images)
    if isinstance(images, (list, tuple)):
        return False, list(images)
    return True, [images]  # type: ignore[list-item]  # one image: a PIL image, an array or a path


def as_predictor(
    scorer: Any, size: int | None = None, threshold: float | None = None, batch_size: int | None = None
) -> Predictor:
    """A Predictor as it is (then `size`, `threshold` and `batch_size` must be left out: they are its own), or
    one made from a scorer, model or weights with these options: the pipelines (photos, videos, streams, bags)
    take either."""
    if isinstance(scorer, Predictor):
        if size is not None or threshold is not None or batch_size is not None:
            raise ConfigError("size=, threshold= and batch_size= are the Predictor's own: set them when making it")
        return scorer
    return Predictor(scorer, size=size, threshold=threshold, batch_size=4 if batch_size is None else batch_size)


__all__ = ["Output", "Predictor", "Preparer", "as_predictor"]
