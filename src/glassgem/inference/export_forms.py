"""What an ONNX export of GEM holds: the semantic-inference wrapper and the modules' exportable forms.

Deformable attention is exported in its `grid_sample` form (the original's: one GridSample per level),
not the default `embedding_bag` form, which has no ONNX op and becomes a Loop (~1.8x slower
in onnxruntime). The two agree to float rounding (~1e-6); the verification compares with the default form.
The pyramid's kernel = stride transposed convolutions (a matmul and a reshuffle in PyTorch) are exported
as ConvTranspose nodes, which onnxruntime runs faster. Likewise timm's SAM ViT-B attention (GEM-Base) is
exported without its fused SDPA call. Checked: debug, GEM-Tiny, GEM-Lite (dynamic batch) and GEM-Base (398 MiB)
export and match within 4e-5.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..model.deform_attn import MSDeformAttn
from ..model.postprocess import semantic_scores_from_queries, top_queries
from ..model.pyramid import PatchConvTranspose2d


class SemanticScores(nn.Module):
    """GEM + semantic inference as one module: images [B,3,H,W] 0..255 -> scores [B,2,H,W] fp32.

    The post-processing of `GEM.semantic_scores` (model/postprocess.py: the semantic map, then the score
    smoothing, baked in for the exported size) in its whole-batch form (Resize, Sigmoid, MatMul) instead of
    the per-image, row-tiled loop of CPU inference, which would fix the batch size in the graph.
    """

    def __init__(self, model: nn.Module, max_queries: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.max_queries = max_queries

    def forward(self, images: Tensor) -> Tensor:
        out = self.model(images)
        logits, masks = out["pred_logits"], out["pred_masks"]
        if self.max_queries is not None:
            logits, masks = top_queries(logits, masks, self.max_queries)
        smoothing = getattr(getattr(self.model, "cfg", None), "score_smoothing", 0.0)
        return semantic_scores_from_queries(logits, masks, (images.shape[-2], images.shape[-1]), smoothing, tiled=False)


def use_export_forms(model: nn.Module) -> None:
    """Switch `model`'s modules to their exportable forms (see the module docstring): deformable attention
    to grid_sample, the pyramid's transposed convolutions to one ConvTranspose node each, and timm attention
    (SAM ViT-B) off its fused SDPA call, whose decomposition in torch.export lays out the output differently
    from the kernel traced, so timm's `.view` after it fails."""
    for m in model.modules():
        if isinstance(m, MSDeformAttn):
            m.impl = "grid_sample"
        if isinstance(m, PatchConvTranspose2d):
            m.impl = "conv"
        if isinstance(getattr(m, "fused_attn", None), bool):
            setattr(m, "fused_attn", False)  # a plain attribute (nn.Module's typing knows only tensors and modules)


__all__ = ["SemanticScores", "use_export_forms"]
