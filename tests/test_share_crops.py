"""Low-glass crops and the predicted/true glass area per glass-share bin."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from glassgem.cli import main
from glassgem.data.crops import draw_boxes, share_crops
from glassgem.data.layouts import find_pairs
from glassgem.errors import ConfigError, DataError
from glassgem.evaluation.metrics import GlassMetrics, format_table, write_json
from glassgem.evaluation.share import bin_of
from glassgem.io import load_mask, save_image, save_mask


def _dataset(root, n=3, size=(60, 80)):
    rng = np.random.default_rng(1)
    for i in range(n):
        mask = np.zeros(size, np.uint8)
        mask[:, : size[1] // 2] = 1  # left half glass
        save_image(root / "images" / f"p{i}.png", rng.integers(0, 255, (*size, 3), dtype=np.uint8))
        save_mask(root / "masks" / f"p{i}.png", mask)
    return root


def test_draw_boxes_respects_share_and_size():
    mask = np.zeros((100, 100), np.uint8)
    mask[:, :30] = 1
    boxes = draw_boxes(mask, np.random.default_rng(0), (0.05, 0.35), (0.4, 0.6), per_image=5, tries=500)
    assert len(boxes) == 5
    for top, left, h, w in boxes:
        assert 40 <= h <= 60 and h == w
        share = mask[top : top + h, left : left + w].mean()
        assert 0.05 <= share <= 0.35


def test_crops_command_is_reproducible(tmp_path, capsys):
    data = _dataset(tmp_path / "d")
    args = ["data", "crops", str(data), "--share", "0.05,0.35", "--size", "0.3,0.6", "--per-image", "2"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert "crops from 3 photos" in capsys.readouterr().out
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "crops.json").read_text())
    b = json.loads((tmp_path / "b" / "crops.json").read_text())
    assert a["crops"] == b["crops"] and len(a["crops"]) == 6
    for c in a["crops"]:
        m = load_mask(tmp_path / "a" / "masks" / f"{c['name']}.png")
        assert 0.05 <= m.mean() <= 0.35 and abs(m.mean() - c["glass"]) < 1e-3
    assert len(find_pairs(tmp_path / "a")) == 6
    # another seed draws other boxes
    share_crops(find_pairs(data), tmp_path / "c", size=(0.3, 0.6), seed=1, progress=False)
    c = json.loads((tmp_path / "c" / "crops.json").read_text())
    assert [x["box"] for x in c["crops"]] != [x["box"] for x in a["crops"]]


def test_crops_refusals(tmp_path):
    data = _dataset(tmp_path / "d")
    pairs = find_pairs(data)
    with pytest.raises(ConfigError, match="--share"):
        share_crops(pairs, tmp_path / "o", share=(0.5, 0.2), progress=False)
    with pytest.raises(DataError, match="no crop of 3 photos"):
        share_crops(pairs, tmp_path / "o", share=(0.9, 1.0), size=(0.9, 1.0), progress=False)
    share_crops(pairs, tmp_path / "o2", size=(0.3, 0.6), progress=False)
    with pytest.raises(DataError, match="already holds files"):
        share_crops(pairs, tmp_path / "o2", progress=False)


def test_bins_and_area_ratio(tmp_path):
    gt_half = np.zeros((10, 10), np.uint8)
    gt_half[:, :5] = 1  # 50% glass -> bin 35-70%
    gt_small = np.zeros((10, 10), np.uint8)
    gt_small[0, :5] = 1  # 5% glass -> bin <10%
    m = GlassMetrics()
    m.update(np.ones((10, 10), np.uint8), gt_half)  # paints everything: IoU 0.5, area 2x
    m.update(gt_small, gt_small)  # perfect
    m.update(np.ones((10, 10), np.uint8) * 0, np.zeros((10, 10), np.uint8))  # glass-free, clean
    r = m.compute()
    assert r["area_ratio"] == pytest.approx((1.0 + 0.05) / (0.5 + 0.05))
    assert r["true_fraction"] == pytest.approx(0.55 / 3) and r["pred_fraction"] == pytest.approx(1.05 / 3)
    assert r["n_with_glass"] == 2 and r["iou_with_glass"] == pytest.approx(0.75)
    assert r["area_ratio_with_glass"] == pytest.approx((1.0 + 0.05) / (0.5 + 0.05))
    b = r["bins"]
    assert set(b) == {"none", "<10%", "35-70%"}
    assert b["35-70%"]["iou"] == pytest.approx(0.5) and b["35-70%"]["area_ratio"] == pytest.approx(2.0)
    assert b["<10%"]["iou"] == pytest.approx(1.0) and b["<10%"]["area_ratio"] == pytest.approx(1.0)
    assert b["none"] == {"n": 1, "true_fraction": 0.0, "pred_fraction": 0.0, "false_glass": 0.0}
    text = format_table(r)
    assert "pred / true" in text and "35-70%" in text and "2.00" in text and "photos with glass" in text
    write_json(tmp_path / "m.json", r)
    assert json.loads((tmp_path / "m.json").read_text())["bins"]["35-70%"]["n"] == 1


def test_bin_edges_and_merge():
    assert [bin_of(x) for x in (0.0, 0.01, 0.1, 0.349, 0.35, 0.7, 1.0)] == [
        "none",
        "<10%",
        "10-35%",
        "10-35%",
        "35-70%",
        ">70%",
        ">70%",
    ]
    a, b = GlassMetrics(), GlassMetrics()
    gt = np.zeros((4, 4), np.uint8)
    gt[:2] = 1
    a.update(gt, gt)
    b.update(np.zeros((4, 4), np.uint8), gt)
    a.merge(b)
    r = a.compute()
    assert r["bins"]["35-70%"]["n"] == 2 and r["area_ratio"] == pytest.approx(0.5)
    none_only = GlassMetrics()
    none_only.update(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
    assert math.isnan(none_only.compute()["area_ratio"])


def test_crops_refuse_to_write_into_the_data_set(tmp_path, capsys):
    data = _dataset(tmp_path / "d")
    for out in (data, data / "masks", data / "images" / "x"):
        assert main(["data", "crops", str(data), "--out", str(out)]) == 2
        assert "--out" in capsys.readouterr().err
    assert sorted(p.name for p in (data / "masks").iterdir()) == ["p0.png", "p1.png", "p2.png"]
