"""Score smoothing (ModelConfig.score_smoothing, model.postprocess.smooth_scores): a box mean over a fraction of the
input side, applied by GEM.semantic_scores, its TorchScript graphs and the CLI's --smoothing; off (0) for
the original GEM configurations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from glassgem import GEM
from glassgem.cli import main
from glassgem.config import ModelConfig, check_smoothing, model_preset
from glassgem.errors import ConfigError
from glassgem.model.postprocess import smooth_scores, smoothing_radius


def _avg_pool_box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Independent reference: two avg_pool2d passes that count only the pixels inside the image."""
    k = 2 * r + 1
    x = F.avg_pool2d(x, (1, k), stride=1, padding=(0, r), count_include_pad=False)
    return F.avg_pool2d(x, (k, 1), stride=1, padding=(r, 0), count_include_pad=False)


@pytest.mark.parametrize(
    "shape, fraction",
    [((2, 2, 384, 320), 0.0625), ((1, 2, 96, 160), 0.2), ((1, 3, 64, 64), 0.49), ((1, 2, 40, 33), 0.03)],
)
def test_smooth_scores_is_the_box_mean_inside_the_image(shape, fraction):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    r = smoothing_radius(fraction, shape[-2:])
    assert r >= 1
    got = smooth_scores(x, fraction)
    assert got.shape == x.shape
    torch.testing.assert_close(got, _avg_pool_box(x, r), atol=1e-5, rtol=0)


def test_radius_is_a_fraction_of_the_shorter_side_and_zero_leaves_scores_alone():
    assert smoothing_radius(0.0625, (384, 384)) == 24
    assert smoothing_radius(0.0625, (320, 448)) == 20
    x = torch.rand(1, 2, 64, 64)
    assert smooth_scores(x, 0.0) is x
    assert smooth_scores(x, 0.001) is x  # rounds to a zero radius


def test_smoothing_removes_a_speck_and_fills_a_hole():
    """Glass scores over a big pane with a one-pixel hole, plus a lone speck of glass on background."""
    scores = torch.zeros(1, 2, 64, 64)
    scores[:, 0] = 1.0
    scores[:, :, 8:40, 8:40] = torch.tensor([0.0, 1.0]).view(2, 1, 1)  # the pane
    scores[:, :, 20, 20] = torch.tensor([1.0, 0.0])  # hole
    scores[:, :, 55, 55] = torch.tensor([0.0, 1.0])  # speck
    raw, smooth = scores.argmax(1)[0], smooth_scores(scores, 0.05).argmax(1)[0]
    assert raw[20, 20] == 0 and raw[55, 55] == 1
    assert smooth[20, 20] == 1 and smooth[55, 55] == 0
    assert smooth[12:36, 12:36].all()  # the pane's inside is still glass


def test_config_checks_the_value_and_old_configs_mean_off():
    assert check_smoothing("0.1") == 0.1
    for bad in (-0.1, 0.5, 2, "much", None):
        with pytest.raises(ConfigError, match="score smoothing"):
            check_smoothing(bad)
    with pytest.raises(ConfigError, match="score smoothing 0.7"):
        ModelConfig.from_dict({"score_smoothing": 0.7})
    old = {k: v for k, v in model_preset("gem-lite").to_dict().items() if k != "score_smoothing"}
    assert ModelConfig.from_dict(old).score_smoothing == 0.0  # weights saved before the option: raw scores


@pytest.mark.parametrize("preset,smoothing", [("gem-tiny", 0.0), ("gem-base", 0.0), ("gem-lite", 0.0625)])
def test_preset_smoothing_defaults(preset, smoothing):
    """The paper's models score raw (as the original GEM); the shipped GEM-Lite smooths."""
    assert model_preset(preset).score_smoothing == smoothing


def test_semantic_scores_applies_the_config_eagerly_and_in_graphs():
    from glassgem.inference.graphs import ScoreGraphs

    torch.manual_seed(0)
    model = GEM.from_config("debug").fuse_for_inference()
    graphs = ScoreGraphs(model, after_seconds=0.0)
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(2)) * 255
    with torch.no_grad():
        raw = model.semantic_scores(x)
        model.cfg.score_smoothing = 0.1
        eager = model.semantic_scores(x)
        graphed = graphs(x)  # traced with the smoothing
        model.cfg.score_smoothing = 0.0
        graphed_raw = graphs(x)  # another graph, not the smoothed one
    torch.testing.assert_close(eager, smooth_scores(raw, 0.1), atol=1e-6, rtol=0)
    assert (eager - raw).abs().max().item() > 1e-3
    torch.testing.assert_close(graphed, eager, atol=1e-4, rtol=0)
    torch.testing.assert_close(graphed_raw, raw, atol=1e-4, rtol=0)
    assert sorted(key[-1] for key in graphs.graphs) == [0.0, 0.1]


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_cli_rejects_a_bad_smoothing_before_loading_a_model(command, tmp_path, capsys):
    photo = tmp_path / "p.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(photo)
    argv = (
        ["evaluate", "--data", str(tmp_path)]
        if command == "evaluate"
        else ["predict", str(photo), "--out", str(tmp_path / "out")]
    )
    rc = main(argv + ["--weights", str(tmp_path / "missing_weights"), "--smoothing", "0.8"])
    err = capsys.readouterr().err
    assert rc == 2 and "score smoothing 0.8" in err and "missing_weights" not in err


def test_predict_smoothing_override_changes_the_mask(tmp_path):
    """--smoothing on the CLI replaces the model's value: 0 gives the raw map, a large value a smoother one."""
    from PIL import Image

    torch.manual_seed(0)
    weights = GEM.from_config("debug").save_pretrained(tmp_path / "w")
    rng = np.random.default_rng(0)
    photo = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(photo)
    probs = {}
    for value in ("0", "0.3"):
        out = tmp_path / f"out{value}"
        assert (
            main(
                [
                    "predict",
                    str(photo),
                    "--out",
                    str(out),
                    "--weights",
                    str(weights),
                    "--save-prob",
                    "--smoothing",
                    value,
                    "--quiet",
                ]
            )
            == 0
        )
        probs[value] = np.asarray(Image.open(out / "noise_prob.png"), dtype=np.float32)
    from glassgem import Predictor

    raw = Predictor(GEM.from_pretrained(weights)).probabilities(np.asarray(Image.open(photo)))
    assert np.abs(probs["0"] - raw * 255).max() <= 1.0
    # the box mean flattens the map: less spread between pixels
    assert probs["0.3"].std() < 0.7 * probs["0"].std()


def test_evaluate_cli_reports_the_smoothing_it_used(tmp_path, capsys):
    import json

    from PIL import Image

    torch.manual_seed(0)
    model = GEM.from_config("debug")
    model.cfg.score_smoothing = 0.1
    weights = model.save_pretrained(tmp_path / "w")
    rng = np.random.default_rng(1)
    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(
            tmp_path / "data" / "images" / f"{i}.png"
        )
        mask = np.zeros((64, 96), np.uint8)
        mask[10:40, 20:70] = 255
        Image.fromarray(mask).save(tmp_path / "data" / "masks" / f"{i}.png")
    results = {}
    for value in (None, "0"):
        extra = [] if value is None else ["--smoothing", value]
        out = tmp_path / f"m{value}.json"
        assert (
            main(["evaluate", "--weights", str(weights), "--data", str(tmp_path / "data"), "--json", str(out), *extra])
            == 0
        )
        results[value] = (json.loads(out.read_text()), capsys.readouterr().out)
    smoothed, printed = results[None]
    assert smoothed["score_smoothing"] == 0.1 and "box-smoothed over 27x27 px at 128x128" in printed
    raw, printed = results["0"]
    assert "score_smoothing" not in raw and "box-smoothed" not in printed
