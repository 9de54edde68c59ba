"""glassgem.io: atomic writes leave either the old or the new file, with normal permissions."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from glassgem.errors import DataError
from glassgem.io import atomic_write, atomic_write_text, load_image, load_mask


def test_atomic_write_uses_the_umask_not_0600(tmp_path):
    path = atomic_write_text(tmp_path / "a.txt", "hello")
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask


def test_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "a.txt", "old")

    def broken(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_masks_in_every_form_load_as_the_same_binary_mask(tmp_path):
    m = np.zeros((6, 8), np.uint8)
    m[1:4, 2:7] = 1
    Image.fromarray(m * 255).save(tmp_path / "a.png")
    Image.fromarray(m).save(tmp_path / "b.png")
    rgb = np.stack([m * 255, m * 0, m * 0], -1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    pal = Image.fromarray(m, mode="P")
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    pal.save(tmp_path / "d.png")
    for name in "abcd":
        assert np.array_equal(load_mask(tmp_path / f"{name}.png"), m), name


def test_corrupt_image_error_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        load_image(bad)


def test_empty_file_is_called_empty(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.png: cannot read image \(empty file, 0 bytes\)"):
        load_image(empty)
    with pytest.raises(DataError, match="empty file"):
        load_mask(empty)
