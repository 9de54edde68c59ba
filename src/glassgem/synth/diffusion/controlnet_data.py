"""Training data for ControlNet fine-tuning: which pairs, how each sample looks, in which order.

The paper fine-tunes on the real training split only ("validation masks never used"), so masks
from a folder named like an evaluation split are refused unless the user says otherwise.
Every random choice (caption, flip, order) is a pure function of (seed, draw number), so a resumed
run sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ...data import available_splits, find_pairs, require_valid, resolve_split
from ...data.transforms import resize_image, resize_mask
from ...errors import ConfigError, DataError
from ...io import load_image, load_mask

EVAL_SPLIT_NAMES = ("val", "valid", "validation", "test", "testing")


class EvalSplitError(DataError):
    """Masks from an evaluation split were offered for training or generation."""


def refuse_eval_split(folders: list[Path], allow: bool, option: str = "--allow-eval-masks") -> None:
    """Raise if any of `folders` has a path component named like an evaluation split."""
    if allow:
        return
    for folder in folders:
        hits = [p for p in Path(folder).parts if p.lower() in EVAL_SPLIT_NAMES]
        if hits:
            raise EvalSplitError(
                f"{folder}: masks come from a {hits[-1]!r} split folder; S-GSD must be built from training "
                f"masks only (evaluation masks would leak into training). Point at the training split, or "
                f"pass {option} if this folder really is training data"
            )


def training_pairs(data: str | os.PathLike, allow_eval_masks: bool = False, check: bool = True) -> list:
    """The image/mask pairs to fine-tune on: the `train` split if `data` has splits, else `data` itself.
    With `check`, every pair is validated first (`glassgem data check`), so bad data fails in seconds,
    not inside a data-loader worker hours into a run."""
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"{root}: training data folder not found")
    splits = available_splits(root)
    split = "train" if "train" in splits else None
    if splits and split is None and not allow_eval_masks:
        raise EvalSplitError(
            f"{root}: has only evaluation splits ({', '.join(splits)}) and no train split; "
            "point --data at training data (or pass --allow-eval-masks with the split folder itself)"
        )
    res = resolve_split(root, "auto", split)
    refuse_eval_split([root, res.images_dir.relative_to(root), res.masks_dir.relative_to(root)], allow_eval_masks)
    if check:
        require_valid(None, images=res.images_dir, masks=res.masks_dir)
    return find_pairs(None, images=res.images_dir, masks=res.masks_dir)


def _square_geometry(h: int, w: int, size: int) -> tuple[tuple[int, int], int, int]:
    """(resized h, w), top, left: short side to `size`, then the centre square."""
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    return (nh, nw), (nh - size) // 2, (nw - size) // 2


def center_square(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize the short side to `size` and take the centre square (SD's training crop)."""
    h, w = mask.shape
    hw, top, left = _square_geometry(h, w, size)
    image = resize_image(image, hw)[top : top + size, left : left + size]
    return image, center_square_mask(mask, size)


def center_square_mask(mask: np.ndarray, size: int) -> np.ndarray:
    h, w = mask.shape
    hw, top, left = _square_geometry(h, w, size)
    return resize_mask(mask, hw)[top : top + size, left : left + size]


def mask_condition(mask: np.ndarray) -> torch.Tensor:
    """{0,1} [H,W] -> the ControlNet conditioning image: float [3,H,W] in [0,1] (white = glass)."""
    return torch.from_numpy(mask.astype(np.float32)).unsqueeze(0).expand(3, -1, -1).contiguous()


class ControlNetPairs(Dataset):
    """Item `draw` (= epoch * len(pairs) + index, see DrawSampler) ->
    {"pixel_values": [3,R,R] in [-1,1], "conditioning": [3,R,R] in {0,1}, "prompt_index": int}."""

    def __init__(self, pairs: list, resolution: int, n_prompts: int, seed: int, flip: bool = True) -> None:
        if not pairs:
            raise DataError("no training pairs")
        self.pairs, self.resolution, self.n_prompts = list(pairs), resolution, n_prompts
        self.seed, self.flip = seed, flip

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, draw: int) -> dict:
        epoch, index = divmod(int(draw), len(self.pairs))
        rng = np.random.default_rng([self.seed, epoch, index])
        pair = self.pairs[index]
        image, mask = load_image(pair.image_path), load_mask(pair.mask_path)
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"{pair.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but image "
                f"{pair.image_path} is {image.shape[1]}x{image.shape[0]}"
            )
        image, mask = center_square(image, mask, self.resolution)
        prompt_index = int(rng.integers(self.n_prompts))
        if self.flip and rng.random() < 0.5:  # glass has no handedness; doubles the scenes seen
            image, mask = image[:, ::-1], mask[:, ::-1]
        pixels = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 127.5 - 1.0
        return {
            "pixel_values": pixels,
            "conditioning": mask_condition(np.ascontiguousarray(mask)),
            "prompt_index": prompt_index,
        }


class DrawSampler(Sampler):
    """An endless stream of batches of draw numbers for one process, starting at micro-batch `start`.

    Epoch e is a permutation seeded by (seed, e); process `rank` of `world` takes every world-th
    entry, and the tail that does not fill a batch on every process is dropped, so all processes
    run the same number of batches. Micro-batch m is therefore a pure function of m: resuming at
    m = step * grad_accum continues exactly where a checkpoint left off.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, start: int = 0) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world, self.start = rank, world, start
        self.batches_per_epoch = (n // world) // batch_size
        if self.batches_per_epoch == 0:
            raise ConfigError(f"{n} training pairs are fewer than batch size {batch_size} x {world} processes")

    def batch(self, m: int) -> list[int]:
        epoch, b = divmod(m, self.batches_per_epoch)
        perm = np.random.default_rng([self.seed, 1_000_003, epoch]).permutation(self.n)
        mine = perm[self.rank :: self.world]
        return [epoch * self.n + int(i) for i in mine[b * self.batch_size : (b + 1) * self.batch_size]]

    def __iter__(self) -> Iterator[list[int]]:
        m = self.start
        while True:
            yield self.batch(m)
            m += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return 2**62


def micro_batch_generator(seed: int, rank: int, micro: int) -> torch.Generator:
    """The noise/timestep generator of one micro-batch, a pure function of (seed, rank, micro)."""
    mixed = np.random.SeedSequence([seed, rank, micro]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(mixed))


def take_validation_masks(pairs: list, n: int, resolution: int) -> list[np.ndarray]:
    """The first n training masks, centre-cropped like the training samples."""
    return [center_square_mask(load_mask(p.mask_path), resolution) for p in pairs[:n]]
