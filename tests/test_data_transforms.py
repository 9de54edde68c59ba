"""The paper's train/test pipelines: geometry, padding, flips, colour jitter, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from glassgem.data.transforms import (
    PAPER_MIN_SIZES,
    TestTransform,
    TrainTransform,
    adjust_hue,
    adjust_saturation,
    collate,
    color_aug_ssd,
    hsv_cv_to_rgb,
    min_sizes_for,
    resize_image,
    resize_mask,
    rgb_to_hsv_cv,
    shortest_edge_shape,
)
from glassgem.inference.protocol import unsquash


def _sample(h: int, w: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : h // 2, w // 5 : w // 2] = 1
    return {"image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "mask": mask, "stem": "s"}


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------ train geometry
def test_paper_short_edge_choices():
    # docs/original.md#training-pipeline, as listed there.
    listed = (256, 307, 358, 409, 460, 512, 563, 614, 665, 716, 768, 819, 870, 921, 972, 1024)
    assert PAPER_MIN_SIZES == listed
    assert min_sizes_for(512) == PAPER_MIN_SIZES
    assert min_sizes_for(1024)[0] == 512 and min_sizes_for(1024)[-1] == 2048


def test_shortest_edge_shape_with_long_side_cap():
    assert shortest_edge_shape(480, 640, 256, 2048) == (256, 341)  # 640*256/480 = 341.3
    assert shortest_edge_shape(640, 480, 1024, 2048) == (1365, 1024)  # 640*1024/480 = 1365.3
    assert shortest_edge_shape(100, 1000, 256, 2048) == (205, 2048)  # 2560 long side capped at 2048


@pytest.mark.parametrize("size", [384, (256, 320)])
def test_train_output_types_and_shapes(size):
    out = TrainTransform(size=size)(_sample(240, 320), _rng(0))
    hw = (size, size) if isinstance(size, int) else size
    assert out["image"].dtype == torch.float32 and out["image"].shape == (3, *hw)
    assert out["sem"].dtype == torch.int64 and out["sem"].shape == hw
    assert out["stem"] == "s"
    assert 0 <= float(out["image"].min()) and float(out["image"].max()) <= 255  # not normalised
    assert set(out["sem"].unique().tolist()) <= {0, 1, 255}


@pytest.mark.parametrize("jitter", [False, True])
def test_padding_is_exactly_128_in_image_and_255_in_sem(jitter):
    # short side 100 is kept (min_sizes=(100,)), so the valid area is the whole 100x150 image.
    t = TrainTransform(size=384, min_sizes=(100,), color_jitter=jitter)
    for seed in range(4):
        out = t(_sample(100, 150), _rng(seed))
        img, sem = out["image"], out["sem"]
        assert (sem[100:, :] == 255).all() and (sem[:, 150:] == 255).all()
        assert (img[:, 100:, :] == 128).all() and (img[:, :, 150:] == 128).all()
        assert not (sem[:100, :150] == 255).any()  # padding is the only ignore
        assert int(sem[:100, :150].sum()) == int(_sample(100, 150)["mask"].sum())


def test_crop_never_exceeds_size_and_follows_the_resize():
    choices = (64, 80, 96, 112, 128, 160)
    t = TrainTransform(size=128, min_sizes=choices)
    # For a 100x140 image and short side s, the resized image is s x int(1.4 s + 0.5).
    possible = {(min(128, s), min(128, int(140 * s / 100 + 0.5))) for s in choices}
    seen = set()
    for seed in range(12):
        out = t(_sample(100, 140), _rng(seed))
        assert out["image"].shape == (3, 128, 128)
        valid = out["sem"] != 255
        rows, cols = int(valid.any(dim=1).sum()), int(valid.any(dim=0).sum())
        assert bool(valid[:rows, :cols].all())  # a top-left rectangle
        assert (rows, cols) in possible
        seen.add((rows, cols))
    assert len(seen) >= 3  # the short side really is drawn at random


def test_squash_mode_resizes_both_sides_like_the_test_pipeline():
    sample = _sample(100, 300)
    plain = TrainTransform(size=64, min_sizes=(64,), resize_mode="squash", color_jitter=False, flip=False)
    out = plain(sample, _rng(0))
    # At the crop size the whole photo is kept, aspect not: exactly the test view of it.
    assert torch.equal(out["image"], TestTransform(64)(sample)["image"])
    assert torch.equal(out["sem"], torch.from_numpy(resize_mask(sample["mask"], (64, 64)).astype(np.int64)))
    assert int((out["sem"] == 255).sum()) == 0  # no padding: the squashed photo fills the crop
    # Larger choices give square crops of a squashed photo (never aspect-kept shapes).
    zoom = TrainTransform(size=64, min_sizes=(96,), resize_mode="squash", color_jitter=False, flip=False)
    big = resize_image(sample["image"], (96, 96))
    out = zoom(sample, _rng(3))
    img = out["image"].permute(1, 2, 0).numpy().astype(np.uint8)
    hits = [(y, x) for y in range(33) for x in range(33) if np.array_equal(big[y : y + 64, x : x + 64], img)]
    assert len(hits) == 1
    # The paper's mode on the same photo keeps the aspect: a 64-high, 192-wide resize, cropped.
    paper = TrainTransform(size=64, min_sizes=(64,), color_jitter=False, flip=False)
    assert not torch.equal(paper(sample, _rng(0))["image"], TestTransform(64)(sample)["image"])


def test_unknown_resize_mode_is_refused_in_the_transform_and_the_config():
    from glassgem.config import TrainConfig
    from glassgem.errors import ConfigError

    with pytest.raises(ValueError, match="resize_mode"):
        TrainTransform(size=64, resize_mode="stretch")
    with pytest.raises(ConfigError, match="resize_mode.*stretch"):
        TrainConfig.from_dict({"resize_mode": "stretch"})
    assert TrainConfig.from_dict({"resize_mode": "squash"}).resize_mode == "squash"


def test_flip_moves_image_and_mask_together():
    h, w = 64, 96
    mask = np.zeros((h, w), np.uint8)
    mask[:, :30] = 1  # glass on the left only
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = mask * 255  # the red channel draws the mask
    image[..., 1] = np.arange(w, dtype=np.uint8)[None, :]  # a ramp shows the direction
    t = TrainTransform(size=(h, w), min_sizes=(h,), color_jitter=False)
    flips = 0
    for seed in range(16):
        out = t({"image": image, "mask": mask, "stem": "f"}, _rng(seed))
        img, sem = out["image"].numpy(), out["sem"].numpy()
        flipped = img[1, 0, 0] > img[1, 0, -1]
        flips += int(flipped)
        np.testing.assert_array_equal(img[0] > 127, sem == 1)
        np.testing.assert_array_equal(sem, mask[:, ::-1] if flipped else mask)
    assert 0 < flips < 16


def test_same_rng_same_output_different_rng_different_output():
    t = TrainTransform(size=128)
    s = _sample(200, 260)
    a, b, c = t(s, _rng(3)), t(s, _rng(3)), t(s, _rng(4))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["sem"], b["sem"])
    assert not torch.equal(a["image"], c["image"])
    assert torch.equal(t(s, 3)["image"], a["image"])  # an int seed is the same as default_rng(seed)


def test_colour_jitter_changes_the_image_not_the_labels():
    s = _sample(100, 150)
    plain = TrainTransform(size=128, min_sizes=(100,), flip=False, color_jitter=False)
    jitter = TrainTransform(size=128, min_sizes=(100,), flip=False, color_jitter=True)
    changed = 0
    for seed in range(6):
        a, b = plain(s, _rng(seed)), jitter(s, _rng(seed))
        assert torch.equal(a["sem"], b["sem"])
        changed += int(not torch.equal(a["image"], b["image"]))
    assert changed >= 3


def test_train_transform_needs_a_mask():
    from glassgem.errors import DataError

    with pytest.raises(DataError, match="needs a mask"):
        TrainTransform()({"image": np.zeros((8, 8, 3), np.uint8), "stem": "x"}, _rng(0))


# ------------------------------------------------------------------------------ colour jitter
COLOURS = {  # RGB -> OpenCV 8-bit HSV (H in 0..179 = degrees / 2)
    (255, 0, 0): (0, 255, 255),
    (255, 255, 0): (30, 255, 255),
    (0, 255, 0): (60, 255, 255),
    (0, 255, 255): (90, 255, 255),
    (0, 0, 255): (120, 255, 255),
    (128, 128, 128): (0, 0, 128),
    (255, 128, 128): (0, 127, 255),
}


def test_hsv_matches_opencv_convention_and_round_trips():
    rgb = np.array([list(COLOURS)], np.uint8)
    hsv = rgb_to_hsv_cv(rgb)
    np.testing.assert_array_equal(hsv, np.array([list(COLOURS.values())], np.uint8))
    np.testing.assert_array_equal(hsv_cv_to_rgb(hsv), rgb)


def test_hue_shift_and_saturation():
    red = np.array([[[255, 0, 0]]], np.uint8)
    np.testing.assert_array_equal(adjust_hue(red, 60), [[[0, 255, 0]]])  # +120 degrees
    np.testing.assert_array_equal(adjust_hue(red, -60), [[[0, 0, 255]]])
    blue = np.array([[[0, 0, 255]]], np.uint8)
    np.testing.assert_array_equal(adjust_hue(blue, 60), [[[255, 0, 0]]])  # wraps at 180
    np.testing.assert_array_equal(adjust_saturation(np.array([[[200, 100, 50]]], np.uint8), 0.0), [[[200, 200, 200]]])


def test_ssd_jitter_hue_stays_within_18_units():
    cyan = np.zeros((4, 4, 3), np.uint8)
    cyan[..., 1:] = 255  # hue 90; brightness, contrast and saturation cannot move it
    shifts = []
    for seed in range(200):
        out = color_aug_ssd(cyan, _rng(seed))
        assert out.dtype == np.uint8 and out.shape == cyan.shape
        shifts.append(int(rgb_to_hsv_cv(out)[0, 0, 0]) - 90)
    shifts = np.array(shifts)
    assert np.abs(shifts).max() <= 19  # 18 plus one unit of 8-bit rounding
    assert np.abs(shifts).max() >= 15
    assert 0.35 < np.mean(shifts != 0) < 0.65  # hue is applied half of the time


def test_ssd_jitter_leaves_about_one_image_in_sixteen_untouched():
    img = np.random.default_rng(0).integers(30, 220, (8, 8, 3), dtype=np.uint8)
    untouched = sum(np.array_equal(color_aug_ssd(img, _rng(seed)), img) for seed in range(320))
    assert 8 <= untouched <= 34  # four independent p=0.5 steps: expected 320/16 = 20


# ------------------------------------------------------------------------------ test pipeline
@pytest.mark.parametrize("size,hw", [(384, (384, 384)), ((256, 320), (256, 320)), (64, (64, 64))])
def test_test_transform_squashes_like_pil_bilinear(size, hw):
    s = _sample(300, 500)
    out = TestTransform(size)(s)
    assert out["image"].dtype == torch.float32 and out["image"].shape == (3, *hw)
    assert out["orig_size"] == (300, 500) and out["stem"] == "s"
    assert out["mask"].dtype == torch.uint8
    np.testing.assert_array_equal(out["mask"].numpy(), s["mask"])  # GT stays at original size
    # torchvision's antialiased bilinear resize reproduces PIL's to within one grey level.
    ref = TF.resize(torch.from_numpy(s["image"]).permute(2, 0, 1), list(hw), antialias=True)
    assert float((out["image"] - ref.float()).abs().max()) <= 1.0


def test_test_transform_keeps_a_constant_image_constant():
    s = {"image": np.full((123, 77, 3), 77, np.uint8), "stem": "c"}
    out = TestTransform(96)(s)
    assert "mask" not in out
    assert bool((out["image"] == 77).all())


def test_unsquash_back_to_original_size():
    scores = torch.randn(2, 2, 96, 96)
    assert unsquash(scores, (300, 500)).shape == (2, 2, 300, 500)
    assert unsquash(scores, (96, 96)) is scores
    # align_corners=False: [0, 4] doubled is [0, 1, 3, 4]
    ramp = torch.tensor([[[[0.0, 4.0]]]])
    np.testing.assert_allclose(unsquash(ramp, (1, 4))[0, 0, 0].numpy(), [0, 1, 3, 4])
    with pytest.raises(ValueError, match=r"\[B,C,h,w\]"):
        unsquash(torch.zeros(2, 8, 8), (16, 16))


def test_collate_stacks_fixed_size_keys_and_lists_the_rest():
    t = TestTransform(64)
    batch = collate([t(_sample(100, 80)), t(_sample(50, 70))])
    assert batch["image"].shape == (2, 3, 64, 64)
    assert batch["orig_size"] == [(100, 80), (50, 70)]
    assert [m.shape for m in batch["mask"]] == [(100, 80), (50, 70)]
    assert batch["stem"] == ["s", "s"]
    with pytest.raises(ValueError):
        collate([])
