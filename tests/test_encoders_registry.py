"""The encoder registry: names, lookup errors, custom encoders, each family's default config."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from conftest import run_fresh_python
from glassgem.config import MODEL_PRESETS, model_preset
from glassgem.errors import ConfigError
from glassgem.model.encoders import build_encoder, encoder_spec, list_encoders, register_encoder, registry, spec_of
from glassgem.train.encoder_init import ENCODER_INITS

BUILTIN = ["debug", "dinov2_vits14", "efficientnet_lite0", "sam_vit_b", "tinyvit"]


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test vanish after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


class _Tiny(nn.Module):
    encoder_name = "tiny_test"

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 16, stride=16)
        self.out_channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_the_builtin_encoders_are_listed() -> None:
    assert list_encoders() == BUILTIN


@pytest.mark.parametrize("name", BUILTIN)
def test_each_family_file_registers_its_encoder(name: str) -> None:
    spec = encoder_spec(name)
    assert spec.name == name
    assert spec.build.__module__ == f"glassgem.model.encoders.{registry.BUILTIN[name]}"


def test_unknown_encoder_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown encoder 'resnet50'; choose one of " + ", ".join(BUILTIN)):
        build_encoder("resnet50")


def test_unknown_option_names_what_the_builder_takes() -> None:
    with pytest.raises(ConfigError, match="encoder 'debug' takes no option image_size .*hidden_dim"):
        build_encoder("debug", image_size=64)


def test_bad_option_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="dinov2_vits14.*grid_fit must be one of image, features"):
        build_encoder("dinov2_vits14", vit_grid_fit="tokens")


def test_build_by_name_equals_build_from_config() -> None:
    cfg = dataclasses.replace(model_preset("debug"), encoder_features="native")
    torch.manual_seed(0)
    a = build_encoder(cfg)
    torch.manual_seed(0)
    b = build_encoder("debug", hidden_dim=cfg.hidden_dim, encoder_features="native")
    assert a.out_channels == b.out_channels == {"res2": 16, "res3": 32, "res4": 64, "res5": 64}
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_a_registered_encoder_builds_by_name_and_from_a_config(scratch_registry) -> None:
    @register_encoder("tiny_test")
    def build_tiny(hidden_dim: int = 8) -> _Tiny:
        return _Tiny(hidden_dim)

    assert "tiny_test" in list_encoders()
    enc = build_encoder(dataclasses.replace(model_preset("debug"), encoder="tiny_test"))
    assert enc.out_channels == model_preset("debug").hidden_dim
    assert spec_of(enc).build is build_tiny
    with pytest.raises(ConfigError, match="needs a CNN encoder; 'tiny_test' only gives a stride-16 map"):
        build_encoder("tiny_test", encoder_features="native")
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("tiny_test")(build_tiny)


def test_spec_of_refuses_a_module_of_no_family() -> None:
    with pytest.raises(ConfigError, match="Linear is not a registered glassgem encoder"):
        spec_of(nn.Linear(2, 2))


@pytest.mark.parametrize("name", ["debug", "dinov2_vits14", "tinyvit", "efficientnet_lite0"])
def test_a_built_encoder_knows_its_spec(name: str) -> None:
    assert spec_of(build_encoder(name)).name == name


@pytest.mark.parametrize("preset", sorted(MODEL_PRESETS))
def test_presets_normalise_pixels_as_their_encoders_weights_expect(preset: str) -> None:
    cfg = model_preset(preset)
    spec = encoder_spec(cfg.encoder)
    assert cfg.pixel_mean == spec.pixel_mean and cfg.pixel_std == spec.pixel_std
    assert cfg.encoder_features in spec.feature_modes


@pytest.mark.parametrize("name", BUILTIN)
def test_weight_sources_are_complete(name: str) -> None:
    for source in encoder_spec(name).weights:
        assert source.init in ENCODER_INITS and source.init != "random"
        assert callable(source.convert)
        assert (source.file is None) != (source.package is None), "a user file or a package, not both"
        if source.file:
            assert callable(source.recognise)


def test_debug_and_gem_s_encoders_build_without_timm() -> None:
    code = (
        "import sys\n"
        "from glassgem.model.encoders import build_encoder, list_encoders\n"
        "list_encoders(); build_encoder('debug'); build_encoder('dinov2_vits14')\n"
        "assert 'timm' not in sys.modules, 'timm imported'\n"
    )
    run_fresh_python(code)
