"""The test-time protocol of the original, for one image or a batch, with no dependency on data/.

Squash the photo to size x size (aspect not kept, PIL bilinear as the original's T.Resize), compute the
2-class semantic scores, resize them bilinearly back to the photo's size, and call a pixel glass where the
glass score beats the background score (ties go to background). These are the protocol's pieces; the one
prediction path built from them is glassgem.Predictor (predictor.py), which `GEM.predict`, `glassgem predict`
(photos, videos, streams, ROS bags) and `glassgem evaluate` all go through.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..errors import DataError, GlassgemError
from ..io import load_image, pil_to_rgb

ImageLike = Image.Image | np.ndarray | str | os.PathLike


def glass_probability(scores: Tensor) -> Tensor:
    """[..., 2, H, W] semantic scores (unnormalised sums over queries) -> glass share in [0, 1]."""
    s = scores.float().clamp_min(0)
    return s[..., 1, :, :] / (s[..., 0, :, :] + s[..., 1, :, :]).clamp_min(1e-12)


def flip_averaged(score_fn, images: Tensor) -> Tensor:
    """Test-time augmentation: the mean of score_fn(images) and the mirrored scores of the mirrored
    images ([B,3,H,W] -> [B,2,H,W]); two forward passes. Not part of the paper's protocol: opt-in."""
    return 0.5 * (score_fn(images).float() + score_fn(images.flip(-1)).float().flip(-1))


def check_threshold(threshold: float | None) -> float | None:
    """None (the larger score wins: the paper's protocol) or a glass-probability cut strictly in (0, 1)."""
    if threshold is None:
        return None
    t = float(threshold)
    if not 0.0 < t < 1.0:
        raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
    return t


def threshold_option(threshold: float | None) -> float | None:
    """check_threshold for the command line: a bad value is a GlassgemError naming --threshold."""
    try:
        return check_threshold(threshold)
    except ValueError as e:
        raise GlassgemError(f"--threshold: {e}") from None


def glass_mask(scores: Tensor, threshold: float | None = None) -> Tensor:
    """[..., 2, H, W] semantic scores -> uint8 {0, 1} [..., H, W]. Default: glass score > background score
    (ties: background), i.e. glass probability > 0.5. With `threshold` (checked by the caller, check_threshold):
    glass probability > threshold (lower finds more glass and more false glass)."""
    if threshold is None:
        return (scores[..., 1, :, :] > scores[..., 0, :, :]).to(torch.uint8)
    return (glass_probability(scores) > threshold).to(torch.uint8)


def as_rgb_array(image: ImageLike, bgr: bool = False) -> np.ndarray:
    """A PIL image, a uint8 array (H x W x 3 RGB, H x W x 4 RGBA with the alpha dropped, or H x W grey) or an
    image file -> uint8 RGB H x W x 3. `bgr`: arrays are in OpenCV's B, G, R order (PIL images and files are
    read in their own order whatever it says).

    Files go through glassgem.io.load_image (EXIF orientation applied, any mode converted). A PIL
    image is taken as given (no EXIF rotation: the mask must line up with the pixels passed in).
    """
    if isinstance(image, Image.Image):
        try:
            image.load()
            return pil_to_rgb(image)
        except (OSError, ValueError, SyntaxError) as e:  # truncated, closed, corrupt
            name = getattr(image, "filename", "") or "the PIL image"
            raise DataError(f"{name}: cannot read its pixels ({type(e).__name__}: {e})") from None
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise DataError(f"image array must be uint8 RGB (0..255), got dtype {image.dtype}")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or 0 in image.shape:
            raise DataError(
                f"image array must be H x W x 3 (RGB), H x W x 4 (RGBA) or H x W (gray), got shape {image.shape}"
            )
        image = image[:, :, 2::-1] if bgr else image[:, :, :3]
        return np.ascontiguousarray(image)
    raise DataError(f"cannot use a {type(image).__name__} as an image: pass a PIL image, a uint8 array or a path")


def squash(image: np.ndarray, size: int) -> Tensor:
    """uint8 [H,W,3] -> float32 [3,size,size] RGB 0..255, PIL bilinear (as data.transforms.TestTransform)."""
    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


def unsquash(scores: Tensor, hw: tuple[int, int]) -> Tensor:
    """[B,C,s,s] network-size scores -> [B,C,H,W] at the photo's size (bilinear, align_corners=False)."""
    if scores.ndim != 4:
        raise ValueError(f"unsquash expects [B,C,h,w] scores, got shape {tuple(scores.shape)}")
    hw = (int(hw[0]), int(hw[1]))
    if tuple(scores.shape[-2:]) == hw:
        return scores
    return F.interpolate(scores, size=hw, mode="bilinear", align_corners=False)


def check_size(size: int) -> int:
    """A square test size: a whole number, a positive multiple of 32, else DataError."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0 or size % 32:
        raise DataError(f"test size {size!r} must be a positive multiple of 32 (384 is the paper's)")
    return int(size)
