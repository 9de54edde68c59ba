"""A tiny random-init conv encoder for the `debug` preset: fast tests of everything downstream."""

from __future__ import annotations

from torch import Tensor, nn

from .registry import register_encoder


def _down(cin: int, cout: int) -> nn.Sequential:
    # one stride-2 step: 3x3 conv + GroupNorm + GELU. GroupNorm, not BatchNorm: its output does not depend
    # on the other images of the batch, so tests can compare a batch split over processes with one process.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.GroupNorm(4, cout), nn.GELU())


class DebugEncoder(nn.Module):
    """Strided 3×3 convs down to stride 16 (and 32 in native mode).

    pyramid mode: returns [B, out_dim, H/16, W/16] with `out_channels = out_dim`.
    native mode: returns {"res2","res3","res4","res5"} at strides 4/8/16/32.
    """

    encoder_name = "debug"

    def __init__(self, out_dim: int = 64, native: bool = False) -> None:
        super().__init__()
        self.native = native
        c4, c8 = max(out_dim // 4, 8), max(out_dim // 2, 8)
        self.stem = nn.Sequential(_down(3, max(c4 // 2, 8)), _down(max(c4 // 2, 8), c4))  # stride 4
        self.stage3 = _down(c4, c8)  # stride 8
        self.stage4 = _down(c8, out_dim)  # stride 16
        if native:
            self.stage5 = _down(out_dim, out_dim)  # stride 32
            self.out_channels: int | dict[str, int] = {"res2": c4, "res3": c8, "res4": out_dim, "res5": out_dim}
        else:
            self.out_channels = out_dim

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        res2 = self.stem(x)  # B x c4 x H/4 x W/4
        res3 = self.stage3(res2)  # B x c8 x H/8 x W/8
        res4 = self.stage4(res3)  # B x out_dim x H/16 x W/16
        if not self.native:
            return res4
        return {"res2": res2, "res3": res3, "res4": res4, "res5": self.stage5(res4)}


@register_encoder("debug", feature_modes=("pyramid", "native"))
def build_debug(hidden_dim: int = 64, encoder_features: str = "pyramid") -> DebugEncoder:
    """The debug encoder, `hidden_dim` channels at stride 16 (random weights only: no pretrained ones)."""
    return DebugEncoder(hidden_dim, native=encoder_features == "native")


__all__ = ["DebugEncoder", "build_debug"]
