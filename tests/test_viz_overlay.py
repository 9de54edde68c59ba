"""glassgem.overlay: the glass is tinted and outlined, everything else is left as it was; sheets line up."""

from __future__ import annotations

import numpy as np
import pytest

from glassgem.overlay import grid, mask_outline, overlay_mask, side_by_side


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    mask = np.zeros((60, 80), np.uint8)
    mask[10:40, 20:70] = 1
    return image, mask


def test_overlay_tints_only_the_glass(scene):
    image, mask = scene
    out = overlay_mask(image, mask, color=(255, 40, 40), alpha=0.45, outline=True, outline_width=2)
    assert out.shape == image.shape and out.dtype == np.uint8
    outside = mask == 0
    assert np.array_equal(out[outside], image[outside])
    # interior (away from the 2 px outline): an exact alpha blend with the colour
    interior = np.zeros_like(mask, dtype=bool)
    interior[12:38, 22:68] = True
    expected = np.clip(image[interior] * 0.55 + np.array([255, 40, 40]) * 0.45 + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(out[interior], expected)
    # the outline is the band of the mask's edge, drawn in the opaque colour
    band = (mask > 0) & ~interior
    assert (out[band] == (255, 40, 40)).all()
    assert image is not out and not np.shares_memory(image, out)


def test_overlay_without_outline_and_with_0_255_masks(scene):
    image, mask = scene
    a = overlay_mask(image, mask, outline=False, color=(0, 220, 255), alpha=1.0)
    b = overlay_mask(image, mask * 255, outline=False, color=(0, 220, 255), alpha=1.0)
    assert np.array_equal(a, b)
    assert (a[mask > 0] == (0, 220, 255)).all() and np.array_equal(a[mask == 0], image[mask == 0])
    assert np.array_equal(overlay_mask(image, np.zeros_like(mask)), image)


def test_overlay_rejects_mismatched_inputs(scene):
    image, mask = scene
    with pytest.raises(ValueError, match="does not match"):
        overlay_mask(image, mask[:, :-1])
    with pytest.raises(ValueError, match="uint8"):
        overlay_mask(image.astype(np.float32), mask)
    with pytest.raises(ValueError, match="alpha"):
        overlay_mask(image, mask, alpha=1.5)


def test_mask_outline_is_the_inner_edge():
    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 5:15] = 1
    edge = mask_outline(mask, width=1)
    assert edge.sum() == 10 * 4 - 4  # the 1-pixel ring of a 10x10 square
    assert not (edge & (mask == 0)).any()
    assert not edge[6:14, 6:14].any()
    full = np.ones((8, 8), np.uint8)
    assert not mask_outline(full).any()  # glass up to the border: no outline along the image border


def test_side_by_side_scales_to_a_common_height():
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[:, :15] = 1
    sheet = side_by_side([photo, mask], gap=4)
    assert sheet.shape == (40, 60 + 4 + 60, 3) and sheet.dtype == np.uint8
    assert np.array_equal(sheet[:, :60], photo)
    assert (sheet[:, 60:64] == 255).all()  # the white gap
    right = sheet[:, 64:]
    assert (right[:, :28] == 255).all() and (right[:, 32:] == 0).all()  # the mask, scaled x2, as white/black
    labelled = side_by_side([photo, mask], labels=["photo", "mask"], gap=4)
    assert labelled.shape == sheet.shape and not np.array_equal(labelled, sheet)
    assert np.array_equal(labelled[20:, :60], photo[20:])  # the label sits in the top-left corner only


def test_grid_lays_out_rows_and_columns():
    pictures = [np.full((30, 40, 3), v, np.uint8) for v in (10, 60, 110, 160, 210)]
    sheet = grid(pictures, cols=2, cell=(30, 40), gap=2, background=(255, 255, 255))
    assert sheet.shape == (3 * 30 + 2 * 2, 2 * 40 + 2, 3)
    assert (sheet[0:30, 0:40] == 10).all() and (sheet[0:30, 42:82] == 60).all()
    assert (sheet[64:94, 0:40] == 210).all() and (sheet[64:94, 42:82] == 255).all()  # empty last cell
    # a picture of another aspect is fitted inside its cell and centred
    tall = grid([np.zeros((60, 20, 3), np.uint8)], cols=1, cell=(30, 40))
    assert tall.shape == (30, 40, 3)
    assert (tall[:, 15:25] == 0).all() and (tall[:, :14] == 255).all() and (tall[:, 26:] == 255).all()
    with pytest.raises(ValueError):
        grid([])
