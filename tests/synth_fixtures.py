"""Tiny offline Stable Diffusion / ControlNet / CLIP components for the synthesis tests.

The shapes are the small configs diffusers' own tests use; the weights are random and
seeded, so every test sees the same model. The CLIP tokenizer is built from a vocab.json + merges.txt
written here (printable ASCII, ids < 1000), because diffusers' tests fetch theirs from the hub.
Nothing here touches the network.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image

CROSS_ATTENTION_DIM = 32
_CHARS = [chr(i) for i in range(33, 127)]  # printable ASCII: every prompt character is a token
_MERGES = [("t", "h"), ("th", "e</w>"), ("g", "l"), ("a", "s"), ("gl", "as"), ("s", "s</w>")]


def write_tiny_tokenizer(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "!!": 1, "<|endoftext|>": 2}
    for token in _CHARS + [c + "</w>" for c in _CHARS] + [a + b for a, b in _MERGES]:
        vocab.setdefault(token, len(vocab))
    assert max(vocab.values()) < 1000  # the tiny text encoder's vocab_size
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in _MERGES))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    return folder


def _tiny_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CROSS_ATTENTION_DIM,
        norm_num_groups=1,
    )


def tiny_controlnet(seed: int = 1):
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    net = ControlNetModel(
        block_out_channels=(4, 8),
        layers_per_block=2,
        in_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        cross_attention_dim=CROSS_ATTENTION_DIM,
        conditioning_embedding_out_channels=(16, 32),
        norm_num_groups=1,
    )
    # A fresh ControlNet's zero convolutions make it a no-op; perturb them so it steers the UNet and a
    # training step that changes the ControlNet changes the images.
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "zero_conv" in name or "controlnet_mid_block" in name or "controlnet_down_blocks" in name:
                p.add_(torch.randn_like(p) * 0.05)
    return net


def make_tiny_sd(folder: Path) -> Path:
    """A local "SD model folder" in the diffusers layout: unet/, vae/, text_encoder/, tokenizer/, scheduler/."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    _tiny_unet().save_pretrained(folder / "unet")
    torch.manual_seed(0)
    AutoencoderKL(
        block_out_channels=[4, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=2,
    ).save_pretrained(folder / "vae")
    torch.manual_seed(0)
    CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            hidden_size=CROSS_ATTENTION_DIM,
            intermediate_size=37,
            layer_norm_eps=1e-5,
            num_attention_heads=4,
            num_hidden_layers=5,
            pad_token_id=1,
            vocab_size=1000,
        )
    ).save_pretrained(folder / "text_encoder")
    write_tiny_tokenizer(folder / "tokenizer")
    DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    ).save_pretrained(folder / "scheduler")
    return folder


def make_tiny_controlnet_dir(folder: Path, seed: int = 1) -> Path:
    tiny_controlnet(seed).save_pretrained(folder)
    return Path(folder)


def make_tiny_clip(folder: Path) -> Path:
    """A random CLIPModel + tokenizer + image processor saved where `--clip-filter` can load it."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=1000,
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)
    write_tiny_tokenizer(Path(folder))
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return Path(folder)


def rect_mask(h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    y0, x0, y1, x1 = box
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 255
    return m


def write_masks(folder: Path, n: int = 2, size: tuple[int, int] = (64, 64)) -> list[Path]:
    """n 0/255 PNG masks of glass rectangles, named m0.png, m1.png, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    paths = []
    for i in range(n):
        box = (4 + 3 * i, 6 + 2 * i, h // 2 + 5 * i, w - 8 - i)
        path = folder / f"m{i}.png"
        Image.fromarray(rect_mask(h, w, box)).save(path)
        paths.append(path)
    return paths


def write_pairs(root: Path, n: int = 4, size: tuple[int, int] = (72, 80), seed: int = 0) -> Path:
    """root/images/*.jpg + root/masks/*.png: random "photos" with rectangle glass masks."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    write_masks(root / "masks", n, size)
    for i in range(n):
        img = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "images" / f"m{i}.jpg", quality=95)
    return root
