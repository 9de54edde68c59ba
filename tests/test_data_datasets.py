"""GlassDataset: what a sample holds, mask forms, EXIF, odd image modes, reproducible randomness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from conftest import GDD_DEV, needs_gdd_dev
from glassgem.data.datasets import GlassDataset, Pair, find_pairs
from glassgem.data.transforms import TestTransform, TrainTransform, collate
from glassgem.errors import DataError

GLASS = np.zeros((12, 16), np.uint8)
GLASS[2:9, 3:11] = 1  # the reference glass region, {0,1}


def _image(path: Path, h: int = 12, w: int = 16) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _sample_mask(tmp_path: Path, mask_file: Path) -> np.ndarray:
    ds = GlassDataset([Pair("a", _image(tmp_path / "a.png"), mask_file)])
    return ds[0]["mask"]


def test_sample_is_uint8_image_and_binary_mask(tmp_path):
    Image.fromarray(GLASS * 255).save(tmp_path / "m.png")
    s = GlassDataset([Pair("a", _image(tmp_path / "a.png"), tmp_path / "m.png")])[0]
    assert s["stem"] == "a"
    assert s["image"].dtype == np.uint8 and s["image"].shape == (12, 16, 3)
    assert s["mask"].dtype == np.uint8 and s["mask"].shape == (12, 16)
    np.testing.assert_array_equal(s["mask"], GLASS)


def test_mask_forms_load_identically(tmp_path):
    Image.fromarray(GLASS * 255).save(tmp_path / "m255.png")
    Image.fromarray(GLASS).save(tmp_path / "m01.png")
    pal = Image.fromarray(GLASS, mode="L").convert("P")
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    pal.save(tmp_path / "mpal.png")
    assert Image.open(tmp_path / "mpal.png").mode == "P"
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[GLASS == 1] = (255, 255, 255)
    Image.fromarray(rgb).save(tmp_path / "mrgb.png")
    red = np.zeros((12, 16, 3), np.uint8)
    red[GLASS == 1] = (255, 0, 0)  # a coloured annotation: any colour is glass
    Image.fromarray(red).save(tmp_path / "mred.png")
    for name in ("m255", "m01", "mpal", "mrgb", "mred"):
        np.testing.assert_array_equal(_sample_mask(tmp_path, tmp_path / f"{name}.png"), GLASS, err_msg=name)


def test_exif_rotated_image_is_upright_and_aligned_with_mask(tmp_path):
    # The photo as displayed: portrait 12x8 (h x w), red where the glass is.
    shown = np.zeros((12, 8, 3), np.uint8)
    shown[1:5, 1:7] = (255, 0, 0)
    mask = np.zeros((12, 8), np.uint8)
    mask[1:5, 1:7] = 255
    # Stored on disk landscape, with EXIF orientation 6 ("rotate 90 degrees clockwise to display").
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(shown, k=1)))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "p.jpg", exif=exif, quality=100)
    Image.fromarray(mask).save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.jpg").size == (12, 8)  # width 12 on disk

    s = GlassDataset([Pair("p", tmp_path / "p.jpg", tmp_path / "p.png")])[0]
    assert s["image"].shape == (12, 8, 3)
    red = (s["image"][..., 0] > 128) & (s["image"][..., 1] < 128)
    assert (red == (s["mask"] == 1)).mean() > 0.95  # JPEG blurs a pixel or two at the edge


def test_16bit_and_rgba_images_convert(tmp_path):
    Image.fromarray(GLASS * 255).save(tmp_path / "m.png")
    ramp = (np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 300).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    rgba = np.zeros((12, 16, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 8:, 3] = 255  # left half fully transparent, right half opaque red-ish
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")

    ds = GlassDataset(
        [
            Pair("deep", tmp_path / "deep.png", tmp_path / "m.png"),
            Pair("alpha", tmp_path / "alpha.png", tmp_path / "m.png"),
        ]
    )
    deep = ds[0]["image"]
    assert deep.dtype == np.uint8 and deep.shape == (12, 16, 3)
    # 16-bit values are rescaled to 0..255, not clipped: the brightest pixel (57300/65535) maps to ~223.
    assert 220 <= int(deep.max()) <= 225 and int(deep.min()) == 0
    alpha = ds[1]["image"]
    assert alpha.shape == (12, 16, 3)
    assert (alpha[:, :8] == 255).all()  # transparent -> composited on white
    assert (alpha[:, 8:, 0] == 200).all() and (alpha[:, 8:, 1] == 0).all()


def test_size_mismatch_names_both_files(tmp_path):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "m.png")
    ds = GlassDataset([Pair("a", _image(tmp_path / "a.png"), tmp_path / "m.png")])
    with pytest.raises(DataError) as e:
        ds[0]
    assert "m.png" in str(e.value) and "a.png" in str(e.value) and "10x10" in str(e.value)


def test_corrupt_image_is_a_data_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    Image.fromarray(GLASS).save(tmp_path / "m.png")
    with pytest.raises(DataError, match="a.jpg"):
        GlassDataset([Pair("a", tmp_path / "a.jpg", tmp_path / "m.png")])[0]


def test_image_only_pair_has_no_mask(tmp_path):
    s = GlassDataset([Pair("a", _image(tmp_path / "a.png"), None)], TestTransform(64))[0]
    assert "mask" not in s and s["image"].shape == (3, 64, 64) and s["orig_size"] == (12, 16)


def _two_pairs(tmp_path: Path) -> list[Pair]:
    big = np.zeros((300, 400), np.uint8)
    big[50:250, 100:300] = 255
    Image.fromarray(big).save(tmp_path / "m.png")
    return [
        Pair("a", _image(tmp_path / "a.png", 300, 400), tmp_path / "m.png"),
        Pair("b", _image(tmp_path / "b.png", 300, 400), tmp_path / "m.png"),
    ]


def test_seeded_augmentation_is_a_function_of_seed_epoch_index(tmp_path):
    pairs = _two_pairs(tmp_path)
    t = TrainTransform(size=128, min_sizes=(128, 200, 300))
    a, b = GlassDataset(pairs, t, seed=7), GlassDataset(pairs, t, seed=7)
    for i in range(2):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["sem"], b[i]["sem"])
    # Repeated reads of one item agree (what a resumed run relies on) ...
    assert torch.equal(a[0]["image"], a[0]["image"])
    # ... and a new epoch or another seed draws new augmentations.
    first = a[0]["image"]
    a.set_epoch(1)
    assert not torch.equal(first, a[0]["image"])
    assert not torch.equal(first, GlassDataset(pairs, t, seed=8)[0]["image"])


def test_dataloader_batches_with_collate(tmp_path):
    ds = GlassDataset(_two_pairs(tmp_path), TrainTransform(size=(64, 96), min_sizes=(100,)), seed=0)
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=collate)))
    assert batch["image"].shape == (2, 3, 64, 96) and batch["image"].dtype == torch.float32
    assert batch["sem"].shape == (2, 64, 96) and batch["sem"].dtype == torch.int64
    assert batch["stem"] == ["a", "b"]


def test_index_out_of_range(tmp_path):
    with pytest.raises(IndexError):
        GlassDataset(_two_pairs(tmp_path))[2]


@needs_gdd_dev
def test_gdd_dev_samples_load():
    pairs = find_pairs(GDD_DEV, split="val")
    assert len(pairs) == 99
    ds = GlassDataset(pairs, TrainTransform(), seed=0)
    s = ds[0]
    assert s["image"].shape == (3, 384, 384) and s["sem"].shape == (384, 384)
    assert set(s["sem"].unique().tolist()) <= {0, 1, 255}
    raw = GlassDataset(pairs)[0]
    assert raw["mask"].max() == 1  # GDD masks are 0/255 on disk
