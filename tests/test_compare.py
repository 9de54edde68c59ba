"""`glassgem compare`: paired bootstrap comparison of two per-image reports."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from glassgem.cli import main
from glassgem.errors import ConfigError, DataError
from glassgem.evaluation.compare import compare_reports, paired_bootstrap, read_per_image
from glassgem.evaluation.metrics import ImageScore
from glassgem.evaluation.report import PerImageReport


def _write_report(folder, ious, maes=None, bers=None, names=None):
    """A per-image report folder as `glassgem evaluate --report` writes it."""
    rep = PerImageReport(worst=0)
    n = len(ious)
    names = names or [f"img{i:03d}" for i in range(n)]
    maes = maes if maes is not None else [0.1] * n
    bers = bers if bers is not None else [10.0] * n
    for name, iou, mae, ber in zip(names, ious, maes, bers):
        rep.add(name, ImageScore(iou, mae, ber, 0.3, 0.3))
    rep.write(folder, {"iou": float(np.nanmean(ious))})
    return folder


def test_paired_bootstrap_interval_covers_the_mean_and_is_reproducible():
    rng = np.random.default_rng(1)
    diff = rng.normal(0.02, 0.05, size=200)
    low, high, p = paired_bootstrap(diff, resamples=4000, seed=3)
    assert low < diff.mean() < high
    # the percentile interval of a mean is about +-1.96 standard errors wide
    se = diff.std(ddof=1) / math.sqrt(diff.size)
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert paired_bootstrap(diff, resamples=4000, seed=3) == (low, high, p)
    assert paired_bootstrap(diff, resamples=4000, seed=4) != (low, high, p)
    # a mean 5.6 standard errors from 0: essentially never crosses it
    assert low > 0 and p < 0.01
    # noise around 0: the interval holds 0 and p is large
    noise = rng.normal(0.0, 0.05, size=200)
    low, high, p = paired_bootstrap(noise - noise.mean(), resamples=4000)
    assert low < 0 < high and p > 0.5
    assert paired_bootstrap(np.zeros(7)) == (0.0, 0.0, 1.0)
    with pytest.raises(ValueError):
        paired_bootstrap(np.array([]))


def test_compare_reports_pairs_by_name_and_sees_a_consistent_gain(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.9, size=60)
    a = _write_report(tmp_path / "a", list(base), bers=list(base * 30))
    # B: +0.03 IoU on every image (large next to the per-image spread of the difference, which is 0),
    # listed in another order, with one image A lacks and one missing
    names = [f"img{i:03d}" for i in range(60)]
    order = rng.permutation(59)
    b = _write_report(
        tmp_path / "b",
        [base[i] + 0.03 for i in order] + [0.5],
        bers=[base[i] * 30 - 1.0 for i in order] + [5.0],
        names=[names[i] for i in order] + ["extra"],
    )
    r = compare_reports(a, b, resamples=2000)
    assert r["n_common"] == 59 and r["only_in_a"] == ["img059"] and r["only_in_b"] == ["extra"]
    iou = r["metrics"]["iou"]
    assert iou["n"] == 59
    assert iou["diff"] == pytest.approx(0.03)
    assert iou["mean_a"] == pytest.approx(base[:59].mean())
    assert iou["ci95"][0] == pytest.approx(0.03) and iou["ci95"][1] == pytest.approx(0.03)
    assert (iou["b_better"], iou["b_worse"], iou["unchanged"]) == (59, 0, 0)
    ber = r["metrics"]["ber"]  # lower is better: -1 point on every image is a gain
    assert ber["diff"] == pytest.approx(-1.0) and ber["b_better"] == 59
    mae = r["metrics"]["mae"]  # equal everywhere
    assert mae["diff"] == 0 and mae["unchanged"] == 59 and mae["p"] == 1.0
    assert mae["largest_changes"] == []


def test_compare_cli_prints_the_verdict_and_writes_json_and_plot(tmp_path, capsys):
    rng = np.random.default_rng(2)
    base = rng.uniform(0.4, 0.95, size=80)
    a = _write_report(tmp_path / "a", list(base))
    b = _write_report(tmp_path / "b", list(np.clip(base + rng.normal(0.0, 0.05, size=80), 0, 1)))
    rc = main(
        [
            "compare",
            str(a),
            str(b / "per_image.csv"),
            "--json",
            str(tmp_path / "c.json"),
            "--plot",
            str(tmp_path / "c.png"),
            "--resamples",
            "500",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    data = json.loads((tmp_path / "c.json").read_text())
    iou = data["metrics"]["iou"]
    low, high = iou["ci95"]
    assert low < iou["diff"] < high
    expected = "no significant difference" if low <= 0 <= high else "B is"
    assert f"IoU: {expected}" in out
    assert "80 images in both" in out and "largest IoU changes" in out
    assert data["resamples"] == 500
    with Image.open(tmp_path / "c.png") as im:
        assert im.format == "PNG" and im.size[0] > 300


def test_compare_names_the_file_and_the_problem(tmp_path):
    with pytest.raises(DataError, match="no per-image report"):
        read_per_image(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("name,iou\nx,0.5\n")
    with pytest.raises(DataError, match=r"bad\.csv: not a per-image report: no column\(s\) mae, ber"):
        read_per_image(bad)
    bad.write_text("name,iou,mae,ber\nx,0.5,0.1,3\ny,abc,0.1,3\n")
    with pytest.raises(DataError, match=r"bad\.csv, line 3: .*not a number"):
        read_per_image(bad)
    bad.write_text("name,iou,mae,ber\nx,0.5,0.1,3\nx,0.6,0.1,3\n")
    with pytest.raises(DataError, match="line 3: image 'x' appears twice"):
        read_per_image(bad)
    bad.write_text("name,iou,mae,ber\n")
    with pytest.raises(DataError, match="has no images"):
        read_per_image(bad)
    a = _write_report(tmp_path / "a", [0.5, 0.6], names=["p", "q"])
    b = _write_report(tmp_path / "b", [0.5, 0.6], names=["r", "s"])
    with pytest.raises(DataError, match="share no image names"):
        compare_reports(a, b)
    assert main(["compare", str(a), str(tmp_path / "nowhere")]) == 2
    assert main(["compare", str(a), str(a), "--resamples", "5"]) == 2
    with pytest.raises(ConfigError):
        from glassgem.evaluation.compare import run_compare

        run_compare(a, a, tie=-1)


def test_compare_drops_legacy_nan_images_per_metric(tmp_path):
    a = _write_report(tmp_path / "a", [0.5, float("nan"), 0.7])
    b = _write_report(tmp_path / "b", [0.6, 1.0, 0.7])
    r = compare_reports(a, b, resamples=200)
    assert r["metrics"]["iou"]["n"] == 2 and r["metrics"]["iou"]["diff"] == pytest.approx(0.05)
    assert r["metrics"]["mae"]["n"] == 3


def test_compare_reads_the_reports_evaluate_masks_writes(tmp_path, capsys):
    """End to end: two methods' masks -> `evaluate-masks --report` -> `compare`."""
    rng = np.random.default_rng(5)
    for d in ("gt", "pa", "pb"):
        (tmp_path / d).mkdir()
    for i in range(12):
        gt = np.zeros((24, 32), np.uint8)
        gt[4:20, 6 + i : 26] = 255
        pa = gt.copy()
        pa[:, : 6 + i] = 255 * (rng.random((24, 6 + i)) < 0.5)  # A: false glass left of the pane
        pb = gt.copy()  # B: exact
        for d, m in (("gt", gt), ("pa", pa), ("pb", pb)):
            Image.fromarray(m).save(tmp_path / d / f"{i:02d}.png")
    for method in ("pa", "pb"):
        assert (
            main(
                [
                    "evaluate-masks",
                    "--pred",
                    str(tmp_path / method),
                    "--gt",
                    str(tmp_path / "gt"),
                    "--report",
                    str(tmp_path / f"rep-{method}"),
                    "--worst",
                    "0",
                ]
            )
            == 0
        )
    capsys.readouterr()
    assert (
        main(
            [
                "compare",
                str(tmp_path / "rep-pa"),
                str(tmp_path / "rep-pb"),
                "--resamples",
                "1000",
                "--json",
                str(tmp_path / "c.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    r = json.loads((tmp_path / "c.json").read_text())["metrics"]
    assert r["iou"]["mean_b"] == 1.0 and r["iou"]["ci95"][0] > 0 and r["iou"]["b_better"] == 12
    assert r["mae"]["diff"] < 0 and r["ber"]["diff"] < 0
    assert "IoU: B is better than A" in out and "MAE: B is better than A" in out
    # F-beta from the curves the reports kept: the same number as the evaluator's, and B is better
    for method in ("pa", "pb"):
        table = json.loads((tmp_path / f"rep-{method}" / "metrics.json").read_text())
        assert r["fbeta"]["mean_" + method[1]] == pytest.approx(table["fbeta"], abs=1e-12)
    assert r["fbeta"]["diff"] > 0 and r["fbeta"]["ci95"][0] > 0 and r["fbeta"]["b_better"] is None
    assert "F-beta: B is better than A" in out


def test_fbeta_is_resampled_from_the_per_image_curves(tmp_path):
    """Reports with the per-image precision/recall curves: F-beta's mean is the evaluator's, B = A gives
    an exact zero, and a report without curves leaves F-beta out, saying why."""
    from glassgem.evaluation.metrics import GlassMetrics

    rng = np.random.default_rng(3)
    gts = [(rng.random((16, 16)) < rng.uniform(0.2, 0.8)).astype(np.uint8) for _ in range(30)]
    preds = [np.clip(g * rng.uniform(0.5, 1.0) + rng.random(g.shape) * 0.4, 0, 1) for g in gts]
    metrics, rep = GlassMetrics(), PerImageReport(worst=0)
    for i, (p, g) in enumerate(zip(preds, gts)):
        rep.add(f"im{i}", metrics.update(p, g))
    table = metrics.compute()
    rep.write(tmp_path / "a", table)
    rep.write(tmp_path / "b", table)
    assert (tmp_path / "a" / "per_image_fbeta.npz").is_file()
    r = compare_reports(tmp_path / "a", tmp_path / "b", resamples=300)
    f = r["metrics"]["fbeta"]
    assert f["mean_a"] == pytest.approx(table["fbeta"], abs=1e-12) and f["n"] == 30
    assert f["diff"] == 0 and f["ci95"] == [0.0, 0.0] and f["p"] == 1.0
    assert list(r["metrics"]) == ["iou", "fbeta", "mae", "ber"] and r["fbeta_missing"] == []
    # the interval of a real difference holds the observed one
    worse = GlassMetrics()
    rep_b = PerImageReport(worst=0)
    for i, (p, g) in enumerate(zip(preds, gts)):
        rep_b.add(f"im{i}", worse.update(np.clip(p + 0.3 * rng.random(p.shape), 0, 1), g))
    rep_b.write(tmp_path / "c", worse.compute())
    f = compare_reports(tmp_path / "a", tmp_path / "c", resamples=2000)["metrics"]["fbeta"]
    assert f["diff"] == pytest.approx(worse.compute()["fbeta"] - table["fbeta"])
    assert f["ci95"][0] <= f["diff"] <= f["ci95"][1]
    # without curves (an older report): no F-beta, and the missing file is named
    (tmp_path / "b" / "per_image_fbeta.npz").unlink()
    r = compare_reports(tmp_path / "a", tmp_path / "b", resamples=100)
    assert "fbeta" not in r["metrics"] and r["fbeta_missing"] == [str(tmp_path / "b" / "per_image_fbeta.npz")]
    (tmp_path / "b" / "per_image_fbeta.npz").write_bytes(b"not an npz")
    with pytest.raises(DataError, match="per_image_fbeta.npz: not a per-image F-beta file"):
        compare_reports(tmp_path / "a", tmp_path / "b", resamples=100)
