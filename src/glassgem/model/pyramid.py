"""Simple feature pyramid and pixel-decoder projections (docs/original.md#simple-feature-pyramid, #pixel-decoder).

The SAM-family encoders give one stride-16 map; `SimpleFeaturePyramid` resamples it to strides 4, 8,
16, 32 (two transposed convs up, identity, max-pool down) without any extra conv or norm, as the
original. `PixelDecoder` then projects strides 8/16/32 with 1×1 conv + GroupNorm(32) (the memory of
the decoder's cross-attention, ordered stride 32, 16, 8 as the original's list) and makes the stride-4
pixel embedding with a bare 1×1 conv. The original's deformable encoder has zero layers and is absent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEVELS = ("res2", "res3", "res4", "res5")


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a B×C×H×W map (SAM's, eps 1e-6)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # layer_norm on a channels-last view: one fused kernel (and fp32 under autocast)
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


def sam_neck(cin: int, cout: int = 256) -> nn.Sequential:
    """SAM's encoder neck (1×1 conv, LayerNorm2d, 3×3 conv, LayerNorm2d; no biases): a backbone's map ->
    `cout` channels for the simple feature pyramid. The pyramid-mode neck of the encoders that do not ship
    one (EfficientNet-Lite0, the DINOv2 ViT-S/14)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 1, bias=False),
        LayerNorm2d(cout),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        LayerNorm2d(cout),
    )


class PatchConvTranspose2d(nn.ConvTranspose2d):
    """ConvTranspose2d with kernel = stride (no overlap): every input pixel independently becomes a k×k
    output patch, so it is one matmul [h·w, Cin] @ [Cin, Cout·k·k] plus a reshuffle. Same parameters
    (and numbers, up to summation order) as nn.ConvTranspose2d; oneDNN's deconvolution is ~2x slower.
    `impl = "conv"` runs nn.ConvTranspose2d's own forward instead: the ONNX export's form (one ConvTranspose
    node, which onnxruntime runs faster than the matmul and its six-axis transpose)."""

    impl = "matmul"

    def __init__(self, cin: int, cout: int, k: int = 2) -> None:
        super().__init__(cin, cout, k, stride=k)

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        """B x Cin x h x w -> B x Cout x k·h x k·w. `output_size` (nn.ConvTranspose2d's argument) can only be
        that size: with kernel = stride there is no other."""
        b, _, h, w = x.shape
        cout, k = self.out_channels, self.kernel_size[0]
        if self.impl == "conv":
            return super().forward(x, output_size)
        if output_size is not None and list(output_size[-2:]) != [h * k, w * k]:
            raise ValueError(f"output_size {output_size}: a kernel = stride {k} transposed conv gives {h * k}x{w * k}")
        y = x.flatten(2).transpose(1, 2) @ self.weight.flatten(1).to(x.dtype)  # B x h·w x Cout·k·k
        y = y.view(b, h, w, cout, k, k).permute(0, 3, 1, 4, 2, 5).reshape(b, cout, h * k, w * k)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1).to(y.dtype)


class SimpleFeaturePyramid(nn.Module):
    """Stride-16 map [B,C,h,w] -> {"res2": [B,C,4h,4w], "res3": [B,C,2h,2w], "res4": x,
    "res5": [B,C,h/2,w/2]}. Names `transpose1/2/4` are the original's (`backbone.transpose*`)."""

    def __init__(self, channels: int = 256) -> None:
        super().__init__()
        self.transpose1 = nn.Sequential(
            PatchConvTranspose2d(channels, channels, 2),
            LayerNorm2d(channels),
            nn.GELU(),
            PatchConvTranspose2d(channels, channels, 2),
        )
        self.transpose2 = nn.Sequential(PatchConvTranspose2d(channels, channels, 2))
        self.transpose4 = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: Tensor, with_res2: bool = True) -> dict[str, Tensor]:
        """`with_res2=False` skips the stride-4 map (and returns the GELU output `res2_pre` that the
        last transposed conv would consume), for inference paths that fold that conv into the masks."""
        out = {"res3": self.transpose2(x), "res4": x, "res5": self.transpose4(x)}
        if with_res2:
            out["res2"] = self.transpose1(x)
        else:
            out["res2_pre"] = self.transpose1[:3](x)
        return out

    @property
    def res2_conv(self) -> PatchConvTranspose2d:
        """The stride-4 branch's last transposed conv: what `with_res2=False` leaves to the caller."""
        conv = self.transpose1[3]
        assert isinstance(conv, PatchConvTranspose2d)
        return conv


class PixelDecoder(nn.Module):
    """1×1 projections of the pyramid. Names (`input_proj.{0,1,2}`, `mask_features`) are the original's
    `sem_seg_head.pixel_decoder.*`; input_proj[0] is res5, [1] res4, [2] res3."""

    def __init__(self, in_channels: dict[str, int] | int, hidden_dim: int = 256, mask_dim: int = 256) -> None:
        super().__init__()
        if isinstance(in_channels, int):
            in_channels = {k: in_channels for k in LEVELS}
        convs = [nn.Conv2d(in_channels[k], hidden_dim, 1) for k in ("res5", "res4", "res3")]
        self.input_proj = nn.ModuleList(nn.Sequential(conv, nn.GroupNorm(32, hidden_dim)) for conv in convs)
        self.mask_features = nn.Conv2d(in_channels["res2"], mask_dim, 1)
        for conv in convs:
            nn.init.xavier_uniform_(conv.weight)
            _zero_bias(conv)
        # c2_xavier_fill: kaiming-uniform with a=1, zero bias
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        _zero_bias(self.mask_features)

    def project(self, feats: dict[str, Tensor]) -> list[Tensor]:
        """-> [P5, P4, P3], hidden_dim channels each (the original's `multi_scale_features`)."""
        return [proj(feats[k]) for proj, k in zip(self.input_proj, ("res5", "res4", "res3"))]

    def forward(self, feats: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
        """-> (mask_features [B,mask_dim,H/4,W/4], [P5, P4, P3])."""
        return self.mask_features(feats["res2"]), self.project(feats)


__all__ = ["LEVELS", "LayerNorm2d", "PatchConvTranspose2d", "PixelDecoder", "SimpleFeaturePyramid"]


def _zero_bias(layer: nn.Conv2d | nn.Linear) -> None:
    """Zeros a layer's bias (layers built with bias=False have none)."""
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
