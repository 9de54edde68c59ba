"""`glassgem data check`: every kind of bad input is reported by file name, all at once."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import GDD_DEV, needs_gdd_dev
from glassgem.cli import main
from glassgem.data.checks import check_dataset, require_valid
from glassgem.errors import DataError

H, W = 24, 32


def _jpeg_bytes(arr: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _glass_mask() -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[4:16, 6:20] = 255
    return m


def _dataset(root: Path, stems=("a", "b", "c")) -> Path:
    """A clean images/ + masks/ dataset: JPEG photos, 0/255 PNG masks with some glass."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem in stems:
        photo = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        (root / "images" / f"{stem}.jpg").write_bytes(_jpeg_bytes(photo))
        Image.fromarray(_glass_mask()).save(root / "masks" / f"{stem}.png")
    return root


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["data", "check", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_error(report, *needles: str) -> str:
    hits = [e for e in report.errors if all(n in e for n in needles)]
    assert len(hits) == 1, f"expected one error with {needles}, got {report.errors}"
    return hits[0]


def test_clean_dataset_passes(tmp_path, capsys):
    root = _dataset(tmp_path)
    r = check_dataset(root)
    assert r.ok and r.errors == [] and r.warnings == []
    assert (r.n_pairs, r.n_images, r.n_masks, r.n_empty) == (3, 3, 3, 0)
    code, out, _ = _cli(capsys, str(root))
    assert code == 0 and "3 pairs" in out and "0 errors" in out


def test_corrupt_image_bytes(tmp_path, capsys):
    root = _dataset(tmp_path)
    (root / "images" / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 20)
    r = check_dataset(root)
    assert str(root / "images" / "a.jpg") in _one_error(r, "a.jpg", "cannot read image")
    code, out, _ = _cli(capsys, str(root))
    assert code == 1 and "a.jpg: cannot read image" in out


def test_truncated_jpeg_and_png_image(tmp_path):
    root = _dataset(tmp_path)
    data = (root / "images" / "a.jpg").read_bytes()
    (root / "images" / "a.jpg").write_bytes(data[: len(data) // 2])  # header intact, scan data cut
    (root / "images" / "b.jpg").unlink()
    png = io.BytesIO()
    photo = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(photo).save(png, format="PNG")
    (root / "images" / "b.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    r = check_dataset(root)
    _one_error(r, "a.jpg", "cannot read image")
    _one_error(r, "b.png", "cannot read image")
    assert len(r.errors) == 2


def test_truncated_mask(tmp_path):
    root = _dataset(tmp_path)
    data = (root / "masks" / "c.png").read_bytes()
    (root / "masks" / "c.png").write_bytes(data[: len(data) // 2])
    _one_error(check_dataset(root), "c.png", "cannot read mask")


def test_image_without_mask_and_mask_without_image(tmp_path, capsys):
    root = _dataset(tmp_path)
    (root / "masks" / "b.png").unlink()
    Image.fromarray(_glass_mask()).save(root / "masks" / "orphan.png")
    r = check_dataset(root)
    _one_error(r, "b.jpg", "image has no mask")
    _one_error(r, "orphan.png", "mask has no image")
    assert r.n_pairs == 2
    code, out, _ = _cli(capsys, str(root))
    assert code == 1 and "b.jpg: image has no mask" in out and "orphan.png: mask has no image" in out


def test_size_mismatch(tmp_path):
    root = _dataset(tmp_path)
    Image.fromarray(np.zeros((H, W + 8), np.uint8)).save(root / "masks" / "a.png")
    msg = _one_error(check_dataset(root), "a.png", "mask is")
    assert f"{W + 8}x{H}" in msg and f"{W}x{H}" in msg and "a.jpg" in msg


def test_exif_rotation_is_taken_into_account(tmp_path):
    root = _dataset(tmp_path, stems=("a",))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape W x H, displayed portrait H x W
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "images" / "a.jpg", exif=exif)
    portrait = np.zeros((W, H), np.uint8)
    portrait[:5, :5] = 255
    Image.fromarray(portrait).save(root / "masks" / "a.png")
    assert check_dataset(root).ok  # the mask matches the upright image
    Image.fromarray(_glass_mask()).save(root / "masks" / "a.png")  # drawn on the raw pixels
    _one_error(check_dataset(root), "a.png", "mask is")


def test_non_binary_masks_are_warnings_unless_strict(tmp_path, capsys):
    root = _dataset(tmp_path)
    soft = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))  # a soft 0..255 mask
    Image.fromarray(soft).save(root / "masks" / "a.png")
    (root / "masks" / "b.png").unlink()
    (root / "masks" / "b.jpg").write_bytes(_jpeg_bytes(_glass_mask(), quality=50))  # JPEG ringing
    r = check_dataset(root)
    assert r.ok and r.n_non_binary == 2
    assert sum("a.png: non-binary mask values" in w for w in r.warnings) == 1
    assert sum("b.jpg: non-binary mask values" in w for w in r.warnings) == 1
    code, out, _ = _cli(capsys, str(root))
    assert code == 0 and "warning:" in out
    strict = check_dataset(root, strict=True)
    assert not strict.ok and len(strict.errors) == 2
    code, _, _ = _cli(capsys, str(root), "--strict")
    assert code == 1


def test_binary_mask_forms_raise_no_warning(tmp_path):
    root = _dataset(tmp_path)
    Image.fromarray(_glass_mask() // 255).save(root / "masks" / "a.png")  # 0/1
    pal = Image.fromarray(_glass_mask() // 255).convert("P")
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.save(root / "masks" / "b.png")
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[_glass_mask() > 0] = (255, 255, 255)
    Image.fromarray(rgb).save(root / "masks" / "c.png")
    r = check_dataset(root)
    assert r.ok and r.warnings == [] and r.n_empty == 0


def test_empty_masks_are_counted_as_a_warning(tmp_path):
    root = _dataset(tmp_path)
    Image.fromarray(np.zeros((H, W), np.uint8)).save(root / "masks" / "b.png")
    r = check_dataset(root)
    assert r.ok and r.n_empty == 1 and r.empty_stems == ["b"]
    assert any("1 masks contain no glass" in w and "b" in w for w in r.warnings)


def test_duplicate_stems(tmp_path, capsys):
    root = _dataset(tmp_path)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "images" / "a.png")
    msg = _one_error(check_dataset(root), "'a'", "several files")
    assert "a.jpg" in msg and "a.png" in msg
    assert _cli(capsys, str(root))[0] == 1


def test_empty_folders(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    r = check_dataset(tmp_path)
    _one_error(r, str(tmp_path / "images"), "empty folder")
    _one_error(r, str(tmp_path / "masks"), "empty folder")
    code, out, _ = _cli(capsys, str(tmp_path))
    assert code == 1 and "empty folder" in out


def test_bad_manifest_line(tmp_path):
    root = _dataset(tmp_path)
    (root / "manifest.jsonl").write_text('{"image": "images/a.jpg"}\nnot json\n[1, 2]\n')
    r = check_dataset(root)
    _one_error(r, "manifest.jsonl:2", "not valid JSON")
    _one_error(r, "manifest.jsonl:3", "JSON object")


def test_every_problem_is_reported_at_once(tmp_path, capsys):
    root = _dataset(tmp_path, stems=("a", "b", "c", "d", "e", "f"))
    (root / "images" / "a.jpg").write_bytes(b"not an image")
    (root / "masks" / "b.png").unlink()
    Image.fromarray(_glass_mask()).save(root / "masks" / "zz.png")
    Image.fromarray(np.full((H + 1, W), 255, np.uint8)).save(root / "masks" / "c.png")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(root / "masks" / "d.png")
    Image.fromarray(np.full((H, W), 128, np.uint8)).save(root / "masks" / "e.png")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "images" / "f.png")
    code, out, _ = _cli(capsys, str(root), "--json", str(tmp_path / "report.json"))
    assert code == 1
    for needle in (
        "a.jpg: cannot read image",
        "b.jpg: image has no mask",
        "zz.png: mask has no image",
        "c.png: mask is",
        "'f' names several files",
        "1 masks contain no glass (d)",
    ):
        assert needle in out, needle
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is False and len(report["errors"]) == 5 and report["n_empty"] == 1


def test_require_valid(tmp_path):
    root = _dataset(tmp_path)
    assert require_valid(root).n_pairs == 3
    (root / "masks" / "a.png").unlink()
    with pytest.raises(DataError) as e:
        require_valid(root)
    assert "a.jpg: image has no mask" in str(e.value)


def test_every_split_is_checked_when_none_is_given(tmp_path, capsys):
    _dataset(tmp_path / "train", stems=("a", "b"))
    _dataset(tmp_path / "val", stems=("c",))
    r = check_dataset(tmp_path)
    assert r.ok and r.n_pairs == 3 and [s["split"] for s in r.splits] == ["train", "val"]
    assert check_dataset(tmp_path, split="val").n_pairs == 1
    assert _cli(capsys, str(tmp_path), "--split", "train")[0] == 0


def test_explicit_folders(tmp_path, capsys):
    _dataset(tmp_path)
    code, out, _ = _cli(capsys, "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"))
    assert code == 0 and "3 pairs" in out


def test_no_dataset_found_exits_2_with_one_line(tmp_path, capsys):
    code, _, err = _cli(capsys, str(tmp_path))
    assert code == 2 and "looked for" in err and str(tmp_path) in err and "Traceback" not in err
    code, _, err = _cli(capsys)
    assert code == 2 and "give a dataset folder" in err


@needs_gdd_dev
@pytest.mark.parametrize("split,n", [("train", 572), ("val", 99)])
def test_gdd_dev_passes(split, n, capsys):
    start = time.perf_counter()
    r = check_dataset(GDD_DEV, split=split, progress=False)
    seconds = time.perf_counter() - start
    assert r.ok, r.to_text(max_lines=20)
    assert r.n_pairs == n and r.warnings == []
    with capsys.disabled():
        print(f"\n  data check gdd-dev/{split}: {n} pairs in {seconds:.2f} s")
