"""Frozen TorchScript graphs of the network's `semantic_scores` for CPU fp32 inference.

Eager PyTorch runs GEM-Lite's ~1,000 small ops one by one. Tracing `semantic_scores` for one input shape,
freezing the weights into the graph and running `torch.jit.optimize_for_inference` (conv + add/ReLU
fusion, oneDNN convolutions with pre-packed weights) makes the same computation faster: measured on the
2-core dev VM, GEM-Lite at 384² 62 -> 47..53 ms, with scores within ~3e-6 of eager on real photos and the
same glass map. Tracing costs about 1.5 s per input shape, what the graph saves over ~100 calls, so a
shape is traced only once it has taken `after_seconds` (default 5 s) of eager time, i.e. once the savings
forgone (~25% of that time) approach the tracing cost (the ski-rental rule: never much more than ~2x the
better choice's total). A one-off `glassgem predict` never waits for a trace; a camera stream or a long
evaluation switches over after ~80 frames. `glassgem bench` traces in its warm-up and times the steady
state. Graphs are kept for the last few shapes.

Used only where it computes what eager PyTorch would: eval mode, no autograd, no autocast, CPU. Anything
else (or a tracing failure, e.g. in a later PyTorch without TorchScript) runs the eager model. A graph holds a
frozen copy of the weights, so scorers.ModelScorer keeps graphs only for a model fused for inference
(runtime.fuse_for_inference), whose weights no longer change.
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict

import torch
from torch import Tensor, nn

from ..model.gem import GEM


class _Scores(nn.Module):
    """The eager `semantic_scores` as a module owning the model, so tracing sees its weights as parameters."""

    def __init__(self, model: GEM) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model.semantic_scores(images)


class ScoreGraphs:
    """Per input shape, a frozen graph of `model.semantic_scores` (the last `max_graphs` shapes), made once
    that shape has run `after_seconds` eagerly (0: at the first call)."""

    def __init__(self, model: GEM, max_graphs: int = 4, after_seconds: float = 5.0) -> None:
        self.model, self.max_graphs, self.after_seconds = model, max_graphs, after_seconds
        self.graphs: OrderedDict[tuple, torch.jit.ScriptModule] = OrderedDict()
        self.eager_seconds: dict[tuple, float] = {}  # per shape not traced yet
        self.failed: str | None = None  # why tracing was given up (then everything runs eagerly)

    def applies(self, images: Tensor) -> bool:
        return (
            self.failed is None
            and not self.model.training
            and images.device.type == "cpu"
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")
            and images.dtype in (torch.float32, torch.uint8)
        )

    def __call__(self, images: Tensor) -> Tensor:
        if not self.applies(images):
            return self.model.semantic_scores(images)
        # the smoothing is traced in as a constant, so a changed cfg.score_smoothing needs its own graph
        key = (tuple(images.shape), images.dtype, torch.get_num_threads(), self.model.cfg.score_smoothing)
        graph = self.graphs.get(key)
        if graph is None:
            if self.eager_seconds.get(key, 0.0) < self.after_seconds:
                start = time.perf_counter()
                scores = self.model.semantic_scores(images)
                self.eager_seconds[key] = self.eager_seconds.get(key, 0.0) + time.perf_counter() - start
                return scores
            graph = self._trace(images)
            if graph is None:
                return self.model.semantic_scores(images)
            self.eager_seconds.pop(key, None)
            self.graphs[key] = graph
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        else:
            self.graphs.move_to_end(key)
        return graph(images)

    def _trace(self, images: Tensor) -> torch.jit.ScriptModule | None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchScript's deprecation and shape-constant notes
                traced = torch.jit.trace(_Scores(self.model).eval(), images, check_trace=False)
                return torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        except Exception as e:  # noqa: BLE001 - any failure means: run eagerly, as without graphs
            self.failed = f"{type(e).__name__}: {e}"
            warnings.warn(
                f"TorchScript graph of the model failed ({self.failed}); running it eagerly (same results, slower)",
                stacklevel=3,
            )
            return None


__all__ = ["ScoreGraphs"]
