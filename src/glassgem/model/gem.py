"""GEM: normalisation + encoder + simple feature pyramid + pixel decoder + DQS + MaskDINO-style decoder.

Output contract of `GEM.forward(images, targets=None)` (the training criterion is written against it):

- images: float RGB in 0..255, [B, 3, H, W], H and W multiples of 32.
- targets (training only): a list of B dicts {"labels": int64 [n] (class ids present, sorted:
  0 = background, 1 = glass), "masks": bool/float [n, H, W] at the input (padded) resolution,
  "boxes": float [n, 4] normalised cxcywh tight boxes}.
- returns {
    "pred_logits": [B, Q, 3] (background, glass, no-object),
    "pred_masks": [B, Q, H/4, W/4] mask logits,
    "pred_boxes": [B, Q, 4] sigmoid cxcywh,
    "aux_outputs": 9 dicts with the same three keys: the initial prediction from the DQS queries, then
                   decoder layers 1..8 (in eval mode their "pred_masks" are None: only the last layer
                   predicts masks, as the original),
    "proposal_cls_logits": [B, 2, H/16, W/16] DQS logits (None when cfg.use_dqs is False),
    "dn_outputs": None, or in training with targets and cfg.dn == "seg": {"pred_logits": [B, P, 3],
                  "pred_masks": [B, P, H/4, W/4], "pred_boxes": [B, P, 4], "aux_outputs": [9 dicts,
                  index 0 = initial prediction], "scalar": int, "single_pad": int}, where the DN query of
                  image b's GT j in group g is g·single_pad + j and P = scalar·single_pad.
  }
With `internals=True` (for inspection, e.g. glassgem.viz.queries) the dict also has
    "query_indices": [B, Q] the DQS positions behind the queries, flat y·(W/16) + x by descending
                     score (query i starts from position i; None when cfg.use_dqs is False),
    "references": [B, L+1, Q, 4] the decoder's reference boxes (sigmoid cxcywh, detached): [0] the
                  initial anchors, [l] the boxes after decoder layer l.
(Q = cfg.num_queries, 9 = cfg.dec_layers.) `semantic_scores(images)` gives the original's `sem_seg`
[B, 2, H, W]: Σ_q softmax(class_q)[:2] · sigmoid(upsampled mask_q) (model/postprocess.py); argmax over
dim 1 is the glass map.

A pure nn.Module: weight files are glassgem.hub.pretrained's functions (the user-facing `glassgem.GEM` has them
as methods: from_pretrained / save_pretrained / push_to_hub); the test protocol, speed-ups and image-level
prediction are glassgem.inference's.
"""

from __future__ import annotations

from typing import Self

import torch
from torch import Tensor, nn

from ..config import ModelConfig, model_preset
from ..config_checks import check_model_config
from ..errors import ConfigError, DataError
from .decoder import GEMDecoder, MaskFn
from .encoders import build_encoder
from .postprocess import semantic_scores_from_queries, top_queries
from .pyramid import PixelDecoder, SimpleFeaturePyramid
from .query_selection import Proposals, QuerySelection


class GEM(nn.Module):
    pixel_mean: Tensor  # buffers, [1, 3, 1, 1]
    pixel_std: Tensor

    def __init__(self, cfg: ModelConfig, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = check_model_config(cfg)  # a bad field fails here, named, not deep inside a layer
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std).view(1, 3, 1, 1), persistent=False)
        self.encoder = build_encoder(cfg) if encoder is None else encoder
        channels = _encoder_channels(self.encoder)
        if cfg.encoder_features == "pyramid":
            if not isinstance(channels, int):
                raise ConfigError(f"encoder {cfg.encoder!r} gives multi-scale maps; use encoder_features='native'")
            self.pyramid: SimpleFeaturePyramid | None = SimpleFeaturePyramid(channels)
        else:
            self.pyramid = None
        self.pixel_decoder = PixelDecoder(channels, cfg.hidden_dim, cfg.mask_dim)
        self.query_selection = QuerySelection(cfg.hidden_dim, cfg.num_queries, cfg.num_classes) if cfg.use_dqs else None
        self.decoder = GEMDecoder(cfg)
        # Inference shortcut (exact up to float rounding): in eval mode the stride-4 transposed conv and the
        # mask_features 1x1 conv are folded into the mask embeddings, so the 256-ch stride-4 map is never built.
        self.fold_mask_head = True

    @classmethod
    def from_config(cls, name_or_cfg: str | ModelConfig) -> Self:
        """A randomly initialised model of a preset name or a config."""
        return cls(model_preset(name_or_cfg) if isinstance(name_or_cfg, str) else name_or_cfg)

    # ------------------------------------------------------------------------------ forward
    def normalize(self, images: Tensor) -> Tensor:
        """0..255 RGB -> (x - mean) / std, in fp32 whatever the autocast state."""
        return (images.float() - self.pixel_mean) / self.pixel_std

    def features(self, images: Tensor, with_res2: bool = True) -> dict[str, Tensor]:
        """Encoder + pyramid: {"res2".."res5"} at strides 4..32 (res2 replaced by "res2_pre", the input of
        the last transposed conv, when `with_res2` is False and the pyramid is used)."""
        x = self.encoder(self.normalize(images))
        if self.pyramid is None:
            return x
        return self.pyramid(x, with_res2=with_res2)

    def _folding(self) -> bool:
        return self.fold_mask_head and not self.training and self.pyramid is not None

    def forward(
        self,
        images: Tensor,
        targets: list[dict[str, Tensor]] | None = None,
        internals: bool = False,
        generators: list[torch.Generator] | None = None,
    ) -> dict:
        """`generators` (training): one per image for the denoising noise, so an image's noise does not
        depend on the rest of its batch (multi-process runs then match single-process ones)."""
        _check_images(images)
        if targets is not None and len(targets) != images.shape[0]:
            raise DataError(f"got {len(targets)} targets for a batch of {images.shape[0]} images")
        feats = self.features(images, with_res2=not self._folding())
        return self.forward_features(feats, targets, internals, generators)

    def forward_features(
        self,
        feats: dict[str, Tensor],
        targets: list[dict[str, Tensor]] | None = None,
        internals: bool = False,
        generators: list[torch.Generator] | None = None,
    ) -> dict:
        """The head on encoder/pyramid features {"res2" (or "res2_pre"), "res3", "res4", "res5"}."""
        proposals, memory, shapes, mask_fn = self._head_inputs(feats)
        out = self.decoder(
            proposals.queries if proposals is not None else None,
            memory,
            shapes,
            mask_fn,
            targets,
            internals,
            generators,
        )
        out["proposal_cls_logits"] = proposals.logits if proposals is not None else None
        if internals:
            out["query_indices"] = proposals.indices if proposals is not None else None
        return out

    def _head_inputs(self, feats: dict[str, Tensor]) -> tuple[Proposals | None, Tensor, list[tuple[int, int]], MaskFn]:
        """Pixel decoder + DQS: (proposals, memory [B,S,C], level shapes, mask function)."""
        multi = self.pixel_decoder.project(feats)  # [P5, P4, P3]
        if "res2" in feats:
            mask_features = self.pixel_decoder.mask_features(feats["res2"])  # B x D x H/4 x W/4
            mask_fn: MaskFn = lambda e: torch.einsum("bqc,bchw->bqhw", e, mask_features)  # noqa: E731
        else:
            mask_fn = self._folded_mask_fn(feats["res2_pre"])
        proposals = self.query_selection(multi) if self.query_selection is not None else None
        memory, shapes = flatten_levels(multi)
        return proposals, memory, shapes, mask_fn

    def _folded_mask_fn(self, pre: Tensor) -> MaskFn:
        """mask_features(transpose1[3](pre)) · e rewritten as (e·W_mask·W_convT)·pre + const: the per-query
        kernels are tiny, and the 256-ch stride-4 map is never materialised."""
        if self.pyramid is None:
            raise ValueError("the folded mask head needs the feature pyramid (res2_pre is its map)")
        convt, proj = self.pyramid.res2_conv, self.pixel_decoder.mask_features
        if convt.bias is None or proj.bias is None:
            raise ValueError("the folded mask head needs the biases of both convolutions")
        convt_bias, proj_bias = convt.bias, proj.bias
        b, c, h, w = pre.shape
        flat = pre.flatten(2)  # B x C x h·w (h, w = stride 8)

        def mask_fn(embed: Tensor) -> Tensor:  # B x Q x D -> B x Q x 2h x 2w
            q = embed.shape[1]
            e_out = embed @ proj.weight.flatten(1)  # B x Q x C' (mask weights on the convT output)
            const = e_out @ convt_bias + embed @ proj_bias  # B x Q
            kernels = e_out @ convt.weight.permute(1, 2, 3, 0).reshape(convt.weight.shape[1], 4 * c)
            m = torch.bmm(kernels.reshape(b, q * 4, c), flat.to(kernels.dtype))  # B x Q·4 x h·w
            m = m.view(b, q, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, q, 2 * h, 2 * w)
            return m + const[..., None, None].to(m.dtype)

        return mask_fn

    def semantic_scores(self, images: Tensor, max_queries: int | None = None) -> Tensor:
        """The original's `sem_seg` [B, 2, H, W] (background, glass) at the input size, fp32, box-smoothed
        per `cfg.score_smoothing` (model/postprocess.py). `max_queries`: sum only the queries with the most
        class probability (postprocess.top_queries), an approximation that saves upsampling the others.

        In eval mode only the last layer's heads run (no boxes, no aux predictions): same numbers as
        `semantic_map` on `forward`'s outputs, less work."""
        if self.training:
            out = self(images)
            logits, masks = out["pred_logits"], out["pred_masks"]
        else:
            _check_images(images)
            proposals, memory, shapes, mask_fn = self._head_inputs(self.features(images, not self._folding()))
            queries = proposals.queries if proposals is not None else None
            logits, masks = self.decoder.predict_last(queries, memory, shapes, mask_fn)
        if max_queries is not None:
            logits, masks = top_queries(logits, masks, max_queries)
        h, w = images.shape[-2:]
        return semantic_scores_from_queries(logits, masks, (h, w), self.cfg.score_smoothing)


def _encoder_channels(encoder: nn.Module) -> int | dict[str, int]:
    """An encoder's `out_channels`: an int (one stride-16 map for the pyramid) or channels per level."""
    channels = getattr(encoder, "out_channels", None)
    if not isinstance(channels, int | dict):
        raise ConfigError(f"encoder {type(encoder).__name__} has no out_channels (an int, or a dict per level)")
    return channels


def flatten_levels(multi: list[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
    """[P5, P4, P3] -> (memory [B, S, C] with levels in the order stride 8, 16, 32 as the original, shapes)."""
    levels = multi[::-1]
    shapes = [(int(x.shape[-2]), int(x.shape[-1])) for x in levels]
    return torch.cat([x.flatten(2).transpose(1, 2) for x in levels], dim=1), shapes  # contiguous


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise DataError(f"images must be a [B, 3, H, W] RGB tensor (0..255), got {shape}")
    h, w = images.shape[-2:]
    if h % 32 or w % 32 or h == 0 or w == 0:
        raise DataError(f"image size {h}x{w} is not a multiple of 32; pad or resize the input")


__all__ = ["GEM", "flatten_levels"]
