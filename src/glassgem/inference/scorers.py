"""Scorers: what turns a batch of squashed photos float [B,3,s,s] RGB 0..255 into 2-class scores
[B,2,s,s], with an `input_size` attribute. A GEM model (ModelScorer, loaded by load_model_for_inference)
or an exported ONNX graph (onnx_runner.OnnxScorer); FlipAveraged adds flip test-time augmentation to either.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..config import check_smoothing
from ..hub.pretrained import GEM
from .protocol import flip_averaged
from .runtime import autocast, resolve_device, resolve_dtype

Scorer = Callable[[torch.Tensor], torch.Tensor]  # float [B,3,s,s] 0..255 -> [B,2,s,s]


def load_model_for_inference(
    weights: Optional[str], device: Optional[str] = None, dtype: str = "fp32", smoothing: Optional[float] = None
) -> tuple[GEM, torch.device, Optional[torch.dtype]]:
    """(model in eval mode on its device, BatchNorms folded, device, autocast dtype or None for fp32).
    `weights`: as GEM.from_pretrained (None: the shipped model). `smoothing`: replaces the model's
    `score_smoothing` (0: off, the original protocol's raw scores)."""
    autocast_dtype = resolve_dtype(dtype)
    dev = resolve_device(device)
    model = GEM.from_pretrained(weights).to(dev).eval().fuse_for_inference()
    if smoothing is not None:
        model.cfg.score_smoothing = check_smoothing(smoothing)
    return model, dev, autocast_dtype


class ModelScorer:
    """A GEM model as a scorer: no grad, eval mode, on its device, under the requested autocast."""

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: Optional[torch.dtype] = None):
        self.model, self.device, self.dtype = model.eval(), device, dtype
        self.input_size = int(model.cfg.image_size)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.dtype):
            return self.model.semantic_scores(images.to(self.device))


class FlipAveraged:
    """Any scorer (GEM or ONNX) with flip test-time augmentation: 2 forward passes per batch."""

    def __init__(self, scorer) -> None:
        self.scorer = scorer

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return flip_averaged(self.scorer, torch.as_tensor(images))

    def __getattr__(self, name: str):  # input_size, square_size, config, ... of the wrapped scorer
        return getattr(self.scorer, name)


def build_scorer(
    weights: Optional[str], device: Optional[str] = None, dtype: str = "fp32", smoothing: Optional[float] = None
) -> ModelScorer:
    """The shipped model (weights=None), a glassgem directory or an original GEM checkpoint; `smoothing`
    replaces the model's score smoothing (see load_model_for_inference)."""
    model, dev, autocast_dtype = load_model_for_inference(weights, device, dtype, smoothing)
    return ModelScorer(model, dev, autocast_dtype)


__all__ = ["FlipAveraged", "ModelScorer", "Scorer", "build_scorer", "load_model_for_inference"]
