"""Per-image reports (`--report DIR` of `glassgem evaluate` / `evaluate-masks`): error pictures, the CSV,
the worst-images sheet, and the CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glassgem import GEM
from glassgem.cli import main
from glassgem.data.datasets import find_pairs
from glassgem.evaluation.metrics import GlassMetrics, ImageScore
from glassgem.evaluation.report import SHEET_CELL, PerImageReport
from glassgem.io import load_image, load_mask
from glassgem.overlay import FALSE_RED, HIT_GREEN, MISS_BLUE, error_overlay


# ------------------------------------------------------------------------------ error pictures
def test_error_overlay_colours_each_kind_of_pixel():
    image = np.full((2, 2, 3), 100, np.uint8)
    pred = np.array([[1, 1], [0, 0]], np.uint8)
    gt = np.array([[255, 0], [255, 0]], np.uint8)  # 0/255 masks work as well as 0/1
    out = error_overlay(image, pred, gt, alpha=0.5)

    def blend(color):
        return np.round(100 * 0.5 + np.asarray(color) * 0.5).astype(np.uint8)

    np.testing.assert_array_equal(out[0, 0], blend(HIT_GREEN))  # found
    np.testing.assert_array_equal(out[0, 1], blend(FALSE_RED))  # false glass
    np.testing.assert_array_equal(out[1, 0], blend(MISS_BLUE))  # missed
    np.testing.assert_array_equal(out[1, 1], image[1, 1])  # right background: untouched
    grey = error_overlay(None, pred, gt, alpha=0.0)
    assert grey.shape == (2, 2, 3) and np.all(grey == 128)
    with pytest.raises(ValueError, match="does not match"):
        error_overlay(np.zeros((3, 2, 3), np.uint8), pred, gt)
    with pytest.raises(ValueError, match="does not match"):
        error_overlay(None, pred, np.zeros((2, 3), np.uint8))


# ------------------------------------------------------------------------------ the report object
def _score(iou: float, mae: float = 0.1) -> ImageScore:
    return ImageScore(iou, mae, 10.0, 0.5, 0.5)


def test_report_keeps_only_the_worst_and_draws_only_them():
    rng = np.random.default_rng(0)
    ious = rng.random(40)
    ious = 0.05 + 0.95 * ious
    ious[7] = ious[30] = 0.01  # a tie: the earlier image goes first
    ious[3] = math.nan  # legacy: no glass and none predicted, a perfect image, never among the worst
    drawn = []

    def picture(i):
        def draw():
            drawn.append(i)
            return np.full((10, 20, 3), i, np.uint8)

        return draw

    report = PerImageReport(worst=5)
    for i, iou in enumerate(ious):
        report.add(f"img{i}", _score(iou), picture(i))
    assert [name for name, _ in report.rows] == [f"img{i}" for i in range(40)]  # every image, in order
    finite = np.where(np.isnan(ious), 1.0, ious)
    want = sorted(range(40), key=lambda i: (finite[i], i))[:5]
    assert [n for n, _, _ in report.worst_images()] == [f"img{i}" for i in want]
    assert want[:2] == [7, 30]
    # equal IoUs (say the zeros of glass-free photos with false glass): more error first, then order
    zeros = PerImageReport(worst=3)
    for i, mae in enumerate([0.2, 0.9, 0.2, 0.5]):
        zeros.add(f"z{i}", _score(0.0, mae), picture(i))
    assert [n for n, _, _ in zeros.worst_images()] == ["z1", "z3", "z0"]
    assert drawn == []  # nothing drawn until the sheet is made
    sheet = report.sheet()
    assert sorted(drawn) == sorted(want)
    ch, cw = SHEET_CELL
    assert sheet.shape[1] == 4 * cw + 3 * 4 and sheet.shape[0] > 2 * ch + 4  # 2 rows of 4 plus a title


def test_report_without_pictures_or_with_worst_zero_has_no_sheet(tmp_path):
    for report in (PerImageReport(worst=0), PerImageReport(worst=3)):
        for i in range(4):
            report.add(f"a{i}", _score(0.5), (lambda: np.zeros((4, 4, 3), np.uint8)) if report.worst == 0 else None)
        assert report.sheet() is None
        written = report.write(tmp_path / f"w{report.worst}", {"iou": 0.5})
        assert [p.name for p in written] == ["per_image.csv", "metrics.json"]
    with pytest.raises(ValueError):
        PerImageReport(worst=-1)


def test_csv_rows_are_each_images_own_numbers():
    rng = np.random.default_rng(1)
    metrics, report, want = GlassMetrics(), PerImageReport(), []
    for i in range(6):
        gt = (rng.random((16, 20)) < 0.4).astype(np.uint8)
        pred = (rng.random((16, 20)) < 0.5).astype(np.uint8)
        tp, fp, fn = (np.sum(pred & gt), np.sum(pred & (1 - gt)), np.sum((1 - pred) & gt))
        want.append((tp / (tp + fp + fn), np.mean(pred != gt), gt.mean(), pred.mean()))
        report.add(f"p{i}", metrics.update(pred, gt))
    rows = list(csv.DictReader(report.csv_text().splitlines()))
    assert [r["name"] for r in rows] == [f"p{i}" for i in range(6)]
    for r, (iou, mae, glass, predicted) in zip(rows, want):
        assert float(r["iou"]) == pytest.approx(iou, abs=1e-6)
        assert float(r["mae"]) == pytest.approx(mae, abs=1e-6)
        assert float(r["glass_fraction"]) == pytest.approx(glass, abs=1e-6)
        assert float(r["predicted_fraction"]) == pytest.approx(predicted, abs=1e-6)
    results = metrics.compute()
    assert np.mean([float(r["iou"]) for r in rows]) == pytest.approx(results["iou"], abs=1e-6)
    assert np.mean([float(r["ber"]) for r in rows]) == pytest.approx(results["ber"], abs=1e-5)


# ------------------------------------------------------------------------------ CLI
def _mask_folders(root: Path, n: int = 5) -> list[float]:
    """pred/ and gt/ folders of n 24x32 masks with known IoUs; returns them."""
    rng = np.random.default_rng(2)
    ious = []
    for i in range(n):
        gt = (rng.random((24, 32)) < 0.5).astype(np.uint8)
        pred = gt.copy()
        pred[: 4 * i] = 1 - pred[: 4 * i]  # more rows wrong for later images
        ious.append(np.sum(pred & gt) / np.sum(pred | gt))
        for folder, arr in (("gt", gt), ("pred", pred)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr * 255).save(root / folder / f"m{i}.png")
    return ious


def test_cli_evaluate_masks_report(tmp_path, capsys):
    ious = _mask_folders(tmp_path)
    rep = tmp_path / "rep"
    assert (
        main(
            [
                "evaluate-masks",
                "--pred",
                str(tmp_path / "pred"),
                "--gt",
                str(tmp_path / "gt"),
                "--report",
                str(rep),
                "--worst",
                "3",
            ]
        )
        == 0
    )
    assert "per-image report" in capsys.readouterr().out
    rows = list(csv.DictReader((rep / "per_image.csv").read_text().splitlines()))
    assert [r["name"] for r in rows] == [f"m{i}" for i in range(5)]
    np.testing.assert_allclose([float(r["iou"]) for r in rows], ious, atol=1e-6)
    assert json.loads((rep / "metrics.json").read_text())["iou"] == pytest.approx(np.mean(ious), abs=1e-9)
    sheet = np.asarray(Image.open(rep / "worst.jpg"))
    assert sheet.shape[1] == 3 * SHEET_CELL[1] + 2 * 4  # the three worst side by side
    # the worst image (m4) is drawn first: its cell shows false-glass red and missed-glass blue
    cell = sheet[-SHEET_CELL[0] :, : SHEET_CELL[1]].reshape(-1, 3).astype(int)
    assert np.any((cell[:, 0] > 160) & (cell[:, 2] < 110)) and np.any((cell[:, 2] > 160) & (cell[:, 0] < 110))

    assert (
        main(
            [
                "evaluate-masks",
                "--pred",
                str(tmp_path / "pred"),
                "--gt",
                str(tmp_path / "gt"),
                "--report",
                str(tmp_path / "rep0"),
                "--worst",
                "0",
            ]
        )
        == 0
    )
    assert not (tmp_path / "rep0" / "worst.jpg").exists() and (tmp_path / "rep0" / "per_image.csv").exists()
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate-masks",
                "--pred",
                str(tmp_path / "pred"),
                "--gt",
                str(tmp_path / "gt"),
                "--report",
                str(tmp_path / "bad"),
                "--worst",
                "-1",
            ]
        )
        == 2
    )
    assert "--worst" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_evaluate_report_draws_the_photo_with_the_models_errors(tmp_path):
    from glassgem.evaluation.evaluate import evaluate_model

    rng = np.random.default_rng(3)
    data = tmp_path / "data"
    for i, (h, w) in enumerate([(40, 56), (64, 48), (36, 36)]):
        (data / "images").mkdir(parents=True, exist_ok=True)
        (data / "masks").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(data / "images" / f"x{i}.png")
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4 : 3 * h // 4, : w // 2] = 255
        Image.fromarray(mask).save(data / "masks" / f"x{i}.png")
    torch.manual_seed(0)
    model = GEM.from_config("debug").eval()
    pairs = find_pairs(data)
    report = PerImageReport(worst=2)
    results = evaluate_model(
        model, pairs, size=64, num_workers=0, progress=False, save_masks=tmp_path / "m", report=report
    )
    assert [n for n, _ in report.rows] == ["x0", "x1", "x2"]
    assert np.mean([s.iou for _, s in report.rows]) == pytest.approx(results["iou"], abs=1e-9)
    worst = report.worst_images()
    assert len(worst) == 2 and worst[0][1].iou <= worst[1][1].iou
    for name, _, picture in worst:
        want = error_overlay(
            load_image(data / "images" / f"{name}.png"),
            load_mask(tmp_path / "m" / f"{name}.png"),
            load_mask(data / "masks" / f"{name}.png"),
        )
        np.testing.assert_array_equal(picture(), want)


def test_false_glass_summary_is_the_mean_fraction_and_the_photos_under_one_percent():
    from glassgem.evaluation.report import false_glass_summary

    assert false_glass_summary([0.0, 0.009, 0.01, 0.5]) == {"false_glass": pytest.approx(0.12975), "clean": 2, "n": 4}
    rep = PerImageReport(worst=0)
    for k, predicted in enumerate((0.0, 0.2)):
        rep.add(f"p{k}", ImageScore(iou=0.0, mae=predicted, ber=50.0, glass=0.0, predicted=predicted))
    assert rep.false_glass() == {"false_glass": 0.1, "clean": 1, "n": 2}
