"""`glassgem demo` (what `make demo` runs): scenes, predictions, overlays, contact sheet, metric table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from glassgem import GEM
from glassgem.cli import main
from glassgem.demo import N_SCENES, SCENE_SIZE
from glassgem.evaluation.metrics import GlassMetrics


@pytest.fixture(scope="module")
def debug_weights(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    model = GEM.from_config("debug")
    # Random heads give one class everywhere; shift the glass logit so both classes occur.
    with torch.no_grad():
        model.decoder.class_embed.bias[1] += 2.0
    return str(model.save_pretrained(tmp_path_factory.mktemp("w") / "debug"))


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory):
    import torch

    torch.manual_seed(1)
    model = GEM.from_config("debug")
    with torch.no_grad():
        model.decoder.class_embed.bias[1] -= 2.0  # (almost) no glass: masks unlike the first model's
    return str(model.save_pretrained(tmp_path_factory.mktemp("w") / "other"))


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys, debug_weights, other_weights):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--weights", debug_weights, "--also", other_weights]) == 0
    text = capsys.readouterr().out

    names = sorted(p.stem for p in (out / "images").glob("*.jpg"))
    assert len(names) == N_SCENES
    assert sorted(p.stem for p in (out / "masks").glob("*.png")) == names
    assert sorted(p.stem for p in (out / "predictions").glob("*.png")) == names
    assert sorted(p.stem for p in (out / "predictions").glob("*_overlay.jpg")) == [f"{n}_overlay" for n in names]
    for name in names:
        pred = np.asarray(Image.open(out / "predictions" / f"{name}.png"))
        assert pred.shape == (SCENE_SIZE[1], SCENE_SIZE[0]) and set(np.unique(pred)) <= {0, 255}
    sheet = Image.open(out / "contact_sheet.jpg")
    assert sheet.mode == "RGB" and sheet.size[0] > 3 * 200

    # metrics.json is the evaluator's result on the written files, and the table prints the same numbers
    metrics = json.loads((out / "metrics.json").read_text())
    check = GlassMetrics()
    for name in names:
        check.update(
            np.asarray(Image.open(out / "predictions" / f"{name}.png")),
            np.asarray(Image.open(out / "masks" / f"{name}.png")),
        )
    expected = check.compute()
    for key in ("iou", "fbeta", "mae", "ber"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-9)
    assert metrics["n_images"] == N_SCENES
    assert f"{metrics['iou']:.4f}" in text and "contact sheet" in text

    # the demo's masks are the model's own prediction for each scene (the predict protocol)
    model = GEM.from_pretrained(debug_weights)
    own = model.predict(out / "images" / f"{names[0]}.jpg")
    written = np.asarray(Image.open(out / "predictions" / f"{names[0]}.png")) > 0
    assert (own.astype(bool) == written).mean() > 0.999

    # glass-free photos: every installed held-out photo (scikit-learn's and matplotlib's at least), its
    # printed false glass is the fraction of its written mask, and the mean line agrees with them
    free = sorted(p.stem for p in (out / "glass_free" / "images").glob("*.png"))
    assert {"scikit-learn__flower", "matplotlib__Minduka_Present_Blue_Pack"} <= set(free)
    assert not {"scikit-learn__china", "matplotlib__grace_hopper"} & set(free)  # excluded by eye: windows, spectacles
    fractions = []
    for name in free:
        mask = np.asarray(Image.open(out / "glass_free" / "predictions" / f"{name}.png")) > 0
        fractions.append(mask.mean())
        assert f"{name:60s} {100 * mask.mean():6.1f}% predicted glass" in text
    clean = sum(f < 0.01 for f in fractions)
    assert f"mean {np.mean(fractions):.3f} of the pixels; {clean} of {len(free)} photos under 1%" in text
    assert (out / "glass_free" / "contact_sheet.jpg").is_file()

    # --also: the same photos with a second model, its own masks, numbers and sheet after the first's
    second = out / "glass_free_other"
    others = [np.asarray(Image.open(second / "predictions" / f"{name}.png")) > 0 for name in free]
    assert [m.shape for m in others] == [
        Image.open(out / "glass_free" / "images" / f"{n}.png").size[::-1] for n in free
    ]
    assert any(
        (a != b).any()
        for a, b in zip(
            others, (np.asarray(Image.open(out / "glass_free" / "predictions" / f"{n}.png")) > 0 for n in free)
        )
    )  # another model, other masks
    tail = text[text.index(f"--weights {other_weights}") :]
    mean_other = np.mean([m.mean() for m in others])
    assert f"mean {mean_other:.3f} of the pixels; {sum(m.mean() < 0.01 for m in others)} of {len(free)}" in tail
    assert (second / "contact_sheet.jpg").is_file()


@pytest.mark.slow
def test_demo_scenes_are_deterministic(tmp_path, debug_weights):
    for run in ("a", "b"):
        assert main(["demo", "--out", str(tmp_path / run), "--weights", debug_weights]) == 0
    for sub in ("images/scene_03.jpg", "masks/scene_03.png", "metrics.json"):
        assert (tmp_path / "a" / sub).read_bytes() == (tmp_path / "b" / sub).read_bytes()


@pytest.mark.slow
def test_demo_adds_the_other_shipped_models_only_when_no_weights_are_given(
    tmp_path, capsys, debug_weights, monkeypatch
):
    """`glassgem demo` alone runs the default (GEM-S) and also scores the glass-free photos with the fast
    gem-lite and with gem-lite-gf; with --weights it runs only that model; a bad --also fails before any
    work, naming it."""
    import glassgem.demo
    from glassgem.hub.pretrained import shipped_models

    assert {"gem-lite", "gem-lite-gf", "gem-s"} <= set(shipped_models())
    calls = []
    with monkeypatch.context() as m:
        m.setattr(glassgem.demo, "run_demo", lambda out, weights, also, **kw: calls.append((weights, also)) or 0)
        assert main(["demo", "--out", str(tmp_path / "x")]) == 0
    assert calls == [(None, ["gem-lite", "gem-lite-gf"])]
    assert main(["demo", "--out", str(tmp_path / "w"), "--weights", debug_weights]) == 0
    assert not (tmp_path / "w" / "glass_free_gem-lite-gf").exists()
    assert not (tmp_path / "w" / "glass_free_gem-lite").exists()
    capsys.readouterr()
    assert main(["demo", "--out", str(tmp_path / "bad"), "--also", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_demo_reports_a_missing_weights_folder(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--weights", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_demo_scores_a_real_scene_folder(tmp_path, capsys, debug_weights):
    """--real-scenes DIR with DIR/dev in place: predictions, the per-bin table and the truth/prediction sheet."""
    from glassgem.demo import real_scenes
    from glassgem.inference.scorers import build_scorer
    from glassgem.io import save_image, save_mask

    rng = np.random.default_rng(0)
    for i in range(2):
        save_image(tmp_path / "rs" / "dev" / "images" / f"s{i}.jpg", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        mask = np.zeros((48, 64), np.uint8)
        mask[:10, :10] = 1
        save_mask(tmp_path / "rs" / "dev" / "masks" / f"s{i}.png", mask)
    assert real_scenes(tmp_path / "out", tmp_path / "rs", "unused", build_scorer(debug_weights), progress=False) == 0
    text = capsys.readouterr().out
    assert "2 real scenes" in text and "pred / true" in text and "<10%" in text
    assert (tmp_path / "out" / "contact_sheet.jpg").is_file()
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["n_images"] == 2


def test_demo_goes_on_when_the_real_scenes_cannot_be_fetched(tmp_path, capsys, debug_weights):
    from glassgem.demo import real_scenes
    from glassgem.inference.scorers import build_scorer

    assert (
        real_scenes(
            tmp_path / "out",
            tmp_path / "rs",
            str(tmp_path / "no_such_folder"),
            build_scorer(debug_weights),
            progress=False,
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "could not fetch them" in text and "glassgem data real-scenes --from DIR" in text
    assert not (tmp_path / "out").exists()
