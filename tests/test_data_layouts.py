"""Dataset folder layouts: which folders each layout finds, and clear errors when none match."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import GDD_DEV, needs_gdd_dev
from glassgem.data.layouts import available_splits, find_pairs, resolve_split, scan_folders
from glassgem.errors import DataError


def _write_pairs(images: Path, masks: Path, stems: list[str], img_ext: str = ".jpg") -> None:
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        Image.fromarray(np.full((8, 10, 3), 90, np.uint8)).save(images / f"{stem}{img_ext}")
        Image.fromarray(np.zeros((8, 10), np.uint8)).save(masks / f"{stem}.png")


def _stems(pairs) -> list[str]:
    return [p.stem for p in pairs]


def test_gsds_split_folders(tmp_path):
    _write_pairs(tmp_path / "train" / "images", tmp_path / "train" / "masks", ["b", "a"])
    _write_pairs(tmp_path / "test" / "images", tmp_path / "test" / "masks", ["c"])
    pairs = find_pairs(tmp_path, layout="gsds", split="train")
    assert _stems(pairs) == ["a", "b"]
    assert pairs[0].image_path == tmp_path / "train" / "images" / "a.jpg"
    assert pairs[0].mask_path == tmp_path / "train" / "masks" / "a.png"
    assert _stems(find_pairs(tmp_path, layout="auto", split="test")) == ["c"]
    assert available_splits(tmp_path) == ["train", "test"]


def test_gsds_flat_images_and_masks(tmp_path):
    _write_pairs(tmp_path / "images", tmp_path / "masks", ["x", "y"])
    assert _stems(find_pairs(tmp_path, layout="gsds")) == ["x", "y"]


def test_gem_release_layout_maps_splits_and_prefers_zero_one(tmp_path):
    _write_pairs(tmp_path / "images" / "training", tmp_path / "annotations_zero_one" / "training", ["t1"])
    _write_pairs(tmp_path / "images" / "validation", tmp_path / "annotations_zero_one" / "validation", ["v1"])
    (tmp_path / "annotations" / "training").mkdir(parents=True)  # the 0/255 originals, empty here
    res = resolve_split(tmp_path, "gsds", "train")
    assert res.masks_dir == tmp_path / "annotations_zero_one" / "training"
    assert _stems(find_pairs(tmp_path, split="train")) == ["t1"]
    # GEM evaluates on GSD-S test under the name "validation": val and test both land there.
    assert _stems(find_pairs(tmp_path, split="val")) == ["v1"]
    assert _stems(find_pairs(tmp_path, split="test")) == ["v1"]
    assert available_splits(tmp_path) == ["train", "val"]  # "test" is the same folder, listed once


def test_gem_release_layout_with_plain_annotations(tmp_path):
    _write_pairs(tmp_path / "images" / "training", tmp_path / "annotations" / "training", ["t1"])
    assert find_pairs(tmp_path, layout="gsds", split="train")[0].mask_path.parent.parent.name == "annotations"


@pytest.mark.parametrize("img_dir,mask_dir", [("image", "mask"), ("images", "masks")])
def test_gdd_layout(tmp_path, img_dir, mask_dir):
    _write_pairs(tmp_path / "test" / img_dir, tmp_path / "test" / mask_dir, ["1", "2"])
    assert _stems(find_pairs(tmp_path, layout="gdd", split="test")) == ["1", "2"]
    assert _stems(find_pairs(tmp_path, split="test")) == ["1", "2"]


def test_gsd_layout_accepts_gt_folder(tmp_path):
    _write_pairs(tmp_path / "train" / "images", tmp_path / "train" / "gt", ["p"])
    assert _stems(find_pairs(tmp_path, layout="gsd", split="train")) == ["p"]
    with pytest.raises(DataError):
        find_pairs(tmp_path, layout="gdd", split="train")  # gdd has no gt/ folder name


def test_sgsd_layout_is_detected_by_its_manifest(tmp_path):
    _write_pairs(tmp_path / "images", tmp_path / "masks", ["s0", "s1"], img_ext=".png")
    (tmp_path / "manifest.jsonl").write_text('{"image": "images/s0.png"}\n')
    res = resolve_split(tmp_path)
    assert res.layout == "sgsd"
    assert _stems(find_pairs(tmp_path, layout="sgsd")) == ["s0", "s1"]


def test_explicit_folders_relative_to_root(tmp_path):
    _write_pairs(tmp_path / "rgb", tmp_path / "gt_masks", ["k"])
    assert _stems(find_pairs(tmp_path, images="rgb", masks="gt_masks")) == ["k"]
    assert _stems(find_pairs(None, images=tmp_path / "rgb", masks=tmp_path / "gt_masks")) == ["k"]
    with pytest.raises(DataError, match="both"):
        find_pairs(tmp_path, images="rgb")
    with pytest.raises(DataError, match="nope"):
        find_pairs(tmp_path, images="nope", masks="gt_masks")


def test_auto_failure_lists_what_it_looked_for(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError) as e:
        find_pairs(tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "looked for" in msg
    for layout in ("gsds", "gdd", "gsd", "sgsd"):
        assert f"{layout}:" in msg


def test_missing_split_names_the_splits_found(tmp_path):
    _write_pairs(tmp_path / "train" / "images", tmp_path / "train" / "masks", ["a"])
    with pytest.raises(DataError, match="splits train"):
        find_pairs(tmp_path)  # no split given, but the folder has one
    with pytest.raises(DataError, match="split 'val'"):
        find_pairs(tmp_path, split="val")


def test_unknown_layout_and_missing_root(tmp_path):
    with pytest.raises(DataError, match="unknown dataset layout"):
        find_pairs(tmp_path, layout="coco")
    with pytest.raises(DataError, match="not found"):
        find_pairs(tmp_path / "absent")


def test_empty_images_folder_is_named(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError) as e:
        find_pairs(tmp_path)
    assert str(tmp_path / "images") in str(e.value) and "no images" in str(e.value)


def test_orphans_and_duplicates_are_refused_by_name(tmp_path):
    _write_pairs(tmp_path / "images", tmp_path / "masks", ["a", "b"])
    (tmp_path / "masks" / "b.png").unlink()
    Image.fromarray(np.zeros((8, 10), np.uint8)).save(tmp_path / "masks" / "z.png")
    with pytest.raises(DataError) as e:
        find_pairs(tmp_path)
    assert "b.jpg" in str(e.value) and "z.png" in str(e.value)

    (tmp_path / "masks" / "z.png").unlink()
    _write_pairs(tmp_path / "images", tmp_path / "masks", ["b"])
    Image.fromarray(np.full((8, 10, 3), 90, np.uint8)).save(tmp_path / "images" / "a.png")
    with pytest.raises(DataError, match="a.jpg, a.png"):
        find_pairs(tmp_path)


def test_hidden_and_non_image_files_are_skipped(tmp_path):
    _write_pairs(tmp_path / "images", tmp_path / "masks", ["a"])
    (tmp_path / "images" / ".a.jpg.123.tmp").write_bytes(b"partial")  # an atomic write in progress
    (tmp_path / "images" / "notes.txt").write_text("hello")
    Image.fromarray(np.full((8, 10, 3), 90, np.uint8)).save(tmp_path / "images" / "UP.JPG")
    Image.fromarray(np.zeros((8, 10), np.uint8)).save(tmp_path / "masks" / "UP.PNG")
    scan = scan_folders(tmp_path / "images", tmp_path / "masks")
    assert _stems(scan.pairs) == ["UP", "a"]
    assert [p.name for p in scan.ignored] == ["notes.txt"]


@needs_gdd_dev
def test_gdd_dev_split_sizes():
    assert len(find_pairs(GDD_DEV, split="train")) == 572
    assert len(find_pairs(GDD_DEV, split="val")) == 99
    assert len(find_pairs(GDD_DEV, layout="gdd", split="train")) == 572
    assert len(find_pairs(GDD_DEV, layout="gsd", split="val")) == 99
    assert available_splits(GDD_DEV) == ["train", "val"]
