"""The glass-free photo corpus builder (`glassgem data photos`) on tiny made-up sources."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glassgem.data.photos import (
    EXCLUDED,
    Photo,
    build_corpus,
    folder_photos,
    photo_name,
    same_picture,
    thumbnails,
    variant_key,
)
from glassgem.errors import DataError
from glassgem.io import load_mask


def _photo(seed: int, h: int = 200, w: int = 300) -> np.ndarray:
    """A smooth random picture (blobs of colour), distinct per seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


@pytest.fixture
def sources(tmp_path):
    a, b = tmp_path / "src_a", tmp_path / "src_b"
    a.mkdir(), b.mkdir()
    for i in range(3):
        Image.fromarray(_photo(i)).save(a / f"pic{i}.png")
    # a resolution variant of pic0 (same name with a WxH suffix): only the larger is kept
    Image.fromarray(_photo(0, 400, 600)).save(a / "pic0_600x400.png")
    for i in range(3, 5):
        Image.fromarray(_photo(i)).save(b / f"pic{i}.jpg", quality=95)
    # a near-duplicate across sources: pic1 again, re-encoded smaller under another name
    Image.fromarray(_photo(1, 150, 225)).save(b / "copy_of_pic1.jpg", quality=90)
    (b / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.fromarray(_photo(9, 60, 60)).save(b / "tiny.png")
    return a, b


def test_corpus_split_by_source_dedupe_and_manifest(sources, tmp_path):
    a, b = sources
    photos = folder_photos("src_a", a) + folder_photos("src_b", b)
    corpus = build_corpus(photos, tmp_path / "out", heldout=("src_b",), crops=2, long_side=160, progress=False)
    out = tmp_path / "out"
    assert corpus.kept == {"train": 3, "heldout": 2}
    # training photos: the whole photo and 2 crops each; held-out photos: the whole photo only
    assert corpus.files == {"train": 9, "heldout": 2}
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 11
    assert {r["source"] for r in rows if r["split"] == "train"} == {"src_a"}
    assert {r["source"] for r in rows if r["split"] == "heldout"} == {"src_b"}
    for r in rows:
        image = np.asarray(Image.open(out / r["file"]))
        mask = load_mask(out / r["file"].replace("/images/", "/masks/"))
        assert max(image.shape[:2]) <= 160 and mask.shape == image.shape[:2] and not mask.any()
        assert r["licence"] and r["original"]
    variant = next(r for r in rows if r["file"].startswith("train/images/src_a__pic0"))
    assert variant["original"].endswith("pic0_600x400.png")  # the larger of the two variants
    dropped = {
        json.loads(line)["path"].rsplit("/", 1)[-1]: json.loads(line)["why"]
        for line in (out / "dropped.jsonl").read_text().splitlines()
    }
    assert dropped["pic0.png"].startswith("resolution variant")
    assert dropped["copy_of_pic1.jpg"].startswith("near-duplicate")
    assert dropped["broken.jpg"].startswith("unreadable") and "broken.jpg" in dropped["broken.jpg"]
    assert "smaller than" in dropped["tiny.png"]
    assert (out / "contact_train.jpg").is_file() and (out / "contact_heldout.jpg").is_file()
    assert not (tmp_path / "out.partial").exists()


def test_corpus_is_deterministic_and_refuses_a_full_folder(sources, tmp_path):
    a, b = sources
    photos = folder_photos("src_a", a) + folder_photos("src_b", b)
    build_corpus(photos, tmp_path / "x", heldout=("src_b",), crops=2, long_side=160, progress=False)
    build_corpus(photos, tmp_path / "y", heldout=("src_b",), crops=2, long_side=160, progress=False)
    assert (tmp_path / "x/manifest.jsonl").read_text() == (tmp_path / "y/manifest.jsonl").read_text()
    with pytest.raises(DataError, match="already holds files"):
        build_corpus(photos, tmp_path / "x", heldout=("src_b",), progress=False)
    with pytest.raises(DataError, match="left train or heldout empty"):
        build_corpus(photos, tmp_path / "z", heldout=("nowhere",), progress=False)


def test_excluded_photos_are_dropped_with_their_reason(tmp_path):
    key = next(k for k in EXCLUDED if k.startswith("scikit-image:"))
    folder = tmp_path / "scikit-image"
    folder.mkdir()
    Image.fromarray(_photo(1)).save(folder / key.split(":", 1)[1])
    Image.fromarray(_photo(2)).save(folder / "kept.png")
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(_photo(3)).save(other / "h.png")
    photos = folder_photos("scikit-image", folder) + folder_photos("other", other)
    corpus = build_corpus(photos, tmp_path / "out", heldout=("other",), crops=0, progress=False)
    assert corpus.kept == {"train": 1, "heldout": 1}
    assert [d["why"] for d in corpus.dropped] == [EXCLUDED[key]]


def test_plasma_names_and_variants():
    a = Photo("plasma-workspace-wallpapers", Path("/w/Altai/contents/images/1920x1080.png"), "x")
    b = Photo("plasma-workspace-wallpapers", Path("/w/Altai/contents/images/5120x2880.png"), "x")
    dark = Photo("plasma-workspace-wallpapers", Path("/w/Altai/contents/images_dark/1920x1080.png"), "x")
    assert photo_name(a) == "Altai" and photo_name(dark) == "Altai_images_dark"
    assert variant_key(a) == variant_key(b) != variant_key(dark)


def test_same_picture_tells_textures_of_one_grey_apart():
    rng = np.random.default_rng(0)
    noise1 = rng.integers(100, 156, (128, 128, 3), dtype=np.uint8)
    noise2 = rng.integers(100, 156, (128, 128, 3), dtype=np.uint8)
    pic = _photo(5, 128, 128)
    assert same_picture(thumbnails(pic), thumbnails(np.asarray(Image.fromarray(pic).resize((90, 70)))))
    assert not same_picture(thumbnails(pic), thumbnails(_photo(6, 128, 128)))
    # two different noise textures have the same mean colour but no common detail
    assert np.abs(thumbnails(noise1)[0] - thumbnails(noise2)[0]).mean() < 8
    assert not same_picture(thumbnails(noise1), thumbnails(noise2))


def test_cli_builds_from_folders_and_names_a_bad_option(sources, tmp_path):
    a, b = sources
    cmd = [
        sys.executable,
        "-m",
        "glassgem.cli",
        "data",
        "photos",
        "--only-folders",
        "--heldout",
        "src_b",
        "--crops",
        "1",
        "--folder",
        f"src_a={a}",
        "--folder",
        f"src_b={b}",
    ]
    ok = subprocess.run(cmd + ["--out", str(tmp_path / "c")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "3 photos -> 6 files" in ok.stdout and "2 photos -> 2 files" in ok.stdout
    bad = subprocess.run(cmd[:-4] + ["--folder", "nodir", "--out", str(tmp_path / "d")], capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "--folder 'nodir'" in bad.stderr
    missing = subprocess.run(
        cmd[:-4] + ["--folder", f"x={tmp_path / 'nope'}", "--out", str(tmp_path / "e")], capture_output=True, text=True
    )
    assert missing.returncode != 0 and "Traceback" not in missing.stderr and "nope" in missing.stderr
