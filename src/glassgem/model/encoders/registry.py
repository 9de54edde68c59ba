"""The encoder registry: every encoder family registers its builders by name, with its default config.

A family file (tinyvit.py, sam_vit.py, efficientnet.py, dinov2.py, debug.py) holds the architecture, its
pure state-dict converters and one builder per encoder, registered with `register_encoder`:

    @register_encoder("tinyvit", weights=(WeightSource("sam", from_mobile_sam, "MobileSAM's mobile_sam.pt"),))
    def build_tinyvit(drop_path_rate: float = 0.0) -> TinyViT: ...

`build_encoder(name, **options)` builds one (options are the builder's keywords, named like the ModelConfig
fields), `encoder_spec(name)` gives its default config and converters, `list_encoders()` the known names.

The built-in families are imported only when one of their encoders is asked for (`BUILTIN`): the debug
encoder and GEM-S must not pay for importing timm, which the TinyViT, SAM ViT-B and EfficientNet files need.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ...config import SAM_PIXEL_MEAN, SAM_PIXEL_STD, ModelConfig
from ...errors import ConfigError
from .convert import WeightSource

# Built-in encoder name -> the family module (in this package) that registers it.
BUILTIN = {
    "tinyvit": "tinyvit",
    "sam_vit_b": "sam_vit",
    "efficientnet_lite0": "efficientnet",
    "dinov2_vits14": "dinov2",
    "debug": "debug",
}
FEATURE_MODES = ("pyramid", "native")
# ImageNet mean / std on 0..255 RGB: SAM's pixel normalisation, and DINOv2's.
IMAGENET_MEAN, IMAGENET_STD = SAM_PIXEL_MEAN, SAM_PIXEL_STD


def _same(key: str) -> str:
    return key


@dataclass(frozen=True)
class EncoderSpec:
    """One registered encoder: its builder and default config.

    - `feature_modes`: the `encoder_features` it can give ("pyramid": one stride-16 map; "native": its own
      stride-4..32 maps, CNNs only);
    - `pixel_mean` / `pixel_std`: the normalisation (0..255 RGB) its pretrained weights expect;
    - `weights`: the pretrained weights it can start from, each with its pure converter;
    - `from_sam_key` / `to_sam_key`: renames between SAM / original GEM backbone names and its own;
    - `graphs_faster`: its model's scores run faster on a CPU as TorchScript graphs than eagerly (measured).
    """

    name: str
    build: Callable[..., nn.Module]
    feature_modes: tuple[str, ...] = ("pyramid",)
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD
    weights: tuple[WeightSource, ...] = ()
    from_sam_key: Callable[[str], str] = _same
    to_sam_key: Callable[[str], str] = _same
    graphs_faster: bool = False

    def weight_source(self, init: str) -> WeightSource | None:
        """The source whose `init` is `init`, or None."""
        return next((w for w in self.weights if w.init == init), None)

    def options(self) -> tuple[str, ...]:
        """The keyword options its builder takes."""
        return tuple(inspect.signature(self.build).parameters)


_REGISTRY: dict[str, EncoderSpec] = {}


def register_encoder(
    name: str,
    *,
    feature_modes: tuple[str, ...] = ("pyramid",),
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN,
    pixel_std: tuple[float, float, float] = IMAGENET_STD,
    weights: tuple[WeightSource, ...] = (),
    from_sam_key: Callable[[str], str] = _same,
    to_sam_key: Callable[[str], str] = _same,
    graphs_faster: bool = False,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register the builder it wraps as encoder `name` (ValueError if the name is taken)."""
    bad = [m for m in feature_modes if m not in FEATURE_MODES]
    if bad or not feature_modes:
        raise ValueError(f"encoder {name!r}: feature_modes must be some of {', '.join(FEATURE_MODES)}, got {bad}")

    def register(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"encoder {name!r} is already registered (by {_REGISTRY[name].build.__module__})")
        _REGISTRY[name] = EncoderSpec(
            name,
            build,
            tuple(feature_modes),
            pixel_mean,
            pixel_std,
            tuple(weights),
            from_sam_key,
            to_sam_key,
            graphs_faster,
        )
        return build

    return register


def list_encoders() -> list[str]:
    """Every encoder name: the built-in ones and any registered since, sorted."""
    return sorted(set(BUILTIN) | set(_REGISTRY))


def encoder_spec(name: str) -> EncoderSpec:
    """The registered spec of encoder `name` (importing its family file on first use), or ConfigError
    listing the known names."""
    if name not in _REGISTRY and name in BUILTIN:
        importlib.import_module(f"{__package__}.{BUILTIN[name]}")
    if name not in _REGISTRY:
        raise ConfigError(f"unknown encoder {name!r}; choose one of {', '.join(list_encoders())}")
    return _REGISTRY[name]


def spec_of(encoder: nn.Module) -> EncoderSpec:
    """The spec of a built encoder (its class's `encoder_name`), or ConfigError for another module."""
    name = getattr(encoder, "encoder_name", None)
    if not isinstance(name, str):
        raise ConfigError(f"{type(encoder).__name__} is not a registered glassgem encoder (no encoder_name)")
    return encoder_spec(name)


def check_feature_mode(spec: EncoderSpec, encoder_features: str) -> None:
    """ConfigError unless encoder `spec` can give `encoder_features`."""
    if encoder_features not in FEATURE_MODES:
        raise ConfigError(f"unknown encoder_features {encoder_features!r}; choose one of {', '.join(FEATURE_MODES)}")
    if encoder_features not in spec.feature_modes:
        raise ConfigError(
            f"encoder_features={encoder_features!r} needs a CNN encoder; {spec.name!r} only gives a stride-16 map "
            f"(use encoder_features={spec.feature_modes[0]!r})"
        )


def build_encoder(name: str | ModelConfig, **options: Any) -> nn.Module:
    """Encoder `name` with random weights, built with `options` (its builder's keywords, named like the
    ModelConfig fields: drop_path_rate, image_size, encoder_features, vit_grid_fit, hidden_dim).

    A ModelConfig as `name` builds its `encoder` with the options its fields give (explicit `options`
    win). ConfigError for an unknown name, an option the builder does not take, or a bad value."""
    if isinstance(name, ModelConfig):
        spec = encoder_spec(name.encoder)
        fields = (*spec.options(), "encoder_features")
        options = {**{k: getattr(name, k) for k in fields if hasattr(name, k)}, **options}
        name = name.encoder
    spec = encoder_spec(name)
    check_feature_mode(spec, options.get("encoder_features", "pyramid"))
    takes = spec.options()
    extra = sorted(k for k in options if k not in takes and k != "encoder_features")
    if extra:
        raise ConfigError(
            f"encoder {name!r} takes no option {', '.join(extra)} (it takes {', '.join(takes) or 'none'})"
        )
    try:
        return spec.build(**{k: v for k, v in options.items() if k in takes})
    except ValueError as e:
        raise ConfigError(f"encoder {name!r}: {e}") from None


__all__ = [
    "BUILTIN",
    "FEATURE_MODES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EncoderSpec",
    "WeightSource",
    "build_encoder",
    "check_feature_mode",
    "encoder_spec",
    "list_encoders",
    "register_encoder",
    "spec_of",
]
