"""The interim `glassgem demo`: runs end to end, writes its files, prints the metric table."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from glassgem.cli import main
from glassgem.demo import SCENES, run_demo


def test_demo_writes_files_and_prints_table(tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_demo(out) == 0
    text = capsys.readouterr().out
    assert "EXAMPLE predictions" in text and "not model outputs" in text

    for sub in ("images", "masks", "predictions"):
        assert sorted(p.stem for p in (out / sub).glob("*.png")) == sorted(SCENES)
    for name in SCENES:
        img = np.asarray(Image.open(out / "images" / f"{name}.png"))
        mask = np.asarray(Image.open(out / "masks" / f"{name}.png"))
        assert img.shape == mask.shape + (3,) and img.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
    masks = {n: np.asarray(Image.open(out / "masks" / f"{n}.png")) for n in SCENES}
    assert not masks["empty_room"].any() and masks["close_up_pane"].all()
    assert 0 < masks["glass_door"].mean() < 255

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == len(SCENES)
    # One scene without glass (and none predicted there), one made only of glass.
    assert (metrics["n_ber_no_glass"], metrics["n_ber_all_glass"], metrics["n_iou_empty"]) == (1, 1, 1)
    # Degraded but not ruined: the example predictions are imperfect copies of the masks.
    assert 0.6 < metrics["iou"] < 1.0 and 0.6 < metrics["fbeta"] < 1.0
    assert 0.0 < metrics["mae"] < 0.2 and 0.0 < metrics["ber"] < 20.0

    # The printed table carries the same numbers as metrics.json.
    rows = {line.split("  ")[0].strip(): line for line in text.splitlines()}
    assert f"{metrics['iou']:.4f}" in rows["IoU"]
    assert f"{metrics['ber']:.2f}" in rows["BER (%)"]
    assert rows["images"].split()[1] == str(len(SCENES))


def test_demo_is_deterministic_and_reruns_in_place(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    first = (out / "metrics.json").read_text()
    pred = (out / "predictions" / "glass_door.png").read_bytes()
    assert main(["demo", "--out", str(out)]) == 0
    assert (out / "metrics.json").read_text() == first
    assert (out / "predictions" / "glass_door.png").read_bytes() == pred
    capsys.readouterr()
