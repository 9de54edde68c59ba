"""glassgem.Predictor, the one prediction path: the command line, the Python API and the video path give the same
mask for a photo; lists, batches and every image kind; options checked once, by name; the CPU thread policy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av  # the video extra, part of the dev extra that `make test` installs
import numpy as np
import pytest
import torch
from PIL import Image

from glassgem import GEM, Predictor
from glassgem.cli import main
from glassgem.data.layouts import find_pairs
from glassgem.errors import ConfigError, DataError
from glassgem.evaluation.evaluate import evaluate_model
from glassgem.inference.threads import cpu_cores


def _photo(h: int = 72, w: int = 100, seed: int = 0) -> np.ndarray:
    """Smooth colour ramps with a bright block and some noise: a random-weight model gives it a varied map."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([255 * x / w, 255 * y / h, 128 + 0 * x], axis=-1) + rng.normal(0, 20, (h, w, 3))
    img[h // 4 : h // 2, w // 3 : 2 * w // 3] = 240
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return GEM.from_config("debug").save_pretrained(tmp_path_factory.mktemp("predictor") / "debug")


def _lossless_clip(path: Path, frame: np.ndarray, n: int = 3) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=5)
        s.height, s.width = frame.shape[:2]
        s.pix_fmt = "bgr0"
        for _ in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _mask_file(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)) > 127


def test_cli_api_and_video_give_the_same_mask_for_a_photo(weights, tmp_path):
    photo = _photo()
    Image.fromarray(photo).save(tmp_path / "p.png")
    cut = _median_cut(weights, photo)  # about half the photo is glass: equal masks say something
    api = Predictor(weights, threshold=cut).predict(tmp_path / "p.png")
    assert api.dtype == bool and api.shape == photo.shape[:2] and 0.2 < api.mean() < 0.8
    model = GEM.from_pretrained(weights)
    assert np.array_equal(model.predict(photo, threshold=cut), api.astype(np.uint8))  # GEM.predict: a thin call
    clip = _lossless_clip(tmp_path / "clip.mkv", photo)
    with av.open(str(clip)) as c:  # the video holds the photo's pixels exactly
        assert all(np.array_equal(f.to_ndarray(format="rgb24"), photo) for f in c.decode(c.streams.video[0]))
    out = tmp_path / "out"
    argv = ["predict", str(tmp_path / "p.png"), str(clip), "--out", str(out), "--weights", str(weights)]
    assert main(argv + ["--threshold", str(cut), "--quiet"]) == 0
    assert np.array_equal(_mask_file(out / "p.png"), api)  # the command on the photo
    for frame in ("000000", "000001", "000002"):  # the video path on each frame
        assert np.array_equal(_mask_file(out / "clip" / f"{frame}.png"), api), frame


def test_evaluate_scores_the_predictors_masks(weights, tmp_path):
    photos = [_photo(seed=s) for s in range(3)]
    for i, photo in enumerate(photos):
        (tmp_path / "data" / "images").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "masks").mkdir(exist_ok=True)
        Image.fromarray(photo).save(tmp_path / "data" / "images" / f"p{i}.png")
        Image.fromarray(np.zeros(photo.shape[:2], np.uint8)).save(tmp_path / "data" / "masks" / f"p{i}.png")
    predictor = Predictor(weights, batch_size=2)
    results = evaluate_model(
        predictor, find_pairs(tmp_path / "data"), num_workers=0, progress=False, save_masks=tmp_path / "saved"
    )
    for i, photo in enumerate(photos):
        assert np.array_equal(_mask_file(tmp_path / "saved" / f"p{i}.png"), predictor.predict(photo))
    assert results["n_images"] == 3 and "threshold" not in results  # the protocol's rule: nothing to record


def _median_cut(weights: Path, photo: np.ndarray) -> float:
    """A threshold at the photo's median glass probability: about half of it is glass, so a changed input shows."""
    return float(f"{np.median(Predictor(weights).probabilities(photo)):.4f}")


def test_lists_batches_and_every_image_kind(weights):
    photos = [_photo(seed=s) for s in range(3)]
    cut = _median_cut(weights, photos[0])
    predictor = Predictor(weights, threshold=cut)
    one = [predictor.predict(p) for p in photos]
    assert all(m.dtype == bool and m.shape == (72, 100) for m in one) and 0.2 < one[0].mean() < 0.8
    for masks in (predictor.predict(photos), predictor.predict(np.stack(photos))):  # a list, an N x H x W x 3 batch
        assert isinstance(masks, list) and all(np.array_equal(a, b) for a, b in zip(masks, one))
    singly = Predictor(weights, threshold=cut, batch_size=1).predict(photos)
    assert all(np.array_equal(a, b) for a, b in zip(singly, one))
    photo = photos[0]
    assert np.array_equal(predictor.predict(Image.fromarray(photo)), one[0])  # PIL
    rgba = np.concatenate([photo, np.full((72, 100, 1), 9, np.uint8)], axis=2)
    assert np.array_equal(predictor.predict(rgba), one[0])  # the alpha channel is dropped
    bgr = np.ascontiguousarray(photo[:, :, ::-1])
    assert np.array_equal(Predictor(weights, threshold=cut, bgr=True).predict(bgr), one[0])  # OpenCV order, said so
    assert not np.array_equal(predictor.predict(bgr), one[0])  # not guessed: the channel order matters
    grey = photo[:, :, 1]
    assert np.array_equal(predictor.predict(grey), predictor.predict(np.repeat(grey[:, :, None], 3, axis=2)))
    probs = predictor.probabilities(photos)
    assert all(p.dtype == np.float32 and p.shape == (72, 100) for p in probs)
    assert np.array_equal(probs[0] > cut, one[0])
    with pytest.raises(DataError, match="uint8"):
        predictor.predict(np.zeros((2, 32, 32, 3), np.float32))


@pytest.mark.parametrize(
    "options,match",
    [
        ({"size": 100}, "size=100"),
        ({"threshold": 1.0}, "threshold=1.0"),
        ({"threshold": "0.5"}, "threshold='0.5'"),
        ({"tta": "yes"}, "tta='yes'"),
        ({"bgr": 1}, "bgr=1"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"dtype": "fp64"}, "fp64"),
        ({"precision": "int4"}, "precision='int4'"),
        ({"threads": 0}, "threads=0"),
    ],
)
def test_options_are_checked_when_the_predictor_is_made(weights, options, match):
    with pytest.raises(ConfigError, match=match):
        Predictor(weights, **options)


def test_a_scorer_keeps_its_own_dtype_and_smoothing():
    class Scorer:
        input_size = 64

        def __call__(self, images):
            return torch.zeros(images.shape[0], 2, 64, 64)

    assert Predictor(Scorer()).size == 64
    for options in ({"dtype": "bf16"}, {"smoothing": 0.1}):
        with pytest.raises(ConfigError, match="dtype= and smoothing="):
            Predictor(Scorer(), **options)
    with pytest.raises(ConfigError, match="model=int"):
        Predictor(42)


def _run(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "GLASSGEM_THREAD"))}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**environ, **env}
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


TORCH_FIRST = (
    "import os, torch\n"
    "torch.set_num_threads(1)\n"
    "from glassgem import GEM, Predictor\n"
    "Predictor(GEM.from_config('debug'))\n"
    "print(torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY'))\n"
)


def test_the_cpu_thread_policy_reaches_library_users_and_can_be_declined():
    cores = cpu_cores()
    assert _run(TORCH_FIRST) == [str(cores), "PASSIVE"]  # torch imported first: the thread count still follows
    assert _run(TORCH_FIRST, GLASSGEM_THREAD_POLICY="0") == ["1", "None"]  # opted out: nothing touched
    assert _run(TORCH_FIRST, OMP_NUM_THREADS="1") == ["1", "PASSIVE"]  # the user's own count is kept
    glassgem_first = "import os\nfrom glassgem import Predictor\nimport torch\n"
    glassgem_first += "print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'], os.environ['GOMP_SPINCOUNT'])\n"
    assert _run(glassgem_first) == [str(cores), str(cores), "1000"]  # set before torch started: OpenMP read it
    explicit = "import torch\nfrom glassgem import GEM, Predictor\nPredictor(GEM.from_config('debug'), threads=1)\n"
    assert _run(explicit + "print(torch.get_num_threads())\n") == ["1"]
