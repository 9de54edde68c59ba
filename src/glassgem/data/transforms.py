"""The paper's train and test pipelines (docs/original.md#training-pipeline), at any input size.

Train: resize shortest edge to a random choice (or, resize_mode "squash", both sides to it) -> random crop
-> SSD colour jitter -> horizontal flip -> pad bottom/right to exactly size (image 128, label 255).
Test: squash to size (aspect not kept).
Images stay RGB 0..255 floats; the model normalises. Resizes use PIL, as detectron2 does for uint8 images
(bilinear for images, which antialiases when shrinking; nearest for masks).
All randomness comes from the `rng` passed to each call, so augmentation is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..config import RESIZE_MODES
from ..errors import DataError

# int(x * 0.1 * 512) for x = 5..20: the short-edge choices of the original 384 recipe.
PAPER_MIN_SIZES = tuple(int(x * 0.1 * 512) for x in range(5, 21))
PAD_VALUE = 128
IGNORE = 255


def min_sizes_for(base: int) -> tuple[int, ...]:
    """The recipe's short-edge choices scaled to another base (512 gives PAPER_MIN_SIZES)."""
    return tuple(int(x * 0.1 * base) for x in range(5, 21))


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if int(h) <= 0 or int(w) <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return int(h), int(w)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [H,W,3] -> float32 [3,H,W] in 0..255."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


# ------------------------------------------------------------------------------ geometry
def shortest_edge_shape(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """Output (h, w) with the short side = `short`, shrunk further if the long side would pass max_size."""
    scale = short / min(h, w)
    new_h, new_w = h * scale, w * scale
    if max(new_h, new_w) > max_size:
        shrink = max_size / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_image(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """uint8 [H,W,3] -> uint8 [h,w,3], PIL bilinear."""
    if image.shape[:2] == hw:
        return image
    out = Image.fromarray(image).resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
    return np.asarray(out)


def resize_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """uint8 [H,W] -> uint8 [h,w], nearest neighbour so labels stay labels."""
    if mask.shape == hw:
        return mask
    return np.asarray(Image.fromarray(mask).resize((hw[1], hw[0]), Image.Resampling.NEAREST))


# ------------------------------------------------------------------------------ SSD colour jitter
# OpenCV's 8-bit HSV: H in [0,180) (2 degrees per unit), S and V in [0,255]. The original jitters in
# that space with a uint8 round trip per step; the quantisation is part of the recipe, so keep it.
def rgb_to_hsv_cv(image: np.ndarray) -> np.ndarray:
    """uint8 RGB [H,W,3] -> uint8 HSV [H,W,3] in OpenCV's 8-bit convention."""
    rgb = image.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=-1)
    diff = v - rgb.min(axis=-1)
    s = np.where(v > 0, diff * 255.0 / np.maximum(v, 1.0), 0.0)
    d = np.maximum(diff, 1e-6)
    # Ties resolve in OpenCV's order: red, then green, then blue.
    h = np.where(v == r, 60.0 * (g - b) / d, np.where(v == g, 120.0 + 60.0 * (b - r) / d, 240.0 + 60.0 * (r - g) / d))
    h = np.where(diff > 0, np.mod(h, 360.0), 0.0)
    h8 = np.mod(np.round(h / 2.0), 180.0)
    return np.stack([h8, np.round(s), v], axis=-1).astype(np.uint8)


def hsv_cv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """uint8 HSV (OpenCV 8-bit) [H,W,3] -> uint8 RGB [H,W,3]."""
    hsv = hsv.astype(np.float32)
    sector = np.mod(hsv[..., 0] * 2.0 / 60.0, 6.0)
    s, v = hsv[..., 1] / 255.0, hsv[..., 2]
    i = np.minimum(np.floor(sector), 5).astype(np.int64)
    f = sector - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    # Per sector 0..5, which of (v, t, p, q) goes to R, G, B.
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.clip(np.round(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def _affine_u8(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    # Clip then truncate, as the original's astype(uint8) after each step.
    return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def adjust_saturation(image: np.ndarray, factor: float) -> np.ndarray:
    hsv = rgb_to_hsv_cv(image)
    hsv[..., 1] = _affine_u8(hsv[..., 1], alpha=factor)
    return hsv_cv_to_rgb(hsv)


def adjust_hue(image: np.ndarray, delta: int) -> np.ndarray:
    """Shift hue by `delta` OpenCV units (2 degrees each), wrapping at 180."""
    hsv = rgb_to_hsv_cv(image)
    hsv[..., 0] = np.mod(hsv[..., 0].astype(np.int64) + int(delta), 180).astype(np.uint8)
    return hsv_cv_to_rgb(hsv)


def color_aug_ssd(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness_delta: float = 32,
    contrast_range: tuple[float, float] = (0.5, 1.5),
    saturation_range: tuple[float, float] = (0.5, 1.5),
    hue_delta: int = 18,
) -> np.ndarray:
    """SSD photometric distortion on uint8 RGB: each step with p=0.5, contrast first or last."""

    def brightness(x):
        return _affine_u8(x, beta=rng.uniform(-brightness_delta, brightness_delta)) if rng.integers(2) else x

    def contrast(x):  # a plain gain, not around the mean
        return _affine_u8(x, alpha=rng.uniform(*contrast_range)) if rng.integers(2) else x

    def saturation(x):
        return adjust_saturation(x, rng.uniform(*saturation_range)) if rng.integers(2) else x

    def hue(x):
        return adjust_hue(x, int(rng.integers(-hue_delta, hue_delta + 1))) if rng.integers(2) else x

    image = brightness(image)
    if rng.integers(2):
        return hue(saturation(contrast(image)))
    return contrast(hue(saturation(image)))


# ------------------------------------------------------------------------------ pipelines
class TrainTransform:
    """Paper training augmentation. Output: {"image": float32 [3,S,S] RGB 0..255,
    "sem": int64 [S,S] with 0 background, 1 glass, `ignore` (255) on padding only, "stem"}.
    """

    def __init__(
        self,
        size: int | Sequence[int] = 384,
        min_sizes: Sequence[int] = PAPER_MIN_SIZES,
        max_size: int = 2048,
        pad_value: int = PAD_VALUE,
        ignore: int = IGNORE,
        color_jitter: bool = True,
        flip: bool = True,
        resize_mode: str = "short_edge",
    ) -> None:
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}, got {resize_mode!r}")
        self.resize_mode = resize_mode
        self.size = _hw(size)
        self.min_sizes = tuple(int(s) for s in min_sizes)
        self.max_size = int(max_size)
        self.pad_value = pad_value
        self.ignore = ignore
        self.color_jitter = color_jitter
        self.flip = flip

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator | int | None = None) -> dict[str, Any]:
        """`rng`: the generator (or seed) every random choice is drawn from; None = fresh entropy."""
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        image, mask = sample["image"], sample.get("mask")
        if mask is None:
            raise DataError(f"{sample.get('stem', '?')}: a training sample needs a mask")
        # 1. shortest edge to a random choice (long side capped), or both sides to it ("squash")
        side = int(rng.choice(self.min_sizes))
        if self.resize_mode == "squash":
            hw = (side, side)
        else:
            h, w = image.shape[:2]
            hw = shortest_edge_shape(h, w, side, self.max_size)
        image, mask = resize_image(image, hw), resize_mask(mask, hw)
        # 2. random crop of at most size (smaller when the image is smaller)
        ch, cw = min(self.size[0], hw[0]), min(self.size[1], hw[1])
        y0, x0 = int(rng.integers(hw[0] - ch + 1)), int(rng.integers(hw[1] - cw + 1))
        image, mask = image[y0 : y0 + ch, x0 : x0 + cw], mask[y0 : y0 + ch, x0 : x0 + cw]
        # 3. photometric jitter (image only)
        if self.color_jitter:
            image = color_aug_ssd(image, rng)
        # 4. horizontal flip
        if self.flip and rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        # 5. pad bottom/right to exactly size; padding is the only ignore label
        out_img = np.full((*self.size, 3), self.pad_value, dtype=np.uint8)
        out_sem = np.full(self.size, self.ignore, dtype=np.int64)
        out_img[:ch, :cw] = image
        out_sem[:ch, :cw] = mask
        return {"image": image_to_tensor(out_img), "sem": torch.from_numpy(out_sem), "stem": sample["stem"]}


class TestTransform:
    """Square (or h x w) squash, aspect ratio not kept, as the original's T.Resize((384, 384)).

    Output: {"image": float32 [3,h,w], "orig_size": (H, W), "stem", and "mask": uint8 [H,W] if given}.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, size: int | Sequence[int] = 384) -> None:
        self.size = _hw(size)

    def __call__(self, sample: dict[str, Any], rng: Any = None) -> dict[str, Any]:
        image = sample["image"]  # `rng` is accepted (and unused) so both pipelines are called alike
        out = {
            "image": image_to_tensor(resize_image(image, self.size)),
            "orig_size": (int(image.shape[0]), int(image.shape[1])),
            "stem": sample["stem"],
        }
        if sample.get("mask") is not None:
            out["mask"] = torch.from_numpy(np.array(sample["mask"], dtype=np.uint8))  # a writable copy
        return out


STACKED_KEYS = ("image", "sem")


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack "image" and "sem" into [B,...] tensors; every other key becomes a list (sizes differ)."""
    if not batch:
        raise ValueError("cannot collate an empty batch")
    return {
        key: torch.stack([s[key] for s in batch]) if key in STACKED_KEYS else [s[key] for s in batch]
        for key in batch[0]
    }
