"""build_encoder's choices and errors, and the tiny debug encoder the fast tests rely on."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

from glassgem.config import model_preset
from glassgem.errors import ConfigError
from glassgem.hub.encoders import build_pretrained_encoder
from glassgem.model.encoders import build_encoder
from glassgem.model.encoders.debug import DebugEncoder


def test_debug_pyramid_mode_gives_one_stride16_map() -> None:
    cfg = model_preset("debug")
    enc = build_encoder(cfg)
    assert isinstance(enc, DebugEncoder) and enc.out_channels == cfg.hidden_dim
    out = enc(torch.randn(2, 3, 96, 160))
    assert out.shape == (2, cfg.hidden_dim, 6, 10)


def test_debug_native_mode_gives_four_strides() -> None:
    enc = build_encoder(dataclasses.replace(model_preset("debug"), encoder_features="native"))
    out = enc(torch.randn(1, 3, 64, 128))
    assert list(out) == ["res2", "res3", "res4", "res5"]
    for (name, x), stride in zip(out.items(), (4, 8, 16, 32)):
        assert x.shape == (1, enc.out_channels[name], 64 // stride, 128 // stride)


def test_debug_encoder_trains() -> None:
    enc = build_encoder(model_preset("debug")).train()
    enc(torch.randn(2, 3, 64, 64)).mean().backward()
    assert all(p.grad is not None for p in enc.parameters())


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"encoder": "resnet50"}, "unknown encoder 'resnet50'"),
        ({"encoder_features": "fpn"}, "unknown encoder_features 'fpn'"),
        ({"encoder": "tinyvit", "encoder_features": "native"}, "needs a CNN encoder"),
        ({"encoder": "sam_vit_b", "encoder_features": "native"}, "needs a CNN encoder"),
    ],
)
def test_bad_choices_are_config_errors(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_encoder(dataclasses.replace(model_preset("debug"), **changes))


@pytest.mark.parametrize("encoder", ["tinyvit", "sam_vit_b", "debug"])
def test_pretrained_only_where_weights_ship(encoder: str) -> None:
    # Only EfficientNet-Lite0 and the DINOv2 ViT-S have offline weights; SAM-family files load via hub.encoders.
    with pytest.raises(ConfigError, match="pretrained"):
        build_pretrained_encoder(dataclasses.replace(model_preset("debug"), encoder=encoder))


@pytest.mark.parametrize(
    "preset,encoder_class",
    [
        ("gem-tiny", "glassgem.model.encoders.tinyvit.TinyViT"),
        ("gem-lite", "glassgem.model.encoders.efficientnet.EfficientNetLite0Encoder"),
        ("debug", "glassgem.model.encoders.debug.DebugEncoder"),
    ],
)
def test_presets_pick_their_encoders(preset: str, encoder_class: str) -> None:
    module, name = encoder_class.rsplit(".", 1)
    assert isinstance(build_encoder(model_preset(preset)), getattr(importlib.import_module(module), name))
