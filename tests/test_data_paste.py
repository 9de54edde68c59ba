"""Real glass pasted small into labelled photos (`glassgem data paste`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from glassgem.cli import main
from glassgem.data.layouts import Pair, find_pairs
from glassgem.data.paste import fade, glass_pieces, paste_glass, paste_one
from glassgem.errors import ConfigError, DataError
from glassgem.io import load_image, load_mask, save_image, save_mask

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)


def _photo(root, name, size, fill, glass=None, glass_colour=RED):
    """A flat photo of `fill` with an optional glass box (top, left, h, w) painted `glass_colour`."""
    image = np.zeros((*size, 3), np.uint8) + np.array(fill, np.uint8)
    mask = np.zeros(size, np.uint8)
    if glass is not None:
        t, left, h, w = glass
        image[t : t + h, left : left + w] = glass_colour
        mask[t : t + h, left : left + w] = 1
    save_image(root / "images" / f"{name}.png", image)
    save_mask(root / "masks" / f"{name}.png", mask)


def _sets(tmp_path):
    glass, onto = tmp_path / "glass", tmp_path / "onto"
    _photo(glass, "g0", (80, 100), GREEN, (20, 30, 30, 40))
    _photo(glass, "g1", (90, 90), GREEN, (10, 10, 50, 20))
    _photo(onto, "o0", (120, 160), BLUE)
    _photo(onto, "o1", (100, 140), BLUE, (0, 0, 30, 30), glass_colour=YELLOW)
    return glass, onto


def test_glass_pieces_grow_the_box_and_skip_small_regions():
    mask = np.zeros((100, 100), np.uint8)
    mask[40:60, 10:30] = 1  # 400 px: a piece
    mask[0:2, 98:100] = 1  # 4 px: below min_share 0.001 x 10,000
    pieces = glass_pieces(mask, margin=0.25, min_share=0.001)
    assert pieces == [((35, 5, 30, 30), 400)]
    # the grown box is clipped at the border and counts every glass pixel inside it
    mask[38:40, 2:4] = 1
    assert glass_pieces(mask, margin=1.0, min_share=0.001)[0] == ((20, 0, 60, 50), 404)


def test_fade_rises_from_the_border():
    assert (fade(5, 7, 0) == 1).all()
    a = fade(10, 12, 3)
    assert a[0, 0] == pytest.approx(0.5 / 3) and a[1, 5] == pytest.approx(1.5 / 3)
    assert (a[3:-3, 3:-3] == 1).all() and np.allclose(a, a[::-1, ::-1])


def test_paste_one_lays_the_piece_and_its_mask():
    photo = np.zeros((20, 30, 3), np.uint8)
    photo_mask = np.zeros((20, 30), np.uint8)
    photo_mask[0:5, 0:5] = 1
    piece = np.full((6, 8, 3), 200, np.uint8)
    piece_mask = np.zeros((6, 8), np.uint8)
    piece_mask[1:5, 2:6] = 1
    out, mask = paste_one(photo, photo_mask, piece, piece_mask, (3, 4), feather=0.0)
    assert (out[3:9, 4:12] == 200).all() and out.sum() == 200 * 6 * 8 * 3
    assert mask[4:8, 6:10].all() and mask.sum() == 16 + 25 - 2 * 1  # the piece covers 2 of the photo's glass
    assert (photo == 0).all()  # the input is not changed


def test_paste_writes_labelled_photos_whose_masks_follow_the_glass(tmp_path):
    glass, onto = _sets(tmp_path)
    record = paste_glass(
        find_pairs(glass), find_pairs(onto), tmp_path / "out", n=6, share=(0.03, 0.08), feather=0.0, progress=False
    )
    assert record == json.loads((tmp_path / "out" / "paste.json").read_text())
    assert record["pieces"] == 2 and len(record["outputs"]) == 6
    assert len(find_pairs(tmp_path / "out")) == 6
    for o in record["outputs"]:
        image = load_image(tmp_path / "out" / "images" / f"{o['name']}.jpg").astype(int)
        mask = load_mask(tmp_path / "out" / "masks" / f"{o['name']}.png")
        assert 0.025 <= o["pasted_share"] <= 0.085
        red = (image[..., 0] > 160) & (image[..., 1] < 100) & (image[..., 2] < 100)
        yellow = (image[..., 0] > 160) & (image[..., 1] > 160) & (image[..., 2] < 100)
        assert ((red | yellow) == (mask > 0)).mean() > 0.97  # glass where the red (pasted) or yellow panes show
        t, left = o["at"]
        h, w = o["size"]
        outside = np.ones(mask.shape, bool)
        outside[t : t + h, left : left + w] = False
        own = load_mask(find_pairs(onto)[0 if o["onto"].endswith("o0.png") else 1].labelled_mask())
        assert (mask[outside] == own[outside]).all()  # the photo's own labels stay where nothing was pasted


def test_paste_is_reproducible_and_the_seed_matters(tmp_path):
    glass, onto = _sets(tmp_path)
    args = ["data", "paste", str(glass), "--onto", str(onto), "--n", "4"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / x / "paste.json").read_text()) for x in "ab")
    assert a == b
    for name in ("paste_00000.jpg", "paste_00003.jpg"):
        assert (tmp_path / "a" / "images" / name).read_bytes() == (tmp_path / "b" / "images" / name).read_bytes()
    assert main(args + ["--out", str(tmp_path / "c"), "--seed", "1"]) == 0
    c = json.loads((tmp_path / "c" / "paste.json").read_text())
    assert [o["at"] for o in c["outputs"]] != [o["at"] for o in a["outputs"]]
    # a longer set begins with the shorter one
    assert main(args[:-1] + ["6", "--out", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "paste.json").read_text())["outputs"][:4] == a["outputs"]


def test_paste_refusals(tmp_path, capsys):
    glass, onto = _sets(tmp_path)
    g, o = find_pairs(glass), find_pairs(onto)
    with pytest.raises(ConfigError, match="--share"):
        paste_glass(g, o, tmp_path / "x", n=2, share=(0.2, 0.1), progress=False)
    with pytest.raises(ConfigError, match="--n"):
        paste_glass(g, o, tmp_path / "x", n=0, progress=False)
    with pytest.raises(DataError, match="no glass region"):
        paste_glass(o[:1], o, tmp_path / "x", n=2, progress=False)
    bare = Pair("b0", tmp_path / "b0.png", None)  # an image-only pair: its glass is unknown
    with pytest.raises(DataError, match="b0.png: no mask"):
        paste_glass(g, [*o, bare], tmp_path / "x", n=2, progress=False)
    paste_glass(g, o[:1], tmp_path / "y", n=1, progress=False)
    with pytest.raises(DataError, match="already holds files"):
        paste_glass(g, o[:1], tmp_path / "y", n=1, progress=False)
    # the command never writes into either input set
    for out in (glass, onto / "images"):
        assert main(["data", "paste", str(glass), "--onto", str(onto), "--out", str(out)]) == 2
        assert "--out" in capsys.readouterr().err
    assert sorted(p.name for p in (glass / "images").iterdir()) == ["g0.png", "g1.png"]
