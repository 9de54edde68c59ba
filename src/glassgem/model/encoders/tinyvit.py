"""MobileSAM's TinyViT-5M image encoder + SAM neck (GEM-Tiny), for any input whose sides are multiples of 32.

Architecture and parameter names follow the original exactly (docs/original.md#gem-tiny-backbone), so an original
`backbone.*` state dict (minus the pyramid's `transpose*`) loads with no renaming. Differences, none of
which change the numbers at 384²:
- the token grid is computed from the input at run time (the original hard-codes 24×24);
- maps travel between blocks as channels-last B×H×W×C instead of B×L×C tokens (no reshapes per block);
- the gathered attention bias is cached only while `attention_biases` is provably unchanged (same tensor,
  same version counter), so unlike the original's eval-mode cache it cannot go stale when weights are
  loaded after `.eval()`; attention runs through `scaled_dot_product_attention`;
- in eval mode each Conv_BN folds its BatchNorm into the conv weights on the fly, and 1×1 convs run as
  GEMMs over channels-last maps (all convs run channels-last: much faster depthwise convs on CPU);
- the window padding is applied after `norm` + `qkv` (a zero token maps to the constant `qkv(norm.bias)`,
  which is exactly what the original computes for its zero-padded tokens), and padded rows are cropped
  before `proj`, so no matmul is spent on padding.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch import Tensor, nn

from ..pyramid import LayerNorm2d
from .convert import Converted, StateDict, WeightSource, rename_and_fit
from .registry import register_encoder


def _conv(x: Tensor, conv: nn.Conv2d, weight: Tensor, bias: Tensor | None) -> Tensor:
    """conv2d with `conv`'s geometry; a 1×1 conv runs as a GEMM over the channels-last pixels.

    (On CPU, 1×1 convs on channels-last maps otherwise fall back to a slow im2col path.) The result is a
    channels-last B×C×H×W map either way.
    """
    if conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.groups == 1 and conv.padding == (0, 0):
        y = F.linear(x.permute(0, 2, 3, 1), weight.flatten(1), bias)  # B×H×W×Cout
        return y.permute(0, 3, 1, 2)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class Conv1x1(nn.Conv2d):
    """A bias-free 1×1 nn.Conv2d (same parameters and names) that runs as a GEMM on channels-last maps."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return _conv(x, self, self.weight, None)


class Conv2d_BN(nn.Sequential):  # noqa: N801 - the original's name; its children are `c` and `bn`
    def __init__(
        self,
        cin: int,
        cout: int,
        k: int = 1,
        stride: int = 1,
        pad: int = 0,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.c = nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False)
        bn = nn.BatchNorm2d(cout)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.zeros_(bn.bias)
        self.bn = bn

    def forward(self, x: Tensor) -> Tensor:
        c, bn = self.c, self.bn
        if self.training or bn.running_var is None or bn.running_mean is None:  # both or neither tracked
            return bn(_conv(x, c, c.weight, None))
        # Eval: fold BN into the conv weights on every call (cheap, never stale): no extra pass over the map.
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)  # Cout
        return _conv(x, c, c.weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale)


class PatchEmbed(nn.Module):
    """Two stride-2 3×3 Conv_BN: B×3×H×W → B×C×H/4×W/4."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2d_BN(3, embed_dim // 2, 3, 2, 1), nn.GELU(), Conv2d_BN(embed_dim // 2, embed_dim, 3, 2, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand, depthwise 3×3, 1×1 project; GELU comes after the residual add."""

    def __init__(self, dim: int, expand_ratio: float, drop_path: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2d_BN(dim, hidden, 1)
        self.act1 = nn.GELU()
        self.conv2 = Conv2d_BN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2d_BN(hidden, dim, 1, bn_weight_init=0.0)  # block starts as identity
        self.act3 = nn.GELU()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:  # B×C×H×W
        y = self.conv3(self.act2(self.conv2(self.act1(self.conv1(x)))))
        return self.act3(x + self.drop_path(y))


class PatchMerging(nn.Module):
    """1×1 Conv_BN, GELU, depthwise 3×3 Conv_BN (stride 1 or 2), GELU, 1×1 Conv_BN: B×C×H×W → B×H'×W'×C'."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.act = nn.GELU()
        self.conv1 = Conv2d_BN(dim, out_dim, 1)
        self.conv2 = Conv2d_BN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return x.permute(0, 2, 3, 1)  # channels-last map for the transformer blocks


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks, then PatchMerging. B×C×H×W → B×H/2×W/2×C'."""

    def __init__(self, dim: int, depth: int, drop_path: list[float], out_dim: int, expand_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio, drop_path[i]) for i in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x)


def _bias_index(window: int) -> Tensor:
    """[N, N] index (N = window²) of the bias entry for a pair of window positions: |Δy|·window + |Δx|.

    This is the order in which the original enumerates distinct (|Δy|,|Δx|) offsets (first seen from
    position (0,0), i.e. row-major), so its `attention_biases` tables load unchanged.
    """
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    return (ys[:, None] - ys[None, :]).abs() * window + (xs[:, None] - xs[None, :]).abs()


class Attention(nn.Module):
    """Window attention with a learned per-head bias indexed by (|Δy|,|Δx|); runs on a B×H×W×C map."""

    attention_bias_idxs: Tensor  # buffer, [ws², ws²]

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads, self.window = num_heads, window
        self.key_dim = dim // num_heads  # 32 in every TinyViT-5M stage; attn_ratio 1 so v has it too
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)  # output laid out per head as [q | k | v]
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        # Depends on the window only (not the input size), so it is rebuilt rather than saved.
        self.register_buffer("attention_bias_idxs", _bias_index(window), persistent=False)

    def _bias(self, dtype: torch.dtype) -> Tensor:
        """1×heads×ws²×ws² bias (4-D, so CPU SDPA picks its fused kernel; a 3-D mask falls back to math).

        Without autograd the gathered table is reused while `attention_biases` is the same tensor at the
        same version: loading weights, optimiser steps or `.to()` all change one of them, so the cache
        cannot go stale (the original's eval-mode cache could).
        """
        table = self.attention_biases
        # No caching of inference tensors (no version counter) or while tracing/compiling (the graph needs the gather).
        cacheable = not (
            torch.is_grad_enabled() or table.is_inference() or torch.jit.is_tracing() or torch.compiler.is_compiling()
        )
        if cacheable:
            key = (table._version, dtype, self.attention_bias_idxs.device)
            cached = getattr(self, "_bias_cache", None)
            if cached is not None and cached[0] is table and cached[1] == key:
                return cached[2]
        bias = table[:, self.attention_bias_idxs].to(dtype)[None]
        if cacheable:
            self._bias_cache = (table, key, bias)
        return bias

    def forward(self, x: Tensor) -> Tensor:
        B, H, W, C = x.shape
        ws, nh, kd = self.window, self.num_heads, self.key_dim
        qkv = self.qkv(self.norm(x))  # B×H×W×3C
        pad_b, pad_r = (ws - H % ws) % ws, (ws - W % ws) % ws
        if pad_b or pad_r:
            # The original zero-pads before norm; a zero token normalises to norm.bias exactly.
            pad_token = F.linear(self.norm.bias, self.qkv.weight, self.qkv.bias).to(qkv.dtype)
            padded = qkv.new_empty(B, H + pad_b, W + pad_r, 3 * C)
            padded[:, :H, :W] = qkv
            padded[:, H:] = pad_token  # bottom rows
            padded[:, :H, W:] = pad_token  # right columns
            qkv = padded
        Hp, Wp = H + pad_b, W + pad_r
        nH, nW = Hp // ws, Wp // ws
        # B×Hp×Wp×3C → 3 × (B·nH·nW) × heads × ws² × kd
        qkv = qkv.view(B, nH, ws, nW, ws, nh, 3, kd).permute(6, 0, 1, 3, 5, 2, 4, 7)
        q, k, v = qkv.reshape(3, B * nH * nW, nh, ws * ws, kd).unbind(0)
        bias = self._bias(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B·nH·nW)×heads×ws²×kd
        out = out.view(B, nH, nW, nh, ws, ws, kd).permute(0, 1, 4, 2, 5, 3, 6).reshape(B, Hp, Wp, C)
        if pad_b or pad_r:
            out = out[:, :H, :W]
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """x + attn(x); depthwise 3×3 local conv (no residual, no activation); x + mlp(x). B×H×W×C in and out."""

    def __init__(
        self, dim: int, num_heads: int, window: int, mlp_ratio: float, drop_path: float, local_conv_size: int
    ) -> None:
        super().__init__()
        self.attn = Attention(dim, num_heads, window)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2d_BN(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(x))
        # permute gives a channels-last-strided NCHW view: the conv reads it without a copy.
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.drop_path(self.mlp(x))


class BasicLayer(nn.Module):
    """Stages 1..3: TinyViT blocks, then an optional PatchMerging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        mlp_ratio: float,
        drop_path: list[float],
        local_conv_size: int,
        out_dim: int | None,
        stride: int,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads, window, mlp_ratio, drop_path[i], local_conv_size) for i in range(depth)
        )
        self.downsample = PatchMerging(dim, out_dim, stride) if out_dim is not None else None

    def forward(self, x: Tensor) -> Tensor:  # B×H×W×C
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x.permute(0, 3, 1, 2))
        return x


class TinyViT(nn.Module):
    """MobileSAM's TinyViT-5M + SAM neck: normalised B×3×H×W (H, W multiples of 32) → B×256×H/16×W/16."""

    encoder_name = "tinyvit"

    def __init__(
        self,
        embed_dims: tuple[int, ...] = (64, 128, 160, 320),
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (2, 4, 5, 10),
        window_sizes: tuple[int, ...] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        n = len(depths)
        self.out_channels = out_chans
        self.patch_embed = PatchEmbed(embed_dims[0])
        # Stochastic depth rises linearly over all blocks, the MBConv blocks included.
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i in range(n):
            drop = dpr[sum(depths[:i]) : sum(depths[: i + 1])]
            if i == 0:
                self.layers.append(ConvLayer(embed_dims[0], depths[0], drop, embed_dims[1], mbconv_expand_ratio))
                continue
            last = i == n - 1
            self.layers.append(
                BasicLayer(
                    embed_dims[i],
                    depths[i],
                    num_heads[i],
                    window_sizes[i],
                    mlp_ratio,
                    drop,
                    local_conv_size,
                    out_dim=None if last else embed_dims[i + 1],
                    # The merging into the last stage keeps the resolution, so the output stays at stride 16.
                    stride=1 if i == n - 2 else 2,
                )
            )
        self.neck = nn.Sequential(
            Conv1x1(embed_dims[-1], out_chans),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        self.apply(_init_weights)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Outputs of layers 0..3 as channels-last maps B×h×w×C (the original's `layers.i` token outputs)."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % 32 or x.shape[3] % 32:
            raise ValueError(f"TinyViT expects B×3×H×W with H, W multiples of 32, got {tuple(x.shape)}")
        # Channels-last convs: the depthwise ones run ~10× faster on CPU than with NCHW.
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))  # B×64×H/4×W/4
        outs = []
        for layer in self.layers:
            x = layer(x)  # B×H/8×W/8×128, B×H/16×W/16×160, …×320, …×320
            outs.append(x)
        return outs

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_stages(x)[-1]  # B×H/16×W/16×320
        return self.neck(x.permute(0, 3, 1, 2)).contiguous()  # B×256×H/16×W/16


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# ------------------------------------------------------------------ converters (pure: tensors in, tensors out)
_MOBILE_SAM_CLASSIFIER = ("head.", "norm_head.")  # MobileSAM's unused classifier (commented out in MobileSAM)


def from_mobile_sam(sd: StateDict, own: StateDict, vit_pos_init: str = "interpolate") -> Converted:
    """MobileSAM `image_encoder.*` tensors (prefix removed; the names are this module's) -> TinyViT, less
    the unused classifier. `vit_pos_init` (for the ViT-B's position tensors) does not apply."""
    return rename_and_fit(sd, own, lambda k: None if k.startswith(_MOBILE_SAM_CLASSIFIER) else k)


def timm_imagenet_key(key: str) -> str | None:
    """timm `tiny_vit_5m_224` name -> this module's (None: the classifier). timm's `stages.{i}` with the
    downsample at the start of stages 1-3 are MobileSAM's `layers.{i}` with the downsample at the end of
    layers 0-2; `ConvNorm.conv` is `Conv2d_BN.c`."""
    if key.startswith("head."):
        return None
    key = key.replace(".conv.", ".c.")
    key = re.sub(r"^patch_embed\.conv1\.", "patch_embed.seq.0.", key)
    key = re.sub(r"^patch_embed\.conv2\.", "patch_embed.seq.2.", key)
    m = re.match(r"^stages\.(\d+)\.downsample\.(.*)$", key)
    if m:
        return f"layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}"
    return re.sub(r"^stages\.", "layers.", key)


@register_encoder(
    "tinyvit",
    weights=(
        WeightSource(
            "sam", from_mobile_sam, "MobileSAM's mobile_sam.pt", lambda sd: "patch_embed.seq.0.c.weight" in sd
        ),
        WeightSource(
            "imagenet",
            lambda sd, own: rename_and_fit(sd, own, timm_imagenet_key),
            "timm's tiny_vit_5m_224 ImageNet weights (e.g. timm/tiny_vit_5m_224.dist_in22k_ft_in1k, "
            "its model.safetensors)",
            lambda sd: "patch_embed.conv1.conv.weight" in sd,
        ),
    ),
)
def build_tinyvit(drop_path_rate: float = 0.0) -> TinyViT:
    """MobileSAM's TinyViT-5M (GEM-Tiny), random weights; ImageNet normalisation (the registry default)."""
    return TinyViT(drop_path_rate=drop_path_rate)


__all__ = ["TinyViT", "LayerNorm2d", "build_tinyvit", "from_mobile_sam", "timm_imagenet_key"]
