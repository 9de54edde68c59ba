"""`glassgem predict` and `GEM.predict`: masks at the photo's size, the paper's test protocol, bad files
reported and skipped, no silent name clashes; `import glassgem` stays light."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import GDD_DEV, run_fresh_python
from glassgem import GEM
from glassgem.cli import main
from glassgem.data.transforms import TestTransform
from glassgem.errors import ConfigError, DataError, GlassgemError
from glassgem.inference.files import Photo, collect_inputs
from glassgem.inference.predict import predict_files
from glassgem.inference.scorers import ModelScorer
from glassgem.io import load_image
from glassgem.model.postprocess import semantic_map


def _photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour ramps plus a bright block and noise: a photo-like uint8 [h, w, 3]."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([255 * x / w, 255 * y / h, 128 + 60 * np.sin(x / 5.0)], axis=-1)
    img[h // 4 : h // 2, w // 3 : 2 * w // 3] = (240, 240, 250)
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


def _balanced_debug_model(image: np.ndarray) -> GEM:
    """The debug model with its glass logit shifted so that about half of `image` is glass: random weights
    give a nearly constant map, which would make mask comparisons trivially true."""
    torch.manual_seed(0)
    model = GEM.from_config("debug").eval()
    size = model.cfg.image_size
    x = torch.from_numpy(np.array(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR)))
    with torch.no_grad():
        out = model(x.permute(2, 0, 1)[None].float())
        lo, hi = -8.0, 8.0
        for _ in range(30):  # bisection on a shift of the glass logit (= of the class head's glass bias)
            shift = (lo + hi) / 2
            scores = semantic_map(out["pred_logits"] + torch.tensor([0.0, shift, 0.0]), out["pred_masks"], (size, size))
            lo, hi = (lo, shift) if (scores[0, 1] > scores[0, 0]).float().mean() > 0.5 else (shift, hi)
        model.decoder.class_embed.bias[1] += shift
    return model


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """wide.jpg 72x120, portrait.png 130x60, gray.png (mode L) 50x44 and corrupt.jpg."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    Image.fromarray(_photo(rng, 72, 120)).save(root / "wide.jpg", quality=95)
    Image.fromarray(_photo(rng, 130, 60)).save(root / "portrait.png")
    Image.fromarray(_photo(rng, 50, 44)[..., 1]).save(root / "gray.png")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory, photos) -> Path:
    model = _balanced_debug_model(np.asarray(Image.open(photos / "portrait.png").convert("RGB")))
    return model.save_pretrained(tmp_path_factory.mktemp("weights") / "debug")


SIZES = {"wide": (72, 120), "portrait": (130, 60), "gray": (50, 44)}


class RedScorer:
    """A stand-in scorer (as an ONNX graph would be): glass where the squashed photo's red channel > 127.5."""

    input_size = 64

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        assert images.shape[1:] == (3, 64, 64) and images.dtype == torch.float32
        return torch.stack([torch.full_like(images[:, 0], 127.5), images[:, 0]], dim=1)


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _one_pair_dataset(root: Path, photo: np.ndarray, mask01: np.ndarray) -> Path:
    """root/images/p.png + root/masks/p.png (0/255): a dataset whose ground truth is `mask01`."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(photo).save(root / "images" / "p.png")
    Image.fromarray(mask01 * 255).save(root / "masks" / "p.png")
    return root


# ----------------------------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_folder_writes_masks_overlays_probs_and_skips_the_corrupt_file(photos, weights, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            str(photos),
            "--out",
            str(out),
            "--weights",
            str(weights),
            "--overlay",
            "--save-prob",
            "--batch-size",
            "2",
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1  # one photo failed
    assert "corrupt.jpg" in captured.err and "cannot read image" in captured.err
    assert "wrote 3 mask(s)" in captured.out and "1 failed" in captured.out and str(out) in captured.out
    for stem, hw in SIZES.items():
        mask = _read(out / f"{stem}.png")
        assert mask.shape == hw and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        prob = _read(out / f"{stem}_prob.png")
        assert prob.shape == hw and prob.dtype == np.uint8
        # the mask is the probability thresholded at 0.5 (up to the 1/255 quantisation of the saved map)
        clear = np.abs(prob.astype(int) - 127.5) > 1
        assert np.array_equal((mask > 0)[clear], (prob > 127.5)[clear])
        overlay = Image.open(out / f"{stem}_overlay.jpg")
        assert overlay.format == "JPEG" and overlay.mode == "RGB" and overlay.size == hw[::-1]
    assert not list(out.glob("corrupt*"))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}{suffix}" for s in SIZES for suffix in (".png", "_prob.png", "_overlay.jpg")
    )


def test_cli_quoted_glob_and_explicit_file(photos, weights, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            str(photos / "*.png"),
            str(photos / "wide.jpg"),
            "--out",
            str(out),
            "--weights",
            str(weights),
            "--quiet",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["gray.png", "portrait.png", "wide.png"]
    assert "0 failed" in capsys.readouterr().out


def test_cli_missing_weights_names_the_path(photos, tmp_path, capsys):
    missing = tmp_path / "no_such_weights"
    rc = main(["predict", str(photos / "wide.jpg"), "--out", str(tmp_path / "out"), "--weights", str(missing)])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(missing) in err and err.startswith("glassgem: error:") and len(err.strip().splitlines()) == 1


def test_cli_missing_input_is_an_error_before_any_model_is_loaded(tmp_path, capsys):
    rc = main(
        [
            "predict",
            str(tmp_path / "nope.jpg"),
            "--out",
            str(tmp_path / "out"),
            "--weights",
            str(tmp_path / "also_missing"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "nope.jpg: no such file or folder" in err and "also_missing" not in err


def test_cli_bad_size_is_reported(photos, weights, tmp_path, capsys):
    rc = main(
        [
            "predict",
            str(photos / "wide.jpg"),
            "--out",
            str(tmp_path / "o"),
            "--weights",
            str(weights),
            "--size",
            "100",
            "--quiet",
        ]
    )
    assert rc == 2 and "multiple of 32" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- protocol
def test_mask_equals_an_independent_computation(photos, weights, tmp_path):
    """Squash with the evaluation transform, semantic_scores, F.interpolate back, glass > background."""
    model = GEM.from_pretrained(weights)
    size = model.cfg.image_size
    out = tmp_path / "out"
    # portrait batched together with another photo, so batching is part of what is checked
    summary = predict_files(
        [Photo(photos / "wide.jpg", "wide"), Photo(photos / "portrait.png", "portrait")],
        out,
        lambda x: model.semantic_scores(x),
        size=size,
        batch_size=2,
        save_prob=True,
        progress=False,
    )
    assert summary.written == 2 and not summary.failed

    sample = TestTransform(size)({"image": load_image(photos / "portrait.png"), "stem": "portrait"})
    with torch.no_grad():
        scores = model.semantic_scores(sample["image"][None])
    full = F.interpolate(scores, size=sample["orig_size"], mode="bilinear", align_corners=False)[0]
    expected = (full[1] > full[0]).numpy()
    prob = (full[1].clamp_min(0) / (full[0].clamp_min(0) + full[1].clamp_min(0))).numpy()
    assert 0.2 < expected.mean() < 0.8  # the balanced model makes this a real test, not all-0 = all-0

    mask = _read(out / "portrait.png") > 0
    margin = (full[1] - full[0]).abs().numpy()
    decided = margin > 1e-5 * full.abs().max().item()  # batch-of-2 vs batch-of-1 rounding may flip ties
    assert decided.mean() > 0.9
    assert np.array_equal(mask[decided], expected[decided])
    saved_prob = _read(out / "portrait_prob.png").astype(np.float64) / 255.0
    assert np.abs(saved_prob - prob).max() <= 0.5 / 255 + 1e-6


def test_scores_are_resized_back_with_the_photo_orientation(tmp_path):
    """A portrait photo whose left half is red: the mask is the left half, at 130x60 (not transposed)."""
    img = np.zeros((130, 60, 3), np.uint8)
    img[:, :30, 0] = 255
    Image.fromarray(img).save(tmp_path / "left_red.png")
    summary = predict_files(
        [Photo(tmp_path / "left_red.png", "left_red")], tmp_path / "out", RedScorer(), progress=False
    )
    mask = _read(tmp_path / "out" / "left_red.png")
    assert summary.written == 1 and mask.shape == (130, 60)
    assert (mask[:, :28] == 255).all() and (mask[:, 32:] == 0).all()


# ------------------------------------------------------------------------------------ inputs/names
def test_collect_inputs_files_folders_globs(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "a" / "sub").mkdir(parents=True)
    for rel in ("a/1.jpg", "a/2.png", "a/sub/3.png", "b.png"):
        Image.fromarray(_photo(rng, 40, 40)).save(tmp_path / rel)
    (tmp_path / "a" / "notes.txt").write_text("not a photo")
    (tmp_path / "a" / ".hidden.png").write_bytes(b"")

    def names(inputs, **kw):
        return [(p.path.relative_to(tmp_path).as_posix(), p.name) for p in collect_inputs(inputs, **kw)]

    assert names([str(tmp_path / "a")]) == [("a/1.jpg", "1"), ("a/2.png", "2")]
    assert names([str(tmp_path / "a")], recursive=True) == [
        ("a/1.jpg", "1"),
        ("a/2.png", "2"),
        ("a/sub/3.png", "sub/3"),
    ]
    assert names([str(tmp_path / "**" / "*.png")]) == [("a/2.png", "2"), ("a/sub/3.png", "3"), ("b.png", "b")]
    # the same file twice (file + glob) is predicted once
    assert names([str(tmp_path / "b.png"), str(tmp_path / "*.png")]) == [("b.png", "b")]
    # an explicit file is taken whatever its extension (and then reported if unreadable)
    assert names([str(tmp_path / "a" / "notes.txt")]) == [("a/notes.txt", "notes")]
    # earlier results inside --out are not inputs
    assert names([str(tmp_path / "a")], recursive=True, out=tmp_path / "a" / "sub") == [
        ("a/1.jpg", "1"),
        ("a/2.png", "2"),
    ]
    with pytest.raises(DataError, match="matches no image or video files"):
        collect_inputs([str(tmp_path / "*.webp")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no image or video files"):
        collect_inputs([str(tmp_path / "empty")])


def test_identical_stems_do_not_overwrite_each_other(tmp_path):
    """a/x.jpg, b/x.png and c/X.png (same name on a case-insensitive disk) get x, x_2, x_3."""
    sizes = {"a/x.jpg": (40, 56), "b/x.png": (64, 32), "c/X.png": (48, 48)}
    for i, (rel, (h, w)) in enumerate(sizes.items()):
        (tmp_path / rel).parent.mkdir()
        img = np.zeros((h, w, 3), np.uint8)
        img[: h // 2, :, 0] = 255  # top half red = glass for RedScorer
        Image.fromarray(img).save(tmp_path / rel, quality=100)
    notes = []
    photos = collect_inputs([str(tmp_path / d) for d in ("a", "b", "c")])
    summary = predict_files(photos, tmp_path / "out", RedScorer(), save_prob=True, progress=False, report=notes.append)
    assert summary.written == 3
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["X_3.png", "X_3_prob.png", "x.png", "x_2.png", "x_2_prob.png", "x_prob.png"]
    for name, hw in zip(("x", "x_2", "X_3"), sizes.values()):
        mask = _read(tmp_path / "out" / f"{name}.png")
        assert mask.shape == hw and (mask[: hw[0] // 2 - 2] == 255).all() and (mask[hw[0] // 2 + 2 :] == 0).all()
    assert len(notes) == 1 and "b/x.png -> x_2.png" in notes[0] and "X.png -> X_3.png" in notes[0]


def test_refuses_to_overwrite_an_input_photo(photos, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "p.png").write_bytes((photos / "portrait.png").read_bytes())
    before = (folder / "p.png").read_bytes()
    with pytest.raises(GlassgemError, match="would overwrite the input"):
        predict_files(collect_inputs([str(folder)]), folder, RedScorer(), progress=False)
    assert (folder / "p.png").read_bytes() == before


# ------------------------------------------------------------------------------------- GEM.predict
@pytest.mark.slow
def test_gem_predict_pil_array_and_path_agree(photos, weights):
    model = GEM.from_pretrained(weights)
    path = photos / "portrait.png"
    pil = Image.open(path)
    arr = np.asarray(pil.convert("RGB"))
    from_pil, from_arr, from_path = model.predict(pil), model.predict(arr), model.predict(str(path))
    for mask in (from_pil, from_arr, from_path):
        assert mask.dtype == np.uint8 and mask.shape == (130, 60) and set(np.unique(mask)) <= {0, 1}
    assert np.array_equal(from_pil, from_arr) and np.array_equal(from_arr, from_path)
    assert 0.2 < from_arr.mean() < 0.8
    prob = model.predict(path, return_prob=True)
    assert prob.dtype == np.float32 and prob.shape == (130, 60) and 0 <= prob.min() and prob.max() <= 1
    clear = np.abs(prob - 0.5) > 1e-6
    assert np.array_equal((prob > 0.5)[clear], from_arr.astype(bool)[clear])
    gray = model.predict(photos / "gray.png")  # grayscale files are converted; mask at the file's size
    assert gray.shape == (50, 44)
    assert model.predict(arr, size=64).shape == (130, 60)  # another test size, same output size


def test_gem_predict_rejects_bad_inputs(photos, weights, tmp_path):
    model = GEM.from_pretrained(weights)
    with pytest.raises(DataError, match="uint8"):
        model.predict(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(DataError, match=r"H x W x 3"):
        model.predict(np.zeros((32, 32, 5), np.uint8))
    with pytest.raises(DataError, match="corrupt.jpg"):
        model.predict(photos / "corrupt.jpg")
    with pytest.raises(ConfigError, match="size=100.*multiple of 32"):  # an option: checked when the Predictor is made
        model.predict(np.zeros((32, 32, 3), np.uint8), size=100)


def test_import_glassgem_and_help_do_not_import_torch():
    code = (
        "import sys, contextlib, io\n"
        "import glassgem\n"
        "from glassgem.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as buf:\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'predict' in buf.getvalue(), buf.getvalue()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "from glassgem import GEM\n"
        "from glassgem import GEM as G\n"
        "assert GEM is G\n"
        "print('ok')\n"
    )
    assert run_fresh_python(code).strip() == "ok"


# ------------------------------------------------------------------------------------- real data
@pytest.mark.skipif(
    not (GDD_DEV / "val" / "images").is_dir(),
    reason=f"real GDD dev data not found at {GDD_DEV} (set GLASSGEM_SHARED to the shared folder)",
)
def test_real_photos_give_masks_at_their_own_size(weights, tmp_path):
    """Two real GDD photos (in place, nothing copied into the repo): masks at each photo's size."""
    files = sorted((GDD_DEV / "val" / "images").glob("*.jpg"))[:2]
    scorer = ModelScorer(GEM.from_pretrained(weights), torch.device("cpu"))
    summary = predict_files(collect_inputs([str(f) for f in files]), tmp_path, scorer, overlay=True, progress=False)
    assert summary.written == 2 and not summary.failed
    for f in files:
        w, h = Image.open(f).size
        assert _read(tmp_path / f"{f.stem}.png").shape == (h, w)
        assert Image.open(tmp_path / f"{f.stem}_overlay.jpg").size == (w, h)


# ----------------------------------------------------------------------------------------------- TTA
@pytest.mark.slow
def test_flip_tta_is_the_mean_of_both_views_and_mirror_equivariant(photos, weights, tmp_path, capsys):
    from glassgem.inference.protocol import flip_averaged

    model = GEM.from_pretrained(weights).eval()
    x = torch.rand(2, 3, 64, 96) * 255
    with torch.no_grad():
        plain, mirrored = model.semantic_scores(x), model.semantic_scores(x.flip(-1)).flip(-1)
        tta = flip_averaged(model.semantic_scores, x)
        tta_of_mirror = flip_averaged(model.semantic_scores, x.flip(-1))
    assert (plain - mirrored).abs().max() > 1e-4  # the views really differ, so averaging does something
    assert torch.allclose(tta, 0.5 * (plain + mirrored), atol=1e-6)
    assert torch.allclose(tta_of_mirror.flip(-1), tta, atol=1e-5)  # a mirrored photo gets the mirrored answer
    # the three user paths: GEM.predict, glassgem predict, glassgem evaluate
    arr = np.asarray(Image.open(photos / "portrait.png").convert("RGB"))
    with_tta = model.predict(arr, tta=True)
    flipped = model.predict(np.ascontiguousarray(arr[:, ::-1]), tta=True)
    assert (with_tta == flipped[:, ::-1]).mean() > 0.995
    assert not np.array_equal(with_tta, model.predict(arr))
    out = tmp_path / "out"
    assert (
        main(
            ["predict", str(photos / "portrait.png"), "--out", str(out), "--weights", str(weights), "--tta", "--quiet"]
        )
        == 0
    )
    assert np.array_equal(_read(out / "portrait.png") > 127, with_tta.astype(bool))
    data = _one_pair_dataset(tmp_path / "data", arr, with_tta)
    capsys.readouterr()
    assert (
        main(["evaluate", "--weights", str(weights), "--data", str(data), "--tta", "--json", str(tmp_path / "m.json")])
        == 0
    )
    import json

    assert json.loads((tmp_path / "m.json").read_text())["iou"] > 0.999  # its own TTA masks as ground truth


@pytest.mark.slow
def test_threshold_cuts_the_glass_probability_on_every_user_path(photos, weights, tmp_path, capsys):
    """--threshold T: glass where probability > T, the same in GEM.predict, glassgem predict and
    glassgem evaluate; lower T only adds glass; no threshold = the larger score (the protocol)."""
    import json

    from glassgem.inference.protocol import glass_mask

    model = GEM.from_pretrained(weights).eval()
    arr = np.asarray(Image.open(photos / "portrait.png").convert("RGB"))
    prob = model.predict(arr, return_prob=True)
    default, low, high = model.predict(arr), model.predict(arr, threshold=0.3), model.predict(arr, threshold=0.7)
    assert np.array_equal(low, (prob > 0.3).astype(np.uint8)) and np.array_equal(high, (prob > 0.7).astype(np.uint8))
    assert np.all(low >= default) and np.all(default >= high)  # lower threshold: a superset
    assert low.sum() > default.sum() > high.sum()  # the balanced model has pixels on both sides of each cut
    scores = torch.rand(2, 2, 7, 9) * 3
    assert torch.equal(glass_mask(scores), glass_mask(scores, 0.5))  # argmax = probability > 0.5
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(photos / "portrait.png"),
                "--out",
                str(out),
                "--weights",
                str(weights),
                "--threshold",
                "0.3",
                "--quiet",
            ]
        )
        == 0
    )
    assert np.array_equal(_read(out / "portrait.png") > 127, low.astype(bool))
    data = _one_pair_dataset(tmp_path / "data", arr, low)
    capsys.readouterr()
    for t, want_perfect in (("0.3", True), (None, False)):
        args = ["evaluate", "--weights", str(weights), "--data", str(data), "--json", str(tmp_path / "m.json")]
        assert main(args + (["--threshold", t] if t else [])) == 0
        got = json.loads((tmp_path / "m.json").read_text())
        assert (got["iou"] > 0.999) == want_perfect and got.get("threshold") == (float(t) if t else None)
    assert "glass probability > 0.3" in capsys.readouterr().out
    for bad in ("0", "1", "-0.2", "1.5"):
        assert main(["predict", str(photos / "wide.jpg"), "--out", str(tmp_path / "o"), "--threshold", bad]) == 2
        assert "--threshold" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="threshold=1.0.*between 0 and 1"):
        model.predict(arr, threshold=1.0)
