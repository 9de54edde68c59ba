"""`glassgem analyze tsne` / viz.tsne: one point per image with its set's label in the CSV, a valid plot,
encoder and CLIP features, deterministic sampling, valid perplexity, clear errors."""

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glassgem import GEM
from glassgem.cli import main
from glassgem.errors import ConfigError, DataError
from glassgem.viz.tsne import (
    clip_extractor,
    encoder_extractor,
    list_images,
    load_sets,
    sample,
    tsne_figure,
    valid_perplexity,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """'real' as a dataset root (images/ + masks/, dark photos), 'synth' as a plain folder (bright ones)."""
    root = tmp_path_factory.mktemp("sets")
    rng = np.random.default_rng(0)
    (root / "real" / "images").mkdir(parents=True)
    (root / "real" / "masks").mkdir()
    (root / "synth").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 110, (60, 80, 3), dtype=np.uint8)).save(root / "real" / "images" / f"r{i}.jpg")
        Image.fromarray(np.zeros((60, 80), np.uint8)).save(root / "real" / "masks" / f"r{i}.png")
        Image.fromarray(rng.integers(120, 256, (70, 50, 3), dtype=np.uint8)).save(root / "synth" / f"s{i}.png")
    (root / "synth" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    return GEM.from_config("debug").save_pretrained(tmp_path_factory.mktemp("model") / "debug")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny random CLIP model + image processor, saved locally (no network): synth_fixtures' maker."""
    from synth_fixtures import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("clip"))


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_outputs(out: Path, sets: Path) -> list[dict]:
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 200 and im.height > 200
    rows = _rows(out.with_suffix(".csv"))
    assert len(rows) == 12
    want = {str(p): "real" for p in (sets / "real" / "images").glob("*.jpg")}
    want.update({str(p): "synth" for p in (sets / "synth").glob("*.png")})
    assert {r["image"]: r["set"] for r in rows} == want
    xy = np.array([[float(r["x"]), float(r["y"])] for r in rows])
    assert np.isfinite(xy).all() and xy.std(axis=0).min() > 0
    return rows


@pytest.mark.slow
def test_encoder_features_cli(sets, model_dir, tmp_path, capsys):
    out = tmp_path / "tsne.png"
    args = [
        "analyze",
        "tsne",
        "--data",
        f"real={sets / 'real'}",
        f"synth={sets / 'synth'}",
        "--out",
        str(out),
        "--weights",
        str(model_dir),
    ]
    assert main(args) == 0
    rows = _check_outputs(out, sets)
    printed = capsys.readouterr().out
    assert "real 6, synth 6" in printed and "perplexity 3.67" in printed  # 30 lowered to (12 - 1) / 3
    # two clearly different sets (dark vs bright photos) land in two separate clusters
    xy = {s: np.array([[float(r["x"]), float(r["y"])] for r in rows if r["set"] == s]) for s in ("real", "synth")}
    gap = np.linalg.norm(xy["real"].mean(0) - xy["synth"].mean(0))
    spread = max(np.linalg.norm(v - v.mean(0), axis=1).max() for v in xy.values())
    assert gap > spread
    # the same command again gives the same coordinates (seeded)
    first = out.with_suffix(".csv").read_text()
    assert main(args) == 0
    assert out.with_suffix(".csv").read_text() == first


def test_encoder_features_are_the_pooled_stride16_map(sets, model_dir):
    model = GEM.from_pretrained(model_dir)
    photo = np.asarray(Image.open(sets / "synth" / "s0.png").convert("RGB"))
    got = encoder_extractor(model)([photo])
    x = torch.from_numpy(
        np.asarray(Image.fromarray(photo).resize((128, 128), Image.Resampling.BILINEAR))
        .transpose(2, 0, 1)
        .astype(np.float32)
    )[None]
    with torch.no_grad():
        res4 = model.features(x)["res4"]  # the pyramid's stride-16 level is the encoder map itself
    assert res4.shape[-2:] == (8, 8)
    torch.testing.assert_close(got, res4.mean(dim=(2, 3)))


def test_clip_features_cli(sets, clip_dir, tmp_path):
    out = tmp_path / "clip.png"
    assert (
        main(
            [
                "analyze",
                "tsne",
                "--data",
                f"real={sets / 'real'}",
                f"synth={sets / 'synth'}",
                "--out",
                str(out),
                "--features",
                "clip",
                "--clip-model",
                str(clip_dir),
                "--perplexity",
                "2",
            ]
        )
        == 0
    )
    _check_outputs(out, sets)


def test_clip_features_are_normalised_image_embeddings(sets, clip_dir):
    from transformers import CLIPImageProcessor, CLIPModel

    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((sets / "synth").glob("*.png"))[:2]]
    got = clip_extractor(clip_dir)(photos)
    clip = CLIPModel.from_pretrained(clip_dir).eval()
    pixels = CLIPImageProcessor.from_pretrained(clip_dir)(
        images=[Image.fromarray(p) for p in photos], return_tensors="pt"
    ).pixel_values
    with torch.no_grad():
        emb = clip.get_image_features(pixel_values=pixels)
    emb = emb if isinstance(emb, torch.Tensor) else emb.pooler_output
    assert got.shape == (2, 16)
    torch.testing.assert_close(got, emb / emb.norm(dim=-1, keepdim=True))


def test_sampling_is_deterministic_and_bounded(sets):
    paths = list_images(sets / "synth")
    assert [p.name for p in paths] == [f"s{i}.png" for i in range(6)]  # notes.txt is not an image
    a, b = sample(paths, 4, seed=3), sample(paths, 4, seed=3)
    assert a == b and len(a) == 4 and a == sorted(a) and set(a) <= set(paths)
    assert sample(paths, 10, seed=3) == paths
    assert {sample(paths, 2, seed=s)[0] for s in range(20)} != {paths[0]}  # the seed does choose
    loaded = load_sets([f"a={sets / 'real'}", f"b={sets / 'synth'}"], max_per_set=2, seed=1)
    assert [(s.name, len(s.paths)) for s in loaded] == [("a", 2), ("b", 2)]


def test_perplexity_is_valid_for_small_sets():
    assert valid_perplexity(30, 12) == pytest.approx(11 / 3)
    assert valid_perplexity(30, 1000) == 30
    assert valid_perplexity(30, 3) == 1.0
    assert valid_perplexity(5, 40) == 5


def test_dataset_root_with_splits_uses_every_split(tmp_path):
    for split, n in (("train", 3), ("val", 2)):
        for sub in ("images", "masks"):
            (tmp_path / split / sub).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8)).save(tmp_path / split / "images" / f"{split}{i}.jpg")
            Image.new("L", (8, 8)).save(tmp_path / split / "masks" / f"{split}{i}.png")
    assert [p.name for p in list_images(tmp_path)] == ["train0.jpg", "train1.jpg", "train2.jpg", "val0.jpg", "val1.jpg"]


def test_bad_inputs_give_clear_errors(sets, model_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "t.png"
    cases = [
        ([f"real={sets / 'real'}", "synth"], "--data 'synth': expected NAME=DIR"),
        ([f"real={sets / 'real'}", f"synth={empty}"], f"{empty}: no images found"),
        ([f"real={sets / 'real'}", f"synth={tmp_path / 'missing'}"], f"{tmp_path / 'missing'}: folder not found"),
        ([f"a={sets / 'real'}", f"a={sets / 'synth'}"], "the set name 'a' is given twice"),
    ]
    for data, message in cases:
        assert main(["analyze", "tsne", "--data", *data, "--out", str(out), "--weights", str(model_dir)]) == 2
        assert message in capsys.readouterr().err
    assert main(["analyze", "tsne", "--data", f"r={sets / 'real'}", "--out", str(out), "--features", "clip"]) == 2
    assert "--features clip needs --clip-model" in capsys.readouterr().err
    assert not out.exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40)).save(broken / f"{i}.png")
    (broken / "3.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="3.png: cannot read image"):
        tsne_figure([f"b={broken}"], out, model=GEM.from_pretrained(model_dir), progress=False)
    with pytest.raises(ConfigError, match="plot must be one of"):
        tsne_figure([f"b={broken}"], tmp_path / "t.gif", progress=False)
    with pytest.raises(DataError, match="at least 3 images"):
        tsne_figure([f"b={sets / 'synth'}"], out, max_per_set=2, model=GEM.from_pretrained(model_dir), progress=False)
