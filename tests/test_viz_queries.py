"""`glassgem visualize queries` / viz.queries.query_figure: the dots sit on the positions DQS selected,
the red tint is the predicted mask, and the figures are valid images of the documented size."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from glassgem import GEM
from glassgem.cli import main
from glassgem.errors import ConfigError
from glassgem.overlay import GLASS_RED, overlay_mask
from glassgem.viz.queries import YELLOW, layer_panels, query_figure

H, W = 150, 200  # not a multiple of 32, not square: the dots must be mapped back from the squashed input


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([xx * 255 // W, yy * 255 // H, np.full_like(xx, 90)], axis=-1).astype(np.int64)
    img[40:110, 60:150] = [30, 60, 200]  # a bluish "pane"
    img = np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(img).save(path)
    return path


def _split_classes(model: GEM, photo) -> None:
    """A random decoder gives every query the same class, hence a uniform map. Make the class head split
    the final queries along one direction (threshold searched so the photo gets some glass and some
    background), and let the boxes move (bbox_embed's last layer starts at zero)."""
    with torch.no_grad():
        model.decoder.mask_embed.layers[-1].weight.mul_(10)
        nn.init.normal_(model.decoder.bbox_embed.layers[-1].weight, std=0.05)
    seen = []
    hook = model.decoder.class_embed.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
    model.predict(Image.open(photo))
    hook.remove()
    x = seen[-1][0]  # Q x C, class-head input of the last layer
    d = x[0] - x.mean(0)
    proj = (x @ d).sort().values
    with torch.no_grad():
        model.decoder.class_embed.weight.copy_(torch.stack([5 * d, -5 * d, torch.zeros_like(d)]))
        for t in (proj[1:] + proj[:-1]) / 2:
            model.decoder.class_embed.bias.copy_(torch.stack([-5 * t, 5 * t, torch.tensor(-30.0)]))
            if 0.05 < model.predict(Image.open(photo)).mean() < 0.95:
                return
    raise AssertionError("no threshold gives a photo with both glass and background")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, photo):
    torch.manual_seed(0)
    model = GEM.from_config("debug").eval()
    _split_classes(model, photo)
    return model.save_pretrained(tmp_path_factory.mktemp("model") / "debug")


@pytest.fixture(scope="module")
def model(model_dir):
    return GEM.from_pretrained(model_dir)


def _selected(model, path, size):
    """The DQS top-k cells, from the query-selection module itself, and their grid."""
    img = np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    x = torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32))[None]
    with torch.no_grad():
        props = model.query_selection(model.pixel_decoder.project(model.features(x)))
    return props.indices[0].numpy(), tuple(props.logits.shape[-2:])


@pytest.mark.parametrize("size", [128, 192])
def test_yellow_dots_on_the_selected_cells(model, photo, size):
    fig, info = query_figure(model, photo, size=size)
    assert fig.dtype == np.uint8 and fig.shape == (H, W, 3)
    indices, (gh, gw) = _selected(model, photo, size)
    assert (gh, gw) == (size // 16, size // 16) == info["grid"]
    np.testing.assert_array_equal(info["indices"], indices)
    # centre of cell (r, c) of the squashed input, back in the photo's pixel coordinates
    want = np.stack([(indices % gw + 0.5) * W / gw, (indices // gw + 0.5) * H / gh], axis=1)
    np.testing.assert_allclose(info["points"], want)
    for x, y in want.astype(int):
        assert tuple(fig[y, x]) == YELLOW, (x, y)
    others = sorted(set(range(gh * gw)) - set(indices.tolist()))
    assert others  # more cells than queries
    for i in others:
        x, y = int((i % gw + 0.5) * W / gw), int((i // gw + 0.5) * H / gh)
        assert tuple(fig[y, x]) != YELLOW, (x, y)


def test_red_tint_is_the_predicted_mask(model, photo):
    fig, info = query_figure(model, photo)
    mask = model.predict(Image.open(photo))
    assert 0.05 < mask.mean() < 0.95  # the fixture's model sees some glass and some background
    assert info["glass_fraction"] == pytest.approx(mask.mean())
    expected = overlay_mask(np.asarray(Image.open(photo).convert("RGB")), mask, GLASS_RED, 0.45)
    # everywhere except on and around the dots, the figure is exactly the mask overlay
    yy, xx = np.mgrid[0:H, 0:W]
    near = np.zeros((H, W), bool)
    for x, y in info["points"]:
        near |= (xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= (info["dot_radius"] + 2) ** 2
    np.testing.assert_array_equal(fig[~near], expected[~near])
    assert (fig[near] != expected[near]).any()


def test_red_tint_follows_the_models_score_smoothing(model, photo):
    """With score smoothing on (as the shipped GEM-Lite), the figure still shows predict's mask."""
    raw = model.predict(Image.open(photo))
    model.cfg.score_smoothing = 0.1
    try:
        _, info = query_figure(model, photo)
        smoothed = model.predict(Image.open(photo))
    finally:
        model.cfg.score_smoothing = 0.0
    assert (smoothed != raw).any()
    assert info["glass_fraction"] == pytest.approx(smoothed.mean())


def test_reference_boxes_per_layer(model, photo):
    fig, info = query_figure(model, photo, all_layers=True)
    refs = info["references"]
    cfg = model.cfg
    assert refs.shape == (cfg.dec_layers + 1, cfg.num_queries, 4)
    assert ((refs >= 0) & (refs <= 1)).all()
    np.testing.assert_allclose(refs[0], model.decoder.query_embed.weight.detach().sigmoid().numpy(), atol=1e-6)
    # each layer refines the boxes of the one before (the fixture's bbox_embed is not zero)
    for a, b in zip(refs[:-1], refs[1:]):
        assert np.abs(b - a).max() > 1e-3
    # one row of panels: the DQS picture + anchors + one per layer, wider than tall
    assert fig.dtype == np.uint8 and fig.ndim == 3 and fig.shape[1] > fig.shape[0]
    assert (fig == np.array(YELLOW, np.uint8)).all(axis=2).any()


def test_cli_writes_figures(model_dir, photo, tmp_path, capsys):
    out = tmp_path / "fig6.png"
    assert main(["visualize", "queries", str(photo), "--weights", str(model_dir), "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (W, H)
    assert "16 DQS positions on a 8x8 grid" in capsys.readouterr().out
    layers = tmp_path / "layers.png"
    args = ["visualize", "queries", str(photo), "--weights", str(model_dir), "--out", str(layers), "--all-layers"]
    assert main(args + ["--size", "160", "--boxes", "5"]) == 0
    with Image.open(layers) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.width > im.height > 100


def test_cli_errors_name_the_problem(model_dir, photo, tmp_path, capsys):
    missing = tmp_path / "nope.jpg"
    assert (
        main(["visualize", "queries", str(missing), "--weights", str(model_dir), "--out", str(tmp_path / "o.png")]) == 2
    )
    assert f"{missing}: file not found" in capsys.readouterr().err
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    assert (
        main(["visualize", "queries", str(broken), "--weights", str(model_dir), "--out", str(tmp_path / "o.png")]) == 2
    )
    assert f"{broken}: cannot read image" in capsys.readouterr().err
    assert (
        main(
            [
                "visualize",
                "queries",
                str(photo),
                "--weights",
                str(model_dir),
                "--out",
                str(tmp_path / "o.png"),
                "--size",
                "100",
            ]
        )
        == 2
    )
    assert "multiple of 32" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_model_without_dqs_is_refused(photo):
    cfg = GEM.from_config("debug").cfg
    cfg.use_dqs = False
    with pytest.raises(ConfigError, match="no discerning query selection"):
        query_figure(GEM(cfg).eval(), photo)


def test_layer_panels_draw_only_the_best_ranked_boxes():
    picture = np.full((96, 128, 3), 128, np.uint8)  # gray: every coloured pixel is a box edge
    refs = np.array([[[0.25, 0.5, 0.3, 0.6], [0.75, 0.5, 0.3, 0.6], [0.5, 0.25, 0.8, 0.3]]] * 2)  # 2 panels x 3 boxes

    def coloured(max_boxes):
        fig = layer_panels(picture, refs, max_boxes=max_boxes)
        return int(((fig.max(axis=2).astype(int) - fig.min(axis=2)) > 60).sum())

    one, two, every = coloured(1), coloured(2), coloured(None)
    assert 0 < one < two < every == coloured(3)
    assert coloured(0) == 0
