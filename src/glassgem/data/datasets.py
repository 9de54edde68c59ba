"""The torch dataset over image/mask pairs found by `glassgem.data.layouts`.

`find_pairs`, `Pair` and the layout helpers are re-exported here, so
`from glassgem.data.datasets import find_pairs, GlassDataset` is all a training script needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..errors import DataError
from ..io import MAX_PIXELS, exif_note, exif_orientation, load_image, load_mask
from .layouts import LAYOUTS, Pair, available_splits, find_pairs, resolve_split, scan_folders

__all__ = ["LAYOUTS", "Pair", "available_splits", "find_pairs", "resolve_split", "scan_folders", "GlassDataset"]

Transform = Callable[[dict[str, Any], np.random.Generator], dict[str, Any]]


class GlassDataset(Dataset):
    """Loads pairs as {"image": uint8 [H,W,3] RGB, "mask": uint8 [H,W] in {0,1}, "stem"} and applies
    `transform(sample, rng)`.

    Randomness is a pure function of (seed, epoch, index), so a resumed run sees exactly the same
    augmentations regardless of worker count. Without a seed every call draws fresh entropy.
    """

    def __init__(
        self,
        pairs: list[Pair],
        transform: Transform | None = None,
        seed: int | None = None,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        self.pairs = list(pairs)
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng_for(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([self.seed, self.epoch, index])

    def load(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        image = load_image(pair.image_path, self.max_pixels)
        sample: dict[str, Any] = {"image": image, "stem": pair.stem}
        if pair.mask_path is not None:
            mask = load_mask(pair.mask_path, self.max_pixels)
            if mask.shape != image.shape[:2]:
                note = exif_note(exif_orientation(pair.image_path)) if mask.shape == image.shape[1::-1] else ""
                raise DataError(
                    f"{pair.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but image "
                    f"{pair.image_path} is {image.shape[1]}x{image.shape[0]} (width x height)"
                    + (f"; {note}" if note else "")
                )
            sample["mask"] = mask
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.pairs):
            raise IndexError(index)
        sample = self.load(index)
        if self.transform is not None:
            sample = self.transform(sample, self.rng_for(index))
        return sample
