"""The glass-free sample photos read from installed packages (no download)."""

from __future__ import annotations

import numpy as np

from glassgem.data.samples import HELD_OUT, SKIMAGE, glass_free_photos


def test_glass_free_photos_are_rgb_uint8_and_include_the_held_out_ones():
    photos = glass_free_photos()
    assert len(photos) == len(SKIMAGE) + 3 and set(HELD_OUT) <= set(photos)
    for name, p in photos.items():
        assert p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 and min(p.shape[:2]) >= 256, name
        assert p.std() > 10, name  # a real picture, not a blank
    assert len({p.tobytes()[:4096] for p in photos.values()}) == len(photos)  # all different
