"""Optimiser and learning-rate schedule of the original GEM recipe (docs/original.md#optimisation).

AdamW; the encoder and simple feature pyramid (the original's "backbone") train at lr x 0.5;
no weight decay on BatchNorm/GroupNorm/nn.LayerNorm parameters nor on nn.Embedding; everything else,
biases and the custom LayerNorm2d included, decays at 0.05 (detectron2's builder treats them so).
Schedule: linear warm-up then x gamma at each step in `lr_steps` (detectron2's WarmupMultiStepLR).

Pretrained-encoder options (GEM-S; all off by default, so the original recipe is unchanged): the encoder's
pretrained layers (everything but its `new_layers`, e.g. a neck) train at an extra `encoder_lr_mult`, with
layer-wise decay `layer_decay`^(depth from the top) for encoders that number their layers
(`lr_layer_id`), or are frozen: all of them (`freeze_encoder`) or, for such encoders, the lowest
`freeze_encoder_layers` of them (the ViT-S: 0 = patch embedding and positions, i + 1 = block i), so that
backward stops at the first trainable block; an encoder's `embeddings` (ViT position table, class
token) get `weight_decay_embed`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError
from ..model.gem import GEM

# Modules whose parameters get weight_decay_norm. The neck's LayerNorm2d is deliberately absent.
NORM_TYPES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.InstanceNorm2d,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
BACKBONE_PREFIXES = ("encoder.", "pyramid.")


def is_backbone(name: str) -> bool:
    """The original multiplies the lr of every module whose name contains "backbone"."""
    return name.startswith(BACKBONE_PREFIXES)


def _pretrained_encoder_param(encoder: nn.Module, name: str) -> bool:
    """Whether encoder parameter `name` came from pretrained weights (not one of the encoder's new layers)."""
    return not name.startswith(tuple(getattr(encoder, "new_layers", ())))


@runtime_checkable
class NumberedLayers(Protocol):
    """An encoder that numbers its layers for layer-wise lr (the ViT-S, model/encoders/dinov2.py)."""

    @property
    def num_lr_layers(self) -> int: ...

    def lr_layer_id(self, name: str) -> int: ...


def _numbered_layers(encoder: nn.Module, option: str, instead: str) -> NumberedLayers:
    """The encoder, if it numbers its layers (`lr_layer_id`, the ViT-S); ConfigError naming `option` otherwise."""
    if not isinstance(encoder, NumberedLayers):
        raise ConfigError(
            f"{option} needs an encoder with numbered layers (a ViT), not {type(encoder).__name__}; {instead}"
        )
    return encoder


def encoder_lr_scale(encoder: nn.Module, name: str, cfg: TrainConfig) -> float:
    """lr factor of encoder parameter `name` (the encoder's own key) beyond backbone_lr_mult."""
    if not _pretrained_encoder_param(encoder, name):
        return 1.0
    scale = cfg.encoder_lr_mult
    if cfg.layer_decay != 1.0:
        numbered = _numbered_layers(encoder, "layer_decay", "leave layer_decay at 1")
        scale *= cfg.layer_decay ** (numbered.num_lr_layers - 1 - numbered.lr_layer_id(name))
    return scale


def freeze_encoder(model: GEM, below: int | None = None) -> int:
    """requires_grad=False on the encoder's pretrained parameters (its new layers still train): all of
    them, or with `below` only those whose lr layer (`lr_layer_id`) is under it. -> count frozen."""
    encoder = model.encoder
    numbered = None
    if below is not None:
        numbered = _numbered_layers(encoder, "freeze_encoder_layers", "use freeze_encoder=true or leave it at 0")
    n = 0
    for name, p in encoder.named_parameters():
        if _pretrained_encoder_param(encoder, name) and (
            below is None or (numbered is not None and numbered.lr_layer_id(name) < below)
        ):
            p.requires_grad_(False)
            n += 1
    return n


def hold_encoder_batchnorm(model: GEM) -> int:
    """Put the encoder's BatchNorm layers in eval mode (running statistics used and kept, not updated); call
    after every model.train(). -> how many."""
    n = 0
    for module in model.encoder.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            n += 1
    return n


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """One group per (lr, weight decay) combination, each parameter exactly once (shared ones too)."""
    encoder = getattr(model, "encoder", None)
    embeddings = tuple(f"encoder.{n}" for n in getattr(encoder, "embeddings", ()))
    seen: set[int] = set()
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for module_name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{module_name}.{pname}" if module_name else pname
            lr = cfg.lr * (cfg.backbone_lr_mult if is_backbone(full) else 1.0)
            if encoder is not None and full.startswith("encoder."):
                lr *= encoder_lr_scale(encoder, full[len("encoder.") :], cfg)
            if isinstance(module, NORM_TYPES):
                wd = cfg.weight_decay_norm
            elif isinstance(module, nn.Embedding) or full in embeddings:
                wd = cfg.weight_decay_embed
            else:
                wd = cfg.weight_decay
            groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)


def lr_factor(step: int, steps: Iterable[int], gamma: float, warmup_iters: int, warmup_factor: float) -> float:
    """Multiplier of the base lr at iteration `step` (0-based), as detectron2's WarmupMultiStepLR."""
    factor = gamma ** bisect.bisect_right(sorted(steps), step)
    if step < warmup_iters:
        alpha = step / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, max_iter: int
) -> torch.optim.lr_scheduler.LambdaLR:
    steps = scaled_lr_steps(cfg, max_iter)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, steps, cfg.lr_gamma, cfg.warmup_iters, cfg.warmup_factor)
    )


def scaled_lr_steps(cfg: TrainConfig, max_iter: int) -> tuple[int, ...]:
    """lr_steps are given for cfg.max_iter; a run of another length keeps their relative positions."""
    if max_iter == cfg.max_iter:
        return tuple(cfg.lr_steps)
    return tuple(int(round(s * max_iter / cfg.max_iter)) for s in cfg.lr_steps)
