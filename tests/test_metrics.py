"""glassgem.evaluation.metrics and `glassgem evaluate-masks`: the GSD-S numbers, edge cases, the CLI.

The GSD-S definitions: docs/original.md#metrics."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import GDD_DEV
from glassgem.cli import main
from glassgem.errors import DataError
from glassgem.evaluation.mask_eval import resize_map
from glassgem.evaluation.metrics import GlassMetrics, format_table, image_stats

E = 1e-4  # the smoothing term of docs/original.md#metrics


def fbeta(p: float, r: float) -> float:
    return 1.3 * p * r / (0.3 * p + r)


def score(pairs, legacy: bool = False) -> dict:
    m = GlassMetrics(legacy=legacy)
    for pred, gt in pairs:
        m.update(pred, gt)
    return m.compute()


# ------------------------------------------------------------------------------ naive reference
def naive(pairs, legacy: bool = False, tol: float = 0.0) -> dict:
    """Straight from docs/original.md#metrics: per image, a loop over 256 thresholds; then means over images.

    pred must be a float map in [0, 1]. tol widens each threshold downwards (the documented float32
    slack); 0 is the plain `pred >= k/255`.
    """
    ious, maes, bers, precs, recs = [], [], [], [], []
    for pred, gt in pairs:
        p = np.asarray(pred, dtype=np.float64)
        g = np.asarray(gt, dtype=np.float64)
        if g.max() > 127:
            g = g / 255
        gb = g > 0.5
        hard = p >= 0.5
        tp = np.sum(hard & gb)
        fp = np.sum(hard & ~gb)
        fn = np.sum(~hard & gb)
        tn = np.sum(~hard & ~gb)
        if tp + fp + fn == 0:
            ious.append(math.nan if legacy else 1.0)
        else:
            ious.append(tp / (tp + fp + fn))
        if tp + fn == 0:
            bers.append(math.nan if legacy else 100 * (1 - tn / (tn + fp)))
        elif tn + fp == 0:
            bers.append(math.nan if legacy else 100 * (1 - tp / (tp + fn)))
        else:
            bers.append(100 * (1 - 0.5 * (tp / (tp + fn) + tn / (tn + fp))))
        maes.append(np.mean(np.abs(p - (g if legacy else gb))))
        pr, rc = [], []
        for k in range(256):
            pos = p >= k / 255 - tol
            tpk = np.sum(pos & gb)
            pr.append((tpk + E) / (np.sum(pos) + E))
            rc.append((tpk + E) / (np.sum(gb) + E))
        precs.append(pr)
        recs.append(rc)
    P = np.mean(precs, axis=0)
    R = np.mean(recs, axis=0)
    return {
        "iou": np.mean(ious),
        "mae": np.mean(maes),
        "ber": np.mean(bers),
        "fbeta": max(fbeta(a, b) for a, b in zip(P, R)),
    }


def assert_same(got: dict, want: dict, tol: float = 1e-9) -> None:
    for key in ("iou", "fbeta", "mae", "ber"):
        if math.isnan(want[key]):
            assert math.isnan(got[key]), key
        else:
            assert abs(got[key] - want[key]) <= tol, (key, got[key], want[key])


# ------------------------------------------------------------------------------ hand-computed
def test_binary_2x3_by_hand():
    gt = np.array([[1, 1, 0], [0, 0, 0]], np.uint8)
    pred = np.array([[1, 0, 1], [0, 0, 0]], np.uint8)  # TP=1 FP=1 FN=1 TN=3
    r = score([(pred, gt)])
    assert r["iou"] == pytest.approx(1 / 3, abs=1e-12)
    assert r["mae"] == pytest.approx(2 / 6, abs=1e-12)
    assert r["ber"] == pytest.approx(100 * (1 - 0.5 * (1 / 2 + 3 / 4)), abs=1e-12)  # 37.5
    # t = 0: all 6 positive, TP 2 -> P=(2+E)/(6+E), R=1. t > 0: the mask, P = R = (1+E)/(2+E).
    f0 = fbeta((2 + E) / (6 + E), 1.0)
    f1 = fbeta((1 + E) / (2 + E), (1 + E) / (2 + E))
    assert r["fbeta"] == pytest.approx(max(f0, f1), abs=1e-12)
    assert r["n_images"] == 1 and r["n_iou_empty"] == 0


def test_soft_uint8_1x4_by_hand():
    pred = np.array([[0, 127, 128, 255]], np.uint8)  # 127/255 < 0.5 <= 128/255
    gt = np.array([[0, 255, 255, 0]], np.uint8)
    r = score([(pred, gt)])
    assert r["iou"] == pytest.approx(1 / 3, abs=1e-12)  # TP: 128; FP: 255; FN: 127
    assert r["ber"] == pytest.approx(50.0, abs=1e-12)
    assert r["mae"] == pytest.approx((0 + 128 / 255 + 127 / 255 + 1) / 4, abs=1e-12)
    # k=0: 4 positive, TP 2. k=1..127: 3 positive, TP 2. k=128: 2 positive, TP 1. k>128: 1, TP 0.
    cands = [
        fbeta((2 + E) / (4 + E), 1),
        fbeta((2 + E) / (3 + E), 1),
        fbeta((1 + E) / (2 + E), (1 + E) / (2 + E)),
        fbeta(E / (1 + E), E / (2 + E)),
    ]
    assert r["fbeta"] == pytest.approx(max(cands), abs=1e-12)


def test_float_values_on_the_grid_fall_on_the_positive_side():
    k = np.arange(256)
    gt = (k % 3 == 0).astype(np.uint8).reshape(16, 16)
    as_u8 = GlassMetrics()
    as_u8.update(k.astype(np.uint8).reshape(16, 16), gt)
    # Ordinary ways of writing k/255 that round some values just below the float threshold k/255.
    grids = [np.linspace(0, 1, 256), np.float32(1) - (255 - k).astype(np.float32) / np.float32(255)]
    for grid in grids:
        assert np.any(grid.astype(np.float64) < k / 255)  # so this test means something
        as_float = GlassMetrics()
        as_float.update(grid.reshape(16, 16), gt)
        # The whole precision/recall curves over the 256 thresholds are identical.
        np.testing.assert_array_equal(as_float.precision_sum, as_u8.precision_sum)
        np.testing.assert_array_equal(as_float.recall_sum, as_u8.recall_sum)
        assert as_float.compute()["iou"] == as_u8.compute()["iou"]
    # The 0.5 cut is exact for off-grid values: 0.5 is glass, the float just below it is not.
    below = np.nextafter(0.5, 0.0)
    r = score([(np.array([[0.5, below]]), np.array([[1, 1]]))])
    assert r["iou"] == pytest.approx(0.5, abs=1e-12)


def test_mean_over_images_not_pooled():
    a = (np.array([[1, 1, 1, 1]], np.uint8), np.array([[1, 1, 1, 1]], np.uint8))  # perfect, all glass
    b = (np.array([[1, 0, 0, 0]], np.uint8), np.array([[1, 1, 0, 0]], np.uint8))  # IoU 1/2
    r = score([a, b])
    assert r["iou"] == pytest.approx((1 + 0.5) / 2, abs=1e-12)  # pooled would give 4/5... = 5/6
    assert r["mae"] == pytest.approx((0 + 1 / 4) / 2, abs=1e-12)


# ------------------------------------------------------------------------------ edge cases
def test_empty_cases_default_values_and_counts():
    z = np.zeros((2, 3), np.uint8)
    one = np.ones((2, 3), np.uint8)
    half = np.array([[1, 1, 1], [0, 0, 0]], np.uint8)
    fp1 = np.array([[1, 0, 0], [0, 0, 0]], np.uint8)
    r = score([(z, z)])
    assert (r["iou"], r["ber"], r["mae"]) == (1.0, 0.0, 0.0)
    assert (r["n_iou_empty"], r["n_ber_no_glass"], r["n_ber_all_glass"]) == (1, 1, 0)
    r = score([(fp1, z)])  # no glass, one false positive: IoU 0, BER = 100 * FP / N
    assert r["iou"] == 0.0 and r["ber"] == pytest.approx(100 / 6, abs=1e-12) and r["n_iou_empty"] == 0
    r = score([(half, one)])  # all glass, half found: BER = 100 * (1 - TPR)
    assert r["ber"] == pytest.approx(50.0, abs=1e-12) and r["n_ber_all_glass"] == 1
    r = score([(z, one)])  # all glass, nothing predicted: IoU 0, BER 100
    assert (r["iou"], r["ber"]) == (0.0, 100.0)


def test_legacy_gives_nan_like_the_original():
    z = np.zeros((2, 3), np.uint8)
    one = np.ones((2, 3), np.uint8)
    good = (np.array([[1, 0, 1], [0, 0, 0]], np.uint8), np.array([[1, 1, 0], [0, 0, 0]], np.uint8))
    r = score([good, (z, z)], legacy=True)
    assert math.isnan(r["iou"]) and math.isnan(r["ber"])  # one NaN poisons the mean
    assert not math.isnan(r["fbeta"]) and r["mae"] == pytest.approx((2 / 6 + 0) / 2, abs=1e-12)
    r = score([good, (one, one)], legacy=True)
    assert r["iou"] == pytest.approx((1 / 3 + 1) / 2) and math.isnan(r["ber"])
    assert r["n_ber_all_glass"] == 1
    # Without edge cases legacy and default agree.
    assert_same(score([good], legacy=True), score([good]), tol=0)


def test_legacy_mae_uses_stored_gt_values():
    gt = np.array([[0, 200, 255, 100]], np.uint8)  # not clean: /255, glass = > 0.5
    pred = np.array([[0, 1, 1, 0]], np.uint8)
    r = score([(pred, gt)], legacy=True)
    assert r["mae"] == pytest.approx((0 + 55 / 255 + 0 + 100 / 255) / 4, abs=1e-12)
    assert score([(pred, gt)])["mae"] == 0.0  # default: against the binarised mask


# ------------------------------------------------------------------------------ vs naive
def _random_case(rng, shape, kind):
    h, w = shape
    gt = (rng.random(shape) < rng.uniform(0.1, 0.7)).astype(np.uint8)
    if kind == "binary":
        pred = (rng.random(shape) < 0.4).astype(np.uint8)
        return pred, gt, pred.astype(np.float64)
    if kind == "uint8":
        pred = rng.integers(0, 256, shape, dtype=np.uint8)
        return pred, gt, pred / 255.0
    if kind == "float64":
        pred = rng.random(shape)
        return pred, gt, pred
    pred = rng.random(shape).astype(np.float32)
    return pred, gt, pred.astype(np.float64)


@pytest.mark.parametrize("kind", ["binary", "uint8", "float64", "float32"])
@pytest.mark.parametrize("legacy", [False, True])
def test_matches_naive_implementation(kind, legacy):
    rng = np.random.default_rng(7)
    cases = [_random_case(rng, s, kind) for s in [(1, 1), (3, 7), (40, 50), (61, 37), (24, 80)]]
    if not legacy:  # edge cases (NaN in legacy would hide the comparison of the other metrics)
        z = np.zeros((5, 6), np.uint8)
        cases += [(z, z, z.astype(float)), (z, np.ones_like(z), z.astype(float))]
    want = naive([(f, g) for _, g, f in cases], legacy=legacy, tol=1e-4 / 255 if kind == "float32" else 0.0)
    got = score([(p, g) for p, g, _ in cases], legacy=legacy)
    assert_same(got, want)
    assert got["n_images"] == len(cases)


def test_gt_0_1_and_0_255_and_bool_agree():
    rng = np.random.default_rng(1)
    cases = [_random_case(rng, (30, 20), "uint8")[:2] for _ in range(4)]
    r01 = score(cases)
    r255 = score([(p, g * 255) for p, g in cases])
    rbool = score([(p, g.astype(bool)) for p, g in cases])
    for key in ("iou", "fbeta", "mae", "ber"):
        assert r01[key] == r255[key] == rbool[key]


def test_binary_prediction_0_1_0_255_and_bool_agree():
    rng = np.random.default_rng(2)
    cases = [_random_case(rng, (30, 20), "binary")[:2] for _ in range(4)]
    r01 = score(cases)
    r255 = score([(p * 255, g) for p, g in cases])
    rbool = score([(p.astype(bool), g) for p, g in cases])
    for key in ("iou", "fbeta", "mae", "ber"):
        assert r01[key] == r255[key] == rbool[key]


def test_streaming_order_and_chunks_do_not_matter():
    rng = np.random.default_rng(3)
    cases = [_random_case(rng, (20 + i, 30), "uint8")[:2] for i in range(12)]
    cases.append((np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)))
    whole = score(cases)
    backwards = score(cases[::-1])
    parts = [GlassMetrics() for _ in range(3)]
    for i, (p, g) in enumerate(cases):
        parts[i % 3].update(p, g)
    parts[0].merge(parts[1])
    parts[0].merge(parts[2])
    merged = parts[0].compute()
    for other in (backwards, merged):
        assert_same(other, whole, tol=1e-12)
        assert other["n_images"] == 13 and other["n_iou_empty"] == whole["n_iou_empty"] == 1


def test_accumulator_memory_does_not_grow():
    m = GlassMetrics()
    before = m.precision_sum.nbytes + m.recall_sum.nbytes
    rng = np.random.default_rng(4)
    for _ in range(50):
        m.update(*_random_case(rng, (8, 8), "uint8")[:2])
    assert m.precision_sum.nbytes + m.recall_sum.nbytes == before
    assert not any(isinstance(v, list) for v in vars(m).values())


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "pred, gt, words",
    [
        (np.full((2, 2), 1.5), np.zeros((2, 2)), "[0, 1]"),
        (np.array([[0.1, np.nan]]), np.zeros((1, 2)), "[0, 1]"),
        (np.full((2, 2), 300, np.int32), np.zeros((2, 2)), "0..255"),
        (np.zeros((3, 2)), np.zeros((2, 3)), "2x3"),
        (np.zeros((2, 2, 3)), np.zeros((2, 2)), "2-D"),
    ],
)
def test_bad_input_is_a_clear_data_error(pred, gt, words):
    with pytest.raises(DataError, match="x.png") as e:
        image_stats(pred, gt, name="x.png")
    assert words in str(e.value)


def test_compute_without_images_is_an_error():
    with pytest.raises(DataError, match="no images"):
        GlassMetrics().compute()


def test_format_table_lists_metrics_and_counts():
    z = np.zeros((2, 2), np.uint8)
    text = format_table(score([(z, z), (np.eye(2, dtype=np.uint8), np.eye(2, dtype=np.uint8))]))
    lines = text.splitlines()
    for label, value in [
        ("IoU", "1.0000"),
        ("MAE", "0.0000"),
        ("BER (%)", "0.00"),
        ("images", "2"),
        ("no glass, none predicted", "1"),
        ("images without glass", "1"),
        ("images all glass", "0"),
    ]:
        row = next(line for line in lines if line.startswith(label + " "))
        assert row.split()[len(label.split())] == value, row


# ------------------------------------------------------------------------------ resizing
def test_resize_soft_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    a = rng.random((13, 17))
    for size in [(40, 31), (5, 7), (13, 40)]:
        want = torch.nn.functional.interpolate(
            torch.from_numpy(a)[None, None], size=size, mode="bilinear", align_corners=False
        )[0, 0].numpy()
        np.testing.assert_allclose(resize_map(a, size), want, atol=1e-12)
    u8 = rng.integers(0, 256, (9, 11), dtype=np.uint8)
    want = torch.nn.functional.interpolate(
        torch.from_numpy(u8 / 255.0)[None, None], size=(20, 3), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_allclose(resize_map(u8, (20, 3)), want, atol=1e-12)


def test_resize_binary_stays_binary_nearest():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    b = (rng.random((11, 9)) < 0.5).astype(np.uint8) * 255
    out = resize_map(b, (30, 20))
    want = torch.nn.functional.interpolate(
        torch.from_numpy(b)[None, None].float(), size=(30, 20), mode="nearest-exact"
    )[0, 0].numpy()
    assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 255}
    np.testing.assert_array_equal(out, want)


# ------------------------------------------------------------------------------ CLI
def _write(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _dataset(tmp_path: Path, n: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        gt = (rng.random((24, 32)) < 0.4).astype(np.uint8)
        pred = rng.integers(0, 256, (24, 32), dtype=np.uint8) if i % 2 else gt * 255
        if i == 0:
            gt[:] = 0
            pred[:] = 0
        _write(tmp_path / "gt" / f"img{i}.bmp", gt * 255)  # GT and prediction extensions differ
        _write(tmp_path / "pred" / f"img{i}.png", pred)
        pairs.append((pred / 255.0, gt))
    return pairs


def test_cli_json_matches_naive(tmp_path, capsys):
    pairs = _dataset(tmp_path)
    _write(tmp_path / "pred" / "extra.png", np.zeros((24, 32), np.uint8))  # no GT: ignored, noted
    out = tmp_path / "m.json"
    rc = main(
        [
            "evaluate-masks",
            "--pred",
            str(tmp_path / "pred"),
            "--gt",
            str(tmp_path / "gt"),
            "--json",
            str(out),
            "--workers",
            "2",
        ]
    )
    assert rc == 0
    got = json.loads(out.read_text())
    assert_same(got, naive(pairs))
    assert (got["n_images"], got["n_iou_empty"], got["n_ber_no_glass"]) == (6, 1, 1)
    captured = capsys.readouterr()
    assert "F-beta" in captured.out
    assert "1 prediction file(s)" in captured.err and "extra.png" in captured.err


def test_cli_legacy_writes_null_for_nan(tmp_path):
    _dataset(tmp_path)
    out = tmp_path / "m.json"
    assert (
        main(
            [
                "evaluate-masks",
                "--pred",
                str(tmp_path / "pred"),
                "--gt",
                str(tmp_path / "gt"),
                "--legacy",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    got = json.loads(out.read_text())
    assert got["iou"] is None and got["ber"] is None and isinstance(got["fbeta"], float)


def test_cli_16bit_prediction_is_value_over_65535(tmp_path):
    rng = np.random.default_rng(8)
    gt = (rng.random((10, 12)) < 0.5).astype(np.uint8)
    p16 = rng.integers(0, 65536, (10, 12)).astype(np.uint16)
    _write(tmp_path / "gt" / "a.png", gt * 255)
    _write(tmp_path / "pred" / "a.png", p16)
    out = tmp_path / "m.json"
    assert (
        main(["evaluate-masks", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--json", str(out)])
        == 0
    )
    as_float32 = p16.astype(np.float32) / np.float32(65535)  # documented: float32 value/65535
    assert_same(json.loads(out.read_text()), naive([(as_float32, gt)], tol=1e-4 / 255))


def test_cli_size_mismatch_names_both_files(tmp_path, capsys):
    _write(tmp_path / "gt" / "a.png", np.zeros((24, 32), np.uint8))
    _write(tmp_path / "pred" / "a.png", np.zeros((12, 16), np.uint8))
    rc = main(["evaluate-masks", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(tmp_path / "pred" / "a.png") in err and str(tmp_path / "gt" / "a.png") in err
    assert "16x12" in err and "32x24" in err and "--resize-pred" in err


def test_cli_resize_pred(tmp_path):
    rng = np.random.default_rng(9)
    small = (rng.random((12, 16)) < 0.5).astype(np.uint8)
    big = np.kron(small, np.ones((2, 2), np.uint8))  # nearest x2 upsampling is block replication
    gt = (rng.random((24, 32)) < 0.5).astype(np.uint8)
    soft = np.full((12, 16), 200, np.uint8)  # a constant map stays constant under bilinear resizing
    _write(tmp_path / "gt" / "a.png", gt * 255)
    _write(tmp_path / "gt" / "b.png", gt * 255)
    _write(tmp_path / "pred" / "a.png", small * 255)
    _write(tmp_path / "pred" / "b.png", soft)
    out = tmp_path / "m.json"
    assert (
        main(
            [
                "evaluate-masks",
                "--pred",
                str(tmp_path / "pred"),
                "--gt",
                str(tmp_path / "gt"),
                "--resize-pred",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    want = naive([(big.astype(float), gt), (np.full((24, 32), 200 / 255), gt)])
    assert_same(json.loads(out.read_text()), want)


def test_cli_missing_predictions_are_listed(tmp_path, capsys):
    _dataset(tmp_path, n=4)
    os.remove(tmp_path / "pred" / "img1.png")
    os.remove(tmp_path / "pred" / "img3.png")
    assert main(["evaluate-masks", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]) == 2
    err = capsys.readouterr().err
    assert "2 of 4" in err and "img1.bmp" in err and "img3.bmp" in err and "img2" not in err


def test_cli_empty_folder_and_unreadable_file(tmp_path, capsys):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    assert main(["evaluate-masks", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]) == 2
    assert "no ground-truth masks" in capsys.readouterr().err
    _write(tmp_path / "gt" / "a.png", np.zeros((4, 4), np.uint8))
    assert main(["evaluate-masks", "--pred", str(tmp_path / "nowhere"), "--gt", str(tmp_path / "gt")]) == 2
    assert "nowhere: prediction folder not found" in capsys.readouterr().err
    (tmp_path / "pred" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert main(["evaluate-masks", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]) == 2
    assert str(tmp_path / "pred" / "a.png") in capsys.readouterr().err


# ------------------------------------------------------------------------------ real masks


def test_real_gdd_masks_against_naive(tmp_path):
    masks = sorted((GDD_DEV / "val" / "masks").glob("*.png"))[:4]
    if not masks:
        pytest.skip(f"real GDD masks not found under {GDD_DEV} (set GLASSGEM_SHARED)")
    from scipy import ndimage

    from glassgem.io import load_mask

    pairs = []
    for i, m in enumerate(masks):
        gt = load_mask(m)
        # A plausible prediction: the mask dilated, as a soft map blurred by a box filter.
        pred = ndimage.uniform_filter(ndimage.binary_dilation(gt, iterations=3 + i).astype(float), 9)
        pred8 = np.clip(np.round(pred * 255), 0, 255).astype(np.uint8)
        _write(tmp_path / "pred" / f"{m.stem}.png", pred8)
        pairs.append((pred8 / 255.0, gt))
    out = tmp_path / "m.json"
    assert (
        main(["evaluate-masks", "--pred", str(tmp_path / "pred"), "--gt", str(masks[0].parent), "--json", str(out)])
        == 2
    )  # the folder has more masks than predictions: listed error
    sub = tmp_path / "gt"
    sub.mkdir()
    for m in masks:
        (sub / m.name).write_bytes(m.read_bytes())
    assert main(["evaluate-masks", "--pred", str(tmp_path / "pred"), "--gt", str(sub), "--json", str(out)]) == 0
    assert_same(json.loads(out.read_text()), naive(pairs))
