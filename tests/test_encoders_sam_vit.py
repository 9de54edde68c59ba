"""SAM ViT-B (GEM-Base encoder, from timm): the original's keys and shapes, any multiple-of-32 input."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from conftest import REFERENCE
from glassgem.config import model_preset
from glassgem.errors import ConfigError
from glassgem.model.encoders import build_encoder
from glassgem.model.encoders.sam_vit import SamViTEncoder, build_sam_vit_b, sam_to_timm_key, timm_to_sam_key

KEYS = REFERENCE / "gem-base" / "keys.txt"


@pytest.fixture(scope="module")
def vit() -> SamViTEncoder:
    return build_encoder(model_preset("gem-base")).eval()


@pytest.mark.skipif(
    not KEYS.is_file(),
    reason=f"original GEM-Base key manifest not found at {KEYS} (set GLASSGEM_SHARED to the shared folder)",
)
def test_keys_and_shapes_equal_the_original_backbone(vit: SamViTEncoder) -> None:
    ref = {}
    for line in KEYS.read_text().splitlines():
        if line.startswith("backbone.") and not line.startswith("backbone.transpose"):
            key, shape = line.split("\t")[:2]
            ref[key[len("backbone.") :]] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    mine = {timm_to_sam_key(k): tuple(v.shape) for k, v in vit.state_dict().items()}
    assert len(ref) == 177
    assert mine == ref
    # and the forward map is the one the loader uses
    assert {sam_to_timm_key(k) for k in ref} == set(vit.state_dict())


def test_architecture_facts(vit: SamViTEncoder) -> None:
    # docs/original.md#gem-base-backbone: 86.93 M parameters at 384², LayerNorm eps 1e-6, global blocks 2/5/8/11.
    assert round(sum(p.numel() for p in vit.parameters()) / 1e6, 2) == 86.93
    norms = [m for m in vit.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(m.eps == 1e-6 for m in norms)
    rows = [blk.attn.rel_pos_h.shape[0] for blk in vit.blocks]
    assert rows == [47 if i in (2, 5, 8, 11) else 27 for i in range(12)]
    assert vit.out_channels == 256
    assert all(getattr(blk.drop_path1, "drop_prob", 0.0) == 0.0 for blk in vit.blocks)


def test_key_renames() -> None:
    assert sam_to_timm_key("blocks.3.mlp.lin1.weight") == "blocks.3.mlp.fc1.weight"
    assert sam_to_timm_key("blocks.11.mlp.lin2.bias") == "blocks.11.mlp.fc2.bias"
    assert timm_to_sam_key("blocks.0.mlp.fc1.bias") == "blocks.0.mlp.lin1.bias"
    assert sam_to_timm_key("blocks.0.attn.qkv.weight") == "blocks.0.attn.qkv.weight"


@pytest.mark.slow
@pytest.mark.parametrize("h,w", [(384, 384), (512, 512), (480, 640)])
def test_any_multiple_of_32(vit: SamViTEncoder, h: int, w: int) -> None:
    with torch.no_grad():
        vit.pos_embed.normal_(0, 0.1)  # a non-zero pos-embed has to be resampled to the grid
        for blk in vit.blocks:
            blk.attn.rel_pos_h.normal_(0, 0.1)
            blk.attn.rel_pos_w.normal_(0, 0.1)
    with torch.inference_mode():
        out = vit(torch.randn(1, 3, h, w))
    assert out.shape == (1, 256, h // 16, w // 16)
    assert torch.isfinite(out).all()


def test_rejects_sizes_that_are_not_multiples_of_32(vit: SamViTEncoder) -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        vit(torch.randn(1, 3, 400, 384))


def test_stored_grid_follows_image_size() -> None:
    cfg = dataclasses.replace(model_preset("gem-base"), image_size=512)
    enc = build_encoder(cfg)
    assert tuple(enc.pos_embed.shape) == (1, 32, 32, 768)
    assert tuple(enc.blocks[2].attn.rel_pos_h.shape) == (63, 64)
    with pytest.raises(ConfigError, match="multiple of 32"):
        build_encoder(dataclasses.replace(cfg, image_size=500))


def test_drop_path_follows_config() -> None:
    enc = build_sam_vit_b(drop_path_rate=0.2)
    assert enc.blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)
