"""Validation of model and training configs: the one set of checks for every config glassgem builds or reads.

`check_model_config` runs on every model config read from a file (a model folder's config.json, a run's
saved settings) and on every config a network is built from; `check_train_config` adds the training
fields and runs before any training starts. Both raise ConfigError naming every bad field as `--set`
writes it (`model.hidden_dim='128': expected a whole number from 1 to 4096`), so nothing fails later with
a TypeError, an assertion or a petabyte allocation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .config import ModelConfig, TrainConfig
from .errors import ConfigError

# Upper bounds far above every preset (GEM-Base: hidden 256, feed-forward 2048, 300 queries, 9 layers) and
# below sizes whose weights alone would not fit in memory.
MODEL_LIMITS = {
    "hidden_dim": 4096,
    "mask_dim": 4096,
    "dim_feedforward": 65536,
    "num_queries": 10000,
    "dec_layers": 64,
    "nheads": 64,
    "dec_n_points": 64,
}
MAX_IMAGE_SIZE = 4096
# What the network is built for: two classes (background, glass) over the pyramid's three feature levels.
FIXED = {"num_classes": 2, "num_feature_levels": 3}
CHOICES = {
    "encoder_features": ("pyramid", "native"),
    "vit_pos_init": ("interpolate", "drop"),
    "vit_grid_fit": ("image", "features"),
    "dn": ("seg", "none"),
}

Need = Callable[[bool, str, Any, str], None]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v: Any, low: int, high: int | None = None) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low and (high is None or v <= high)


def _triple(v: Any, positive: bool) -> bool:
    return (
        isinstance(v, (tuple, list))
        and len(v) == 3
        and all(_number(x) for x in v)
        and (not positive or all(x > 0 for x in v))
    )


def bad_model_settings(m: ModelConfig, prefix: str = "") -> list[str]:
    """What is wrong with a model config, one phrase per field (keys written with `prefix`, e.g. 'model.')."""
    bad: list[str] = []

    def need(ok: bool, key: str, value: Any, what: str) -> None:
        if not ok:
            bad.append(f"{prefix}{key}={value!r}: {what}")

    for key in ("name", "encoder"):
        v = getattr(m, key)
        need(isinstance(v, str) and v.strip() != "", key, v, "expected a non-empty name")
    for key, choices in CHOICES.items():
        v = getattr(m, key)
        need(isinstance(v, str) and v in choices, key, v, f"expected {' or '.join(choices)}")
    for key, high in MODEL_LIMITS.items():
        v = getattr(m, key)
        need(_whole(v, 1, high), key, v, f"expected a whole number from 1 to {high}")
    for key, value in FIXED.items():
        v = getattr(m, key)
        need(_whole(v, value, value), key, v, f"expected {value} (what the network is built for)")
    need(
        _whole(m.dn_num, 0, MODEL_LIMITS["num_queries"]),
        "dn_num",
        m.dn_num,
        f"expected a whole number from 0 to {MODEL_LIMITS['num_queries']}",
    )
    need(
        _whole(m.image_size, 32, MAX_IMAGE_SIZE) and m.image_size % 32 == 0,
        "image_size",
        m.image_size,
        f"expected a multiple of 32 from 32 to {MAX_IMAGE_SIZE}",
    )
    if _whole(m.hidden_dim, 1) and _whole(m.nheads, 1) and m.hidden_dim % m.nheads:
        bad.append(f"{prefix}hidden_dim={m.hidden_dim}: must be a multiple of {prefix}nheads={m.nheads}")
    need(isinstance(m.use_dqs, bool), "use_dqs", m.use_dqs, "expected true or false")
    need(_triple(m.pixel_mean, positive=False), "pixel_mean", m.pixel_mean, "expected 3 finite numbers (R, G, B)")
    need(_triple(m.pixel_std, positive=True), "pixel_std", m.pixel_std, "expected 3 finite numbers > 0 (R, G, B)")
    need(
        _number(m.drop_path_rate) and 0 <= m.drop_path_rate < 1,
        "drop_path_rate",
        m.drop_path_rate,
        "expected 0 to below 1",
    )
    need(
        _number(m.dn_noise_scale) and m.dn_noise_scale >= 0,
        "dn_noise_scale",
        m.dn_noise_scale,
        "expected a finite number >= 0",
    )
    need(
        _number(m.score_smoothing) and 0 <= m.score_smoothing < 0.5,
        "score_smoothing",
        m.score_smoothing,
        "expected 0 (off) to below 0.5",
    )
    return bad


def check_model_config(m: ModelConfig) -> ModelConfig:
    """`m`, or ConfigError naming every bad field."""
    bad = bad_model_settings(m)
    if bad:
        raise ConfigError(f"bad model setting{'s' if len(bad) > 1 else ''}: {'; '.join(bad)}")
    return m


def _bad_train_settings(cfg: TrainConfig) -> list[str]:
    """What is wrong with a training config, one phrase per field ('' for a good one)."""
    bad: list[str] = []

    def need(ok: bool, key: str, value: Any, what: str) -> None:
        if not ok:
            bad.append(f"{key}={value!r}: {what}")

    for key in ("lr", "clip_grad_norm", "backbone_lr_mult"):
        v = getattr(cfg, key)
        need(_number(v) and v > 0, key, v, "expected a finite number > 0")
    for key in (
        "weight_decay",
        "weight_decay_norm",
        "weight_decay_embed",
        "class_weight",
        "mask_weight",
        "dice_weight",
        "box_weight",
        "giou_weight",
        "proposal_weight",
        "no_object_weight",
        "epochs",
        "oversample_ratio",
    ):
        v = getattr(cfg, key)
        need(_number(v) and v >= 0, key, v, "expected a finite number >= 0")
    need(
        _number(cfg.importance_sample_ratio) and 0 <= cfg.importance_sample_ratio <= 1,
        "importance_sample_ratio",
        cfg.importance_sample_ratio,
        "expected 0 to 1",
    )
    need(_number(cfg.lr_gamma) and cfg.lr_gamma > 0, "lr_gamma", cfg.lr_gamma, "expected a finite number > 0")
    for key in (
        "batch_size",
        "grad_accum",
        "max_iter",
        "checkpoint_period",
        "log_period",
        "eval_period",
        "num_points",
        "max_size",
    ):
        v = getattr(cfg, key)
        need(isinstance(v, int) and v >= 1, key, v, "expected a whole number >= 1")
    for key in ("num_workers", "keep_last", "warmup_iters"):
        v = getattr(cfg, key)
        need(isinstance(v, int) and v >= 0, key, v, "expected a whole number >= 0")
    for key in ("crop_size", "eval_size"):
        v = getattr(cfg, key)
        need(isinstance(v, int) and v >= 32 and v % 32 == 0, key, v, "expected a multiple of 32, at least 32")
    sizes = cfg.min_sizes
    need(
        isinstance(sizes, (tuple, list)) and len(sizes) > 0 and all(isinstance(v, int) and v >= 1 for v in sizes),
        "min_sizes",
        list(sizes) if isinstance(sizes, (tuple, list)) else sizes,
        "expected a non-empty list of sizes >= 1",
    )
    steps = cfg.lr_steps
    need(
        isinstance(steps, (tuple, list)) and all(isinstance(v, int) and v >= 0 for v in steps),
        "lr_steps",
        steps,
        "expected a list of whole numbers >= 0",
    )
    need(
        cfg.mixed_precision in ("no", "bf16", "fp16"),
        "mixed_precision",
        cfg.mixed_precision,
        "expected no, bf16 or fp16",
    )
    need(cfg.dqs_target in ("sound", "original"), "dqs_target", cfg.dqs_target, "expected sound or original")
    need(cfg.point_padding in ("border", "zeros"), "point_padding", cfg.point_padding, "expected border or zeros")
    need(
        _number(cfg.warmup_factor) and cfg.warmup_factor > 0,
        "warmup_factor",
        cfg.warmup_factor,
        "expected a finite number > 0",
    )
    bad += bad_model_settings(cfg.model, prefix="model.")
    return bad


def check_train_config(cfg: TrainConfig) -> TrainConfig:
    """`cfg`, or ConfigError naming every bad field (as `--set` writes them) before any work starts."""
    bad = _bad_train_settings(cfg)
    if bad:
        raise ConfigError(f"bad training setting{'s' if len(bad) > 1 else ''}: {'; '.join(bad)}")
    return cfg


__all__ = ["MODEL_LIMITS", "bad_model_settings", "check_model_config", "check_train_config"]
