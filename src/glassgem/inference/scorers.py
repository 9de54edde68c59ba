"""Scorers: what turns a batch of squashed photos float [B,3,s,s] RGB 0..255 into 2-class scores
[B,2,s,s], with an `input_size` attribute. A GEM model (ModelScorer, built by build_scorer) or an exported
ONNX graph (onnx_runner.OnnxScorer); glassgem.Predictor runs either (test-time augmentation included).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..config import check_smoothing
from ..hub.pretrained import from_pretrained
from ..model.gem import GEM
from .graphs import ScoreGraphs
from .runtime import (
    autocast,
    flush_denormals,
    fuse_for_inference,
    graphs_by_default,
    inference_only,
    resolve_device,
    resolve_dtype,
)

Scorer = Callable[[torch.Tensor], torch.Tensor]  # float [B,3,s,s] 0..255 -> [B,2,s,s]


def load_model_for_inference(
    weights: str | None,
    device: str | None = None,
    dtype: str | torch.dtype | None = "fp32",
    smoothing: float | None = None,
) -> tuple[GEM, torch.device, torch.dtype | None]:
    """(model in eval mode on its device, fused for inference, device, autocast dtype or None for fp32).
    `weights`: as glassgem.hub.pretrained.from_pretrained (None: the shipped model). `smoothing`: replaces the
    model's `score_smoothing` (0: off, the original protocol's raw scores)."""
    autocast_dtype = resolve_dtype(dtype)
    dev = resolve_device(device)
    model = fuse_for_inference(from_pretrained(weights).to(dev))
    if smoothing is not None:
        model.cfg.score_smoothing = check_smoothing(smoothing)
    return model, dev, autocast_dtype


class ModelScorer:
    """A GEM model as a scorer: no grad, in eval mode for the call (a model in training mode goes back to it
    afterwards), on its device, under the requested autocast, denormal floats flushed. A model fused for
    inference (runtime.fuse_for_inference) runs through TorchScript graphs where those are faster for its
    encoder (graphs.py; `graphs` forces them on or off)."""

    def __init__(
        self,
        model: GEM,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        graphs: bool | None = None,
    ):
        self.model, self.dtype = model, dtype
        self.device = device if device is not None else next(model.parameters()).device
        self.input_size = int(model.cfg.image_size)
        if graphs is None:
            graphs = inference_only(model) and graphs_by_default(model.cfg.encoder)
        self.graphs: ScoreGraphs | None = ScoreGraphs(model) if graphs else None

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        training = self.model.training
        if training:
            self.model.eval()
        try:
            with autocast(self.device, self.dtype), flush_denormals(self.device.type == "cpu"):
                x = images.to(self.device)
                return self.graphs(x) if self.graphs is not None else self.model.semantic_scores(x)
        finally:
            if training:
                self.model.train()


def build_scorer(
    weights: str | None,
    device: str | None = None,
    dtype: str | torch.dtype | None = "fp32",
    smoothing: float | None = None,
) -> ModelScorer:
    """The shipped model (weights=None), a glassgem directory, an original GEM checkpoint or a Hub id, fused
    for inference; `smoothing` replaces the model's score smoothing (see load_model_for_inference)."""
    model, dev, autocast_dtype = load_model_for_inference(weights, device, dtype, smoothing)
    return ModelScorer(model, dev, autocast_dtype)


__all__ = ["ModelScorer", "Scorer", "build_scorer", "load_model_for_inference"]
