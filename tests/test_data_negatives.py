"""Glass-free crops (`glassgem data negatives`): the largest free rectangle, the crops, the CLI."""

from __future__ import annotations

import json
from itertools import product

import numpy as np
import pytest
from PIL import Image

from glassgem.cli import main
from glassgem.data.layouts import find_pairs
from glassgem.data.negatives import glass_free_box, glass_free_crops, largest_free_rectangle
from glassgem.errors import DataError


def _brute_force_area(grid: np.ndarray) -> int:
    h, w = grid.shape
    best = 0
    for top, left in product(range(h), range(w)):
        for bottom, right in product(range(top, h), range(left, w)):
            if not grid[top : bottom + 1, left : right + 1].any():
                best = max(best, (bottom - top + 1) * (right - left + 1))
    return best


@pytest.mark.parametrize("seed", range(12))
def test_largest_free_rectangle_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    grid = rng.random((rng.integers(1, 9), rng.integers(1, 9))) < rng.uniform(0.05, 0.6)
    box = largest_free_rectangle(grid)
    want = _brute_force_area(grid)
    if want == 0:
        assert box is None
        return
    top, left, h, w = box
    assert h * w == want and not grid[top : top + h, left : left + w].any()
    assert 0 <= top and top + h <= grid.shape[0] and 0 <= left and left + w <= grid.shape[1]


def test_glass_free_box_in_pixels_is_free_and_aspect_limited():
    mask = np.zeros((100, 300), np.uint8)
    mask[:40] = 1  # glass on top: a free 60 x 300 strip below, trimmed to 60 x 120 around its centre
    top, left, h, w = glass_free_box(mask, cell=8, max_aspect=2.0)
    assert not mask[top : top + h, left : left + w].any()
    assert top + h == 100 and h >= 52  # cells overlapping the glass rows are given up, the rest kept
    assert w == 2 * h and abs((left + w / 2) - 150) <= 1
    assert glass_free_box(np.ones((50, 50), np.uint8)) is None
    full = glass_free_box(np.zeros((37, 45), np.uint8), cell=8)
    assert full == (0, 0, 37, 45)  # a photo without glass: all of it (clipped to the photo)


def _dataset(root, n=3):
    rng = np.random.default_rng(0)
    for i in range(n):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(exist_ok=True)
        img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        mask = np.zeros((120, 160), np.uint8)
        mask[:, : 40 + 50 * i] = 255  # glass on the left, wider each photo
        Image.fromarray(img).save(root / "images" / f"p{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"p{i}.png")
    return root


def test_crops_are_the_photos_glass_free_pixels(tmp_path):
    data = _dataset(tmp_path / "d")
    summary = glass_free_crops(find_pairs(data), tmp_path / "neg", min_side=64, progress=False)
    # p0: 120 free columns, p1: 70, p2: 20 (< 64: skipped)
    assert [c["name"] for c in summary.written] == ["p0", "p1"] and len(summary.skipped) == 1
    for c in summary.written:
        top, left, h, w = c["box"]
        photo = np.asarray(Image.open(data / "images" / f"{c['name']}.png"))
        crop = np.asarray(Image.open(tmp_path / "neg" / "images" / f"{c['name']}.png"))
        np.testing.assert_array_equal(crop, photo[top : top + h, left : left + w])
        mask = np.asarray(Image.open(tmp_path / "neg" / "masks" / f"{c['name']}.png"))
        assert mask.shape == (h, w) and not mask.any()
        assert not np.asarray(Image.open(data / "masks" / f"{c['name']}.png"))[top : top + h, left : left + w].any()
    record = json.loads((tmp_path / "neg" / "negatives.json").read_text())
    assert [c["name"] for c in record["crops"]] == ["p0", "p1"] and "p2.png" in record["skipped"][0]["image"]
    assert [p.stem for p in find_pairs(tmp_path / "neg")] == ["p0", "p1"]  # a dataset glassgem reads


def test_cli_and_errors(tmp_path, capsys):
    data = _dataset(tmp_path / "d")
    assert main(["data", "negatives", str(data), "--out", str(tmp_path / "neg"), "--min-side", "64"]) == 0
    assert "2 glass-free crops written, 1 photo skipped" in capsys.readouterr().out
    assert main(["data", "negatives", str(data), "--out", str(tmp_path / "none"), "--min-side", "500"]) == 2
    assert "no photo has a glass-free rectangle" in capsys.readouterr().err
    assert main(["data", "negatives", str(data), "--out", str(tmp_path / "neg"), "--min-side", "64"]) == 2
    assert "already holds files" in capsys.readouterr().err  # never mixed with an earlier run's crops
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(data / "masks" / "p0.png")  # wrong size
    with pytest.raises(DataError, match="p0.png.*size mismatch|size mismatch.*p0.png"):
        glass_free_crops(find_pairs(data), tmp_path / "x", progress=False)


def test_sample_and_prefix(tmp_path):
    data = _dataset(tmp_path / "d", n=6)
    pairs = find_pairs(data)
    full = glass_free_crops(pairs, tmp_path / "all", min_side=16, progress=False)
    n = len(full.written)
    assert n == 3  # p0, p1, p2 (16 free columns); p3.. are all glass
    a = glass_free_crops(pairs, tmp_path / "a", min_side=16, sample=2, seed=5, prefix="neg_", progress=False)
    b = glass_free_crops(pairs, tmp_path / "b", min_side=16, sample=2, seed=5, prefix="neg_", progress=False)
    assert [c["name"] for c in a.written] == [c["name"] for c in b.written]  # the seed decides
    keep = sorted(np.random.default_rng(5).choice(n, 2, replace=False).tolist())
    assert [c["name"] for c in a.written] == ["neg_" + full.written[i]["name"] for i in keep]
    assert [c["box"] for c in a.written] == [full.written[i]["box"] for i in keep]
    assert sorted(p.name for p in (tmp_path / "a" / "images").iterdir()) == [c["name"] + ".png" for c in a.written]
    assert a.eligible == n and f"a sample of the {n} eligible" in a.line()
